/**
 * `withRetry` around real transactions, on every database: where it does not retry (inside a running transaction,
 * after a commit), what it says, and the independent transactions it may retry inside a running one.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Effect, Either, Exit, FiberRef, HashSet, Layer, Logger, Option } from "effect"
import { RetryPolicy, Transaction, TransactionError, TransactionLayer, withRetry } from "../../src/index.js"
import { uniqueTable } from "../utils/databases.js"
import type { Target } from "./TransactionSuite.js"
import { deadlock, makeTable } from "./TransactionSuite.js"

/** A logged warning, as the test logger saw it. */
interface Warning {
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

/** Runs an effect with a logger that only collects warnings (and prints nothing); returns them with its exit. */
const withWarnings = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const warnings: Array<Warning> = []
    const logger = Logger.make(({ annotations, logLevel, message }) => {
      if (logLevel._tag !== "Warning") return
      warnings.push({
        message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
        annotations: Object.fromEntries(annotations)
      })
    })
    return Effect.map(
      Effect.exit(Effect.locally(effect, FiberRef.currentLoggers, HashSet.make(logger))),
      (exit) => ({ exit, warnings })
    )
  })

/** The error an exit failed with (asserting that it failed with one). */
const errorOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const failure = Cause.failureOption((exit as Exit.Failure<A, E>).cause)
  assert.isTrue(Option.isSome(failure), "expected a typed failure")
  return (failure as Option.Some<E>).value
}

/**
 * Whether an error is the suites' scripted deadlock, unchanged. (Not by identity: `Effect.fail` inside a span wraps
 * the error in a proxy that carries the span.)
 */
const isTheDeadlock = (error: unknown): boolean =>
  TransactionError.isTransactionError(error) && error._tag === "DeadlockDetected" && error.code === deadlock.code &&
  error.dialect === deadlock.dialect

/** Quick retries: the scripted errors need no backoff. */
const fast = RetryPolicy.exponential({ base: "1 millis", times: 3 })

