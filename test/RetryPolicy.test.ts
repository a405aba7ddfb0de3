import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Either, Fiber, Metric, Schedule, TestClock } from "effect"
import { RetryPolicy, TransactionError, TransactionMetrics, withRetry } from "../src/index.js"

const deadlock = () => new TransactionError.DeadlockDetected({ dialect: "pg", code: "40P01", cause: undefined })

/** Runs `withRetry(policy)` over an effect that fails `failures` times, moving the TestClock 1 ms at a time. */
const attempts = (
  policy: RetryPolicy.RetryPolicy,
  failWith: () => unknown = deadlock,
  failures = Number.POSITIVE_INFINITY
) =>
  Effect.gen(function*() {
    const times: Array<number> = []
    const effect = Effect.flatMap(Clock.currentTimeMillis, (now) => {
      times.push(now)
      return times.length <= failures ? Effect.fail(failWith()) : Effect.succeed("done")
    })
    const fiber = yield* Effect.fork(Effect.either(effect.pipe(withRetry(policy))))
    // Move the clock to each sleep the retry schedules, so that the delays are measured exactly.
    while (fiber.unsafePoll() === null) {
      yield* Effect.yieldNow()
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.isNonEmpty(sleeps)) yield* TestClock.setTime(Math.min(...sleeps))
    }
    const result = yield* Fiber.join(fiber)
    const delays = times.slice(1).map((t, i) => t - times[i]!)
    return { result, delays, count: times.length }
  })

describe("RetryPolicy", () => {
  it.effect("the default: 5 retries from 10 ms, doubling, jittered between 0.8 and 1.2", () =>
    Effect.gen(function*() {
      const { count, delays, result } = yield* attempts(RetryPolicy.default)
      assert.strictEqual(count, 6)
      assert.strictEqual(result._tag, "Left")
      for (const [i, delay] of delays.entries()) {
        const nominal = 10 * 2 ** i
        assert.isTrue(delay >= Math.floor(nominal * 0.8) && delay <= Math.ceil(nominal * 1.2), `${i}: ${delay}`)
      }
    }))

  it.effect("without jitter the delays are exact, and maxDelay caps them", () =>
    Effect.gen(function*() {
      const exact = yield* attempts(RetryPolicy.exponential({ jitter: false }))
      assert.deepStrictEqual(exact.delays, [10, 20, 40, 80, 160])
      const capped = yield* attempts(
        RetryPolicy.exponential({ base: "300 millis", factor: 3, times: 4, maxDelay: "1 second", jitter: false })
      )
      assert.deepStrictEqual(capped.delays, [300, 900, 1000, 1000])
    }))

  it.effect("withRetry is dual: data-first with and without a policy, like data-last", () =>
    Effect.gen(function*() {
      let calls = 0
      const flaky = (failures: number) =>
        Effect.suspend(() => ++calls <= failures ? Effect.fail(deadlock()) : Effect.succeed(calls))
      assert.strictEqual(yield* withRetry(flaky(2), Schedule.recurs(3)), 3)
      calls = 0
      const exhausted = yield* Effect.either(withRetry(flaky(9), Schedule.recurs(1)))
      assert.isTrue(Either.isLeft(exhausted) && calls === 2, `2 attempts, then the error: ${calls}`)
      calls = 0
      const withDefault = yield* Effect.fork(withRetry(flaky(1)))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(withDefault), 2)
    }))

  it.effect("succeeds as soon as an attempt succeeds", () =>
    Effect.gen(function*() {
      const { count, result } = yield* attempts(RetryPolicy.default, deadlock, 2)
      assert.strictEqual(count, 3)
      assert.isTrue(Either.isRight(result) && result.right === "done")
    }))

  it.effect("every retryable error is retried; nothing else is", () =>
    Effect.gen(function*() {
      const fields = { dialect: "mysql" as const, code: "x", cause: undefined }
      for (
        const make of [
          () => new TransactionError.SerializationFailure(fields),
          () => new TransactionError.LockTimeout(fields),
          () => new TransactionError.ConnectionLost(fields)
        ]
      ) {
        assert.strictEqual((yield* attempts(RetryPolicy.exponential({ times: 2 }), make)).count, 3)
      }
      for (
        const make of [
          () => new TransactionError.CommitOutcomeUnknown(fields),
          () => new TransactionError.StatementTimeout(fields),
          () =>
            new TransactionError.TransactionTimeout({
              name: "t",
              timeout: Duration.seconds(1),
              elapsed: Duration.seconds(1)
            }),
          () => new SqlError({ cause: { code: "23505" } }),
          () => ({ _tag: "DeadlockDetected" }) // a look-alike is not ours
        ]
      ) {
        assert.strictEqual((yield* attempts(RetryPolicy.default, make)).count, 1)
      }
    }))

  it.effect("CommitOutcomeUnknown is retried only by an idempotent policy", () =>
    Effect.gen(function*() {
      const unknown = () =>
        new TransactionError.CommitOutcomeUnknown({ dialect: "pg", code: "57P01", cause: undefined })
      assert.strictEqual((yield* attempts(RetryPolicy.exponential({ times: 3 }), unknown)).count, 1)
      assert.strictEqual((yield* attempts(RetryPolicy.exponential({ times: 3, idempotent: true }), unknown)).count, 4)
      assert.strictEqual((yield* attempts(RetryPolicy.idempotent(Schedule.recurs(2)), unknown)).count, 3)
    }))

  it.effect("any Schedule over the error works", () =>
    Effect.gen(function*() {
      const { count, delays } = yield* attempts(
        Schedule.spaced("5 millis").pipe(Schedule.intersect(Schedule.recurs(3)))
      )
      assert.strictEqual(count, 4)
      assert.deepStrictEqual(delays, [5, 5, 5])
    }))

  it.effect("each retry is counted in transaction_retries_total, by error", () =>
    Effect.gen(function*() {
      const counter = TransactionMetrics.retries.pipe(Metric.tagged("error", "DeadlockDetected"))
      const before = (yield* Metric.value(counter)).count
      yield* attempts(RetryPolicy.exponential({ times: 3 }))
      assert.strictEqual((yield* Metric.value(counter)).count - before, 3)
    }))

  it.effect("invalid options throw nothing: withRetry fails with InvalidTransactionOptions before running the effect", () =>
    Effect.gen(function*() {
      for (
        const options of [
          { base: -1 },
          { base: "forever" as any },
          { factor: 0.5 },
          { factor: Number.NaN },
          { times: -1 },
          { times: 1.5 },
          { maxDelay: 0 },
          { times: -1, idempotent: true }
        ]
      ) {
        const policy = RetryPolicy.exponential(options)
        let runs = 0
        // Typed: with nothing else in the error channel, `error` is an InvalidTransactionOptions.
        const error = yield* Effect.flip(Effect.sync(() => runs++).pipe(withRetry(policy)))
        assert.strictEqual(error._tag, "InvalidTransactionOptions")
        assert.strictEqual(runs, 0, JSON.stringify(options))
        assert.match(error.message, /Invalid transaction option "RetryPolicy\./)
        // Marking it idempotent afterwards keeps the error.
        const again = yield* Effect.flip(Effect.void.pipe(withRetry(RetryPolicy.idempotent(policy))))
        assert.strictEqual(again, error)
      }
    }))
})
