/**
 * The deadlines of transactions (a body's `timeout`, a COMMIT's `commitTimeout`) on one Node.js timer. Nearly all of
 * them are cancelled long before they fall, one or two per transaction. A `setTimeout` and its `clearTimeout` cost
 * 4,100 instructions when no other timer of the same duration is pending, because Node.js makes and drops its list
 * for that duration each time (1,500 when one is pending; counted under valgrind). Here a deadline is an entry
 * linked into a list, and the timer is set again only when a deadline falls before the one it is set for: 1,150 to
 * 1,350 instructions for an `add` and its `cancel` (`bench/micro.mjs` counts both). A deadline may run a millisecond
 * or so after its time: the timer fires by the event loop's clock, and a deadline that it finds a little early is
 * set again.
 */

import { LinkedList } from "./linkedList.js"

/** @internal `setTimeout`'s limit: Effect's clock never fires a longer sleep either. */
export const maxTimerMillis = 2 ** 31 - 1

/** @internal A callback to run at a time, unless it is cancelled first. */
export class Deadline {
  previous: Deadline | undefined = undefined
  next: Deadline | undefined = undefined
  /** Pending (in the list), fallen (out of the list, about to run) or over (ran, or cancelled). */
  state: "pending" | "fallen" | "over" = "pending"
  constructor(readonly at: number, readonly run: () => void) {}
}

/**
 * @internal
 * Pending deadlines and the timer for the earliest of them. While one is pending the timer keeps the process
 * alive, as a `setTimeout` would; once none is, it no longer does, and when it fires it finds nothing to run.
 */
export class Deadlines {
  private readonly pending = new LinkedList<Deadline>()
  private timer: ReturnType<typeof setTimeout> | undefined = undefined
  /** When the timer fires (`Infinity`: no timer). */
  private armedAt = Infinity

  /** Runs `run` in `millis` milliseconds, unless cancelled; `undefined` past `setTimeout`'s limit (no bound). */
  add(millis: number, run: () => void): Deadline | undefined {
    if (millis > maxTimerMillis) return undefined
    const now = performance.now()
    const deadline = new Deadline(now + millis, run)
    this.pending.add(deadline)
    if (this.pending.size === 1) this.timer?.ref()
    if (deadline.at < this.armedAt) this.arm(deadline.at, now)
    return deadline
  }

  /** Cancels a deadline that has not run: it will not. Cancelling it again, or after it ran, does nothing. */
  cancel(deadline: Deadline | undefined): void {
    if (deadline === undefined || deadline.state === "over") return
    // Fallen with others, and cancelled by one of them that ran first: it does not run.
    if (deadline.state === "fallen") {
      deadline.state = "over"
      return
    }
    this.pending.remove(deadline)
    deadline.state = "over"
    // The timer stays set (another deadline will likely need it), but no longer keeps the process alive.
    if (this.pending.size === 0) this.timer?.unref()
  }

  /** How many deadlines are pending. */
  get size(): number {
    return this.pending.size
  }

  /** Whether the timer keeps the process alive: exactly while a deadline is pending. */
  get keepsProcessAlive(): boolean {
    return this.timer !== undefined && this.timer.hasRef()
  }

  private arm(at: number, now: number): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.armedAt = at
    this.timer = setTimeout(this.fire, Math.max(1, Math.ceil(at - now)))
  }

  /**
   * Runs the deadlines that have fallen and sets the timer for the next. The list is settled before any of them
   * runs: a callback may add or cancel deadlines.
   */
  private readonly fire = (): void => {
    this.timer = undefined
    this.armedAt = Infinity
    const now = performance.now()
    const fallen: Array<Deadline> = []
    let next = Infinity
    for (let deadline = this.pending.first; deadline !== undefined;) {
      const following = deadline.next
      if (deadline.at <= now) {
        this.pending.remove(deadline)
        deadline.state = "fallen"
        fallen.push(deadline)
      } else if (deadline.at < next) next = deadline.at
      deadline = following
    }
    if (next !== Infinity) this.arm(next, now)
    for (const deadline of fallen) {
      if (deadline.state !== "fallen") continue
      deadline.state = "over"
      try {
        deadline.run()
      } catch (error) {
        // Thrown out of the timer, as a `setTimeout` callback's error would be, once the others have run.
        queueMicrotask(() => {
          throw error
        })
      }
    }
  }
}

/** @internal The deadlines of every transaction of the process. */
export const deadlines = new Deadlines()
