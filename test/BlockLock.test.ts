/**
 * The lock that serializes a block's nested blocks: plain calls when free, waits in arrival order, and never keeps
 * a lock for a waiter that was interrupted (also when the interruption arrives with the grant).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, FiberId } from "effect"
import { BlockLock } from "../src/internal/lock.js"

/** A fiber that takes the lock, notes it, and holds it until `release` is called. */
const taker = (lock: BlockLock, name: string, order: Array<string>) =>
  Effect.fork(Effect.uninterruptibleMask((restore) =>
    Effect.zipRight(
      lock.take(restore),
      Effect.sync(() => {
        order.push(name)
      })
    )
  ))

describe("BlockLock", () => {
  it.effect("free: taken and released by plain calls; held: tryTake refuses", () =>
    Effect.sync(() => {
      const lock = new BlockLock()
      assert.isTrue(lock.tryTake())
      assert.isFalse(lock.tryTake())
      lock.release()
      assert.isTrue(lock.tryTake())
    }))

  it.effect("waiters get the lock one at a time, in arrival order", () =>
    Effect.gen(function*() {
      const lock = new BlockLock()
      const order: Array<string> = []
      assert.isTrue(lock.tryTake())
      const fibers = []
      for (const name of ["a", "b", "c"]) {
        fibers.push(yield* taker(lock, name, order))
        yield* Effect.yieldNow()
      }
      assert.deepStrictEqual(order, [])
      for (const expected of [["a"], ["a", "b"], ["a", "b", "c"]]) {
        lock.release()
        yield* Effect.yieldNow()
        assert.deepStrictEqual(order, expected)
      }
      yield* Fiber.awaitAll(fibers)
      lock.release()
      assert.isTrue(lock.tryTake(), "free once every holder released it")
    }))

  it.effect("an interrupted waiter leaves the queue: the next one gets the lock", () =>
    Effect.gen(function*() {
      const lock = new BlockLock()
      const order: Array<string> = []
      lock.tryTake()
      const a = yield* taker(lock, "a", order)
      yield* Effect.yieldNow()
      const b = yield* taker(lock, "b", order)
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(a)
      lock.release()
      yield* Fiber.await(b)
      assert.deepStrictEqual(order, ["b"])
      assert.isFalse(lock.tryTake(), "held by b")
    }))

  it.effect("an interruption that arrives with the grant: the lock is held exactly when the waiter got it", () =>
    Effect.gen(function*() {
      const lock = new BlockLock()
      const order: Array<string> = []
      lock.tryTake()
      const a = yield* taker(lock, "a", order)
      yield* Effect.yieldNow()
      // In one synchronous step: the lock is handed to `a`, and `a` is interrupted before it runs again.
      lock.release()
      a.unsafeInterruptAsFork(FiberId.none)
      const exit = yield* Fiber.await(a)
      const acquired = order.includes("a")
      assert.strictEqual(exit._tag === "Success", acquired)
      // Not acquired: the lock was passed on (it is free); acquired: `a` holds it.
      assert.strictEqual(lock.tryTake(), !acquired)
      assert.isFalse(acquired, "the interruption reached the waiter in its interruptible wait")
    }))
})
