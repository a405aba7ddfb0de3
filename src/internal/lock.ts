/**
 * The lock that serializes the nested blocks (and manual savepoint operations) of one block.
 */
import * as Effect from "effect/Effect"

/** A fiber waiting for the lock: `grant` hands it over; `granted` says whether it was. */
interface Waiter {
  readonly grant: () => void
  granted: boolean
}

/**
 * @internal
 * A lock with one holder. Taking it when it is free and releasing it are plain calls, with no Effect step (every
 * nested block takes its parent's: measured in `npm run bench:profile -- --count`, an `Effect.Semaphore` here made
 * a third of a nested block's steps). A taker that finds it held waits, interruptibly, in arrival order.
 */
export class BlockLock {
  private held = false
  private readonly waiting: Array<Waiter> = []

  /** Takes the lock if it is free. */
  tryTake(): boolean {
    if (this.held) return false
    this.held = true
    return true
  }

  /** Releases the lock: hands it to the longest waiter, if any. */
  release(): void {
    const next = this.waiting.shift()
    if (next === undefined) {
      this.held = false
    } else {
      next.granted = true
      next.grant()
    }
  }

  /**
   * Takes the lock, waiting for it if it is held. Call it where interruption is masked, with that mask's `restore`:
   * only the wait is interruptible, and a lock handed to a waiter that is interrupted before it runs again (an
   * interruption that arrives with the grant) is passed on, never kept.
   */
  take(restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>): Effect.Effect<void> {
    if (this.tryTake()) return Effect.void
    return Effect.suspend(() => {
      if (this.tryTake()) return Effect.void
      let waiter: Waiter | undefined
      const wait = Effect.async<void>((resume) => {
        waiter = { grant: () => resume(Effect.void), granted: false }
        this.waiting.push(waiter)
      })
      return Effect.onInterrupt(restore(wait), () =>
        Effect.sync(() => {
          if (waiter === undefined) return
          if (waiter.granted) return this.release()
          const index = this.waiting.indexOf(waiter)
          if (index !== -1) this.waiting.splice(index, 1)
        }))
    })
  }

  /** Runs `effect` holding the lock, which it releases however `effect` ends. */
  withLock<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.uninterruptibleMask((restore) =>
      Effect.zipRight(this.take(restore), Effect.ensuring(restore(effect), Effect.sync(() => this.release())))
    )
  }
}
