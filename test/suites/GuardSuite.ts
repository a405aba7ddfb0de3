/**
 * Misuse fails fast and typed, on every database: statements and hooks that reach a block after it ended, savepoint
 * operations on a handle that is not the innermost block, hooks rolled back with a manual savepoint, and hooks
 * bounded by the manager's `hookTimeout`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Runtime } from "effect"
import { Transaction, TransactionManager, TransactionMetrics } from "../../src/index.js"
import { makeTable, type Target } from "./TransactionSuite.js"

const closedCause = (error: SqlError | unknown) =>
  (error as { readonly cause?: { readonly _tag?: string } }).cause?._tag

export const suite = (target: Target) => {
  const live = TransactionManager.layer({ hookTimeout: "300 millis" }).pipe(Layer.provideMerge(target.layer()))

  describe(`${target.name}: misuse fails fast and typed`, () => {
    layer(live, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
      it.scoped("a daemon fiber forked inside a transaction cannot write after it ended: TransactionClosed", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("daemon")
          const go = yield* Deferred.make<void>()
          const daemon = yield* Effect.gen(function*() {
            yield* t.insert(1)
            return yield* Effect.forkDaemon(Effect.zipRight(Deferred.await(go), Effect.either(t.insert(2))))
          }).pipe(Transaction.atomic())
          yield* Deferred.succeed(go, undefined)
          // Awaited, not joined: joining would bring the daemon's context (the ended transaction) into this fiber.
          const late = yield* Effect.flatten(Fiber.await(daemon))
          assert.isTrue(Either.isLeft(late))
          assert.strictEqual(closedCause((late as Either.Left<SqlError, unknown>).left), "TransactionClosed")
          assert.deepStrictEqual(yield* t.ids, [1])
        }))

      it.scoped("a runtime captured inside a transaction cannot write after it ended: TransactionClosed", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("runtime")
          const runtime = yield* Effect.runtime<never>().pipe(Effect.zipLeft(t.insert(1)), Transaction.atomic())
          const late = yield* Effect.promise(() => Runtime.runPromise(runtime)(Effect.either(t.insert(2))))
          assert.isTrue(Either.isLeft(late))
          assert.strictEqual(closedCause((late as Either.Left<SqlError, unknown>).left), "TransactionClosed")
          assert.deepStrictEqual(yield* t.ids, [1])
        }))

      it.scoped("a savepoint asked of a parent's handle inside a nested block fails at once with SavepointError", () =>
        Effect.gen(function*() {
          const error = yield* Effect.gen(function*() {
            const outer = yield* Transaction.Transaction
            return yield* Effect.flip(outer.savepoint("sp").pipe(Transaction.atomic()))
          }).pipe(Transaction.atomic(), Effect.timeout("5 seconds"))
          assert.strictEqual(error._tag, "SavepointError")
        }))

      it.scoped("a hook registered on a block that has ended fails with TransactionClosed", () =>
        Effect.gen(function*() {
          const handle = yield* Transaction.atomic(Transaction.Transaction)
          const error = yield* Effect.flip(
            Transaction.afterCommit(Effect.void).pipe(Effect.provideService(Transaction.Transaction, handle))
          )
          assert.strictEqual(error._tag, "TransactionClosed")
          assert.strictEqual(error.operation, "hook")
          const savepoint = yield* Effect.flip(handle.savepoint())
          assert.strictEqual(savepoint._tag, "TransactionClosed")
        }))

      it.scoped("hooks registered after a manual savepoint are discarded when the transaction rolls back to it", () =>
        Effect.gen(function*() {
          const ran: Array<string> = []
          yield* Effect.gen(function*() {
            yield* Transaction.afterCommit(Effect.sync(() => ran.push("before savepoint")))
            const sp = yield* Transaction.savepoint("sp")
            yield* Transaction.afterCommit(Effect.sync(() => ran.push("after savepoint")))
            yield* Transaction.beforeCommit(Effect.sync(() => ran.push("before commit, after savepoint")))
            yield* Transaction.rollbackTo(sp)
            yield* Transaction.afterCommit(Effect.sync(() => ran.push("after rollback")))
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(ran, ["before savepoint", "after rollback"])
        }))

      it.scoped("an error caught inside a nested sql.withTransaction is absorbed by its savepoint; the rest commits", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("foreign_savepoint")
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            const inner = yield* Effect.either(
              sql.withTransaction(Effect.zipRight(t.insert(2), sql.unsafe("SELECT * FROM effect_sql_tx_no_such_table")))
            )
            assert.isTrue(Either.isLeft(inner))
            yield* t.insert(3)
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1, 3])
        }))

      it.scoped("a beforeCommit hook past hookTimeout is stopped: HookTimeout, rolled back", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("hook_timeout")
          const error = yield* Effect.gen(function*() {
            yield* t.insert(1)
            yield* Transaction.beforeCommit(Effect.sleep("30 seconds"))
          }).pipe(Transaction.atomic(), Effect.flip, Effect.timeout("10 seconds"))
          assert.strictEqual(error._tag, "HookTimeout")
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("an afterCommit hook past hookTimeout is stopped and counted; the transaction stays committed", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("hook_timeout_after")
          const name = `hook_timeout_${target.name}`
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            yield* Transaction.afterCommit(Effect.sleep("30 seconds"))
          }).pipe(Transaction.atomic({ name }), Effect.timeout("10 seconds"))
          assert.deepStrictEqual(yield* t.ids, [1])
          const figures = (yield* TransactionMetrics.snapshot).byName[name]!
          assert.strictEqual(figures.hookFailures, 1)
        }))
    })
  })
}
