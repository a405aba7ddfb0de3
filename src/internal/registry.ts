/**
 * The manager's registry of the outermost transactions running now: a list threaded through its entries, oldest
 * first.
 *
 * Not a `Map`: a map that gains and loses one entry per transaction reallocates its table as it grows and shrinks,
 * and the manager's map is old, so each new table outlived a scavenge (measured by `bench/profile.ts --survivors`:
 * 140 to 240 bytes per transaction promoted to the old generation). Linking an entry allocates nothing.
 */
import type { ActiveTransaction } from "../TransactionManager.js"

/**
 * @internal
 * An entry of the registry: made with `new`, not as an object literal, which V8 may allocate in the old generation
 * (see `TransactionRoot`).
 */
export class ActiveEntry implements ActiveTransaction {
  depth = 0
  flagged = false
  /** @internal The neighbours in the registry's list. */
  previous: ActiveEntry | undefined = undefined
  /** @internal */
  next: ActiveEntry | undefined = undefined
  constructor(
    readonly id: string,
    readonly name: string,
    readonly startedAt: Date,
    readonly attempt: number,
    readonly connectionId: number | undefined
  ) {}
}

/** @internal What a registry entry tells, as a plain object of its own (the list's links left out). */
export const copyOf = (entry: ActiveTransaction): ActiveTransaction => ({
  id: entry.id,
  name: entry.name,
  depth: entry.depth,
  startedAt: entry.startedAt,
  attempt: entry.attempt,
  connectionId: entry.connectionId,
  flagged: entry.flagged
})

/** @internal The registry of active transactions, oldest first (in the order they were added). */
export class ActiveRegistry {
  private first: ActiveEntry | undefined = undefined
  private last: ActiveEntry | undefined = undefined
  private count = 0

  /** How many transactions are registered. */
  get size(): number {
    return this.count
  }

  /** Registers an entry (once: an entry already in a list must be removed first). */
  add(entry: ActiveEntry): void {
    entry.previous = this.last
    entry.next = undefined
    if (this.last === undefined) this.first = entry
    else this.last.next = entry
    this.last = entry
    this.count++
  }

  /** Removes a registered entry; its links are cleared, so that it holds none of its neighbours. */
  remove(entry: ActiveEntry): void {
    const { next, previous } = entry
    if (previous === undefined) {
      // Not registered (or removed already): nothing to unlink.
      if (this.first !== entry) return
      this.first = next
    } else {
      previous.next = next
    }
    if (next === undefined) this.last = previous
    else next.previous = previous
    entry.previous = undefined
    entry.next = undefined
    this.count--
  }

  /** The registered entries, oldest first: the live entries, in an array of their own. */
  entries(): Array<ActiveEntry> {
    const out: Array<ActiveEntry> = []
    for (let entry = this.first; entry !== undefined; entry = entry.next) out.push(entry)
    return out
  }
}