export const suite = (target: Target) => {
  const live = TransactionLayer.pipe(Layer.provideMerge(target.layer()))

  describe(`${target.name}: withRetry`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("inside a transaction (the wrong order) it does not retry, and warns once, naming the transaction", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("wrong_order")
          // Warned once per name per process: a name no other test uses.
          const name = uniqueTable("wrong_order")
          let runs = 0
          const wrongOrder = Effect.suspend(() => {
            runs++
            return Effect.zipRight(t.insert(runs), Effect.fail(deadlock))
          }).pipe(withRetry(fast), Transaction.atomic({ name }), Effect.flip)
          const { exit, warnings } = yield* withWarnings(Effect.all([wrongOrder, wrongOrder]))
          assert.isTrue(Exit.isSuccess(exit))
          if (Exit.isSuccess(exit)) {
            // The error passes on unchanged.
            assert.isTrue(isTheDeadlock(exit.value[0]) && isTheDeadlock(exit.value[1]))
          }
          assert.strictEqual(runs, 2, "one run per transaction, no retry")
          assert.deepStrictEqual(yield* t.ids, [])
          const mine = warnings.filter((warning) => warning.annotations.transaction === name)
          assert.strictEqual(mine.length, 1, JSON.stringify(warnings))
          assert.match(mine[0]!.message, /withRetry inside a running transaction does not retry/)
          assert.strictEqual(mine[0]!.annotations.error, "DeadlockDetected")
        }))

      it.scoped("a plain sql.withTransaction around it is a running transaction: no retry inside it", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("plain_with_tx")
          let runs = 0
          const { exit, warnings } = yield* withWarnings(
            Effect.suspend(() => {
              runs++
              return Effect.zipRight(t.insert(runs), Effect.fail(deadlock))
            }).pipe(withRetry(fast), sql.withTransaction)
          )
          assert.isTrue(isTheDeadlock(errorOf(exit)))
          assert.strictEqual(runs, 1)
          assert.deepStrictEqual(yield* t.ids, [])
          // Once per process: another test of this process may have been first.
          assert.isAtMost(warnings.filter((w) => w.annotations.transaction === "sql.withTransaction").length, 1)
        }))

      it.scoped("an attempt in which a transaction committed is not run again: the error passes on, with a warning", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("committed_once")
          let runs = 0
          const twoTransactions = Effect.gen(function*() {
            const run = ++runs
            yield* t.insert(run).pipe(Transaction.atomic({ name: "first" }))
            // The second fails with a retryable error, the first time only.
            yield* (run === 1 ? Effect.fail(deadlock) : Effect.void).pipe(Transaction.atomic({ name: "second" }))
            return run
          })
          const { exit, warnings } = yield* withWarnings(twoTransactions.pipe(withRetry(fast)))
          assert.isTrue(isTheDeadlock(errorOf(exit)))
          assert.strictEqual(runs, 1)
          assert.deepStrictEqual(yield* t.ids, [1], "the first transaction committed once, not twice")
          const committed = warnings.filter((w) => /already committed/.test(w.message))
          assert.strictEqual(committed.length, 1, JSON.stringify(warnings))
          assert.strictEqual(committed[0]!.annotations.transaction, "second")
          assert.strictEqual(committed[0]!.annotations.error, "DeadlockDetected")

          // An idempotent policy runs it again.
          const again = yield* makeTable("committed_idempotent")
          runs = 0
          const value = yield* Effect.gen(function*() {
            const run = ++runs
            yield* again.insert(run).pipe(Transaction.atomic({ name: "first" }))
            yield* (run === 1 ? Effect.fail(deadlock) : Effect.void).pipe(Transaction.atomic({ name: "second" }))
            return run
          }).pipe(withRetry(RetryPolicy.idempotent(fast)))
          assert.strictEqual(value, 2)
          assert.deepStrictEqual(yield* again.ids, [1, 2])
        }))

      it.scoped("a withRetry nested in a retried effect tells it that one of its attempts committed", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("nested_retry_commit")
          let runs = 0
          const error = yield* Effect.gen(function*() {
            const run = ++runs
            yield* t.insert(run).pipe(Transaction.atomic({ name: "inner" }), withRetry(fast))
            return yield* Effect.fail(deadlock).pipe(Transaction.atomic({ name: "second" }))
          }).pipe(withRetry(fast), Effect.flip)
          assert.isTrue(isTheDeadlock(error))
          assert.strictEqual(runs, 1)
          assert.deepStrictEqual(yield* t.ids, [1])
        }))

      it.scoped("a nested withRetry hands its afterRollback hooks to the enclosing one: they run once, at the end", () =>
        Effect.gen(function*() {
          const events: Array<string> = []
          let runs = 0
          const once = RetryPolicy.exponential({ base: "1 millis", times: 1 })
          const result = yield* Effect.suspend(() => {
            const run = ++runs
            return Effect.zipRight(
              Transaction.afterRollback(Effect.sync(() => events.push(`afterRollback ${run}`))),
              Effect.fail(deadlock)
            )
          }).pipe(Transaction.atomic(), withRetry(once), withRetry(once), Effect.either)
          assert.isTrue(Either.isLeft(result) && isTheDeadlock(result.left))
          assert.strictEqual(runs, 4)
          assert.deepStrictEqual(events, ["afterRollback 4"])
        }))

      it.scoped("an invalid policy fails with InvalidTransactionOptions, typed, before running the effect", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("invalid_policy")
          let runs = 0
          const result = yield* Effect.suspend(() => {
            runs++
            return t.insert(1)
          }).pipe(
            Transaction.atomic(),
            withRetry(RetryPolicy.exponential({ base: "1 millis", factor: 0 })),
            Effect.as("ran"),
            Effect.catchTag("InvalidTransactionOptions", (error) => Effect.succeed(error.option))
          )
          assert.strictEqual(result, "RetryPolicy.factor")
          assert.strictEqual(runs, 0)
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      // SQLite has one connection: an independent transaction inside another cannot get one.
      if (!target.concurrentConnections) return

      it.scoped("inside a transaction, an independent transaction under withRetry is retried on its own", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("independent_retry")
          const audit = yield* makeTable("independent_retry_audit")
          let runs = 0
          const value = yield* Effect.gen(function*() {
            yield* t.insert(1)
            const run = yield* Effect.suspend(() => {
              const run = ++runs
              return Effect.zipRight(audit.insert(run), run < 3 ? Effect.fail(deadlock) : Effect.succeed(run))
            }).pipe(Transaction.independent({ name: "audit" }), withRetry(fast))
            yield* t.insert(2)
            return run
          }).pipe(Transaction.atomic({ name: "outer" }))
          assert.strictEqual(value, 3)
          assert.strictEqual(runs, 3)
          assert.deepStrictEqual(yield* audit.ids, [3], "the failed attempts rolled back")
          assert.deepStrictEqual(yield* t.ids, [1, 2])
        }))

      it.scoped("inside a transaction, not after an independent transaction of the attempt committed", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("independent_committed")
          let runs = 0
          const { exit, warnings } = yield* withWarnings(
            Effect.gen(function*() {
              const run = ++runs
              yield* t.insert(run).pipe(Transaction.independent({ name: "audit" }))
              return yield* Effect.fail(deadlock).pipe(Transaction.independent({ name: "second" }))
            }).pipe(withRetry(fast), Effect.flip, Transaction.atomic({ name: "outer" }))
          )
          assert.isTrue(Exit.isSuccess(exit) && isTheDeadlock(exit.value))
          assert.strictEqual(runs, 1)
          assert.deepStrictEqual(yield* t.ids, [1])
          assert.strictEqual(warnings.filter((w) => /already committed/.test(w.message)).length, 1)
        }))
    })
  })
}
