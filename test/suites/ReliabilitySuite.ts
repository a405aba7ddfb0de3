/**
 * All or nothing under interruption, deadlocks and lost connections, against a server with real connections
 * (PostgreSQL, MariaDB): no statement of a transaction runs after it ended, and an error after which the database
 * rolled the whole transaction back ends it.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Deferred, Effect, Either, Exit, Fiber, Layer, Random } from "effect"
import { Transaction, TransactionError, TransactionManager, withRetry } from "../../src/index.js"
import type { ContentionTarget } from "./ContentionSuite.js"
import { makeTable } from "./TransactionSuite.js"

const manager = (config: TransactionManager.TransactionManagerConfig = {}) => TransactionManager.layer(config)

export const suite = (target: ContentionTarget) => {
  const single = (config: TransactionManager.TransactionManagerConfig = {}) =>
    manager(config).pipe(Layer.provideMerge(target.layer({ maxConnections: 1 })))

  describe(`${target.name}: no statement runs after its transaction`, () => {
    const variants: ReadonlyArray<readonly [string, TransactionManager.TransactionManagerConfig, boolean]> = [
      ["in place", {}, false],
      ["with a timeout", {}, true],
      ["supervised", { superviseInterruption: true }, false]
    ]
    for (const [variant, config, timeout] of variants) {
      layer(single(config), { excludeTestServices: true, timeout: "60 seconds" })((it) => {
        it.scoped(`${variant}: a body that catches its interrupted statement and writes again writes nothing`, () =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const t = yield* makeTable("caught_interrupt")
            const started = yield* Deferred.make<Fiber.RuntimeFiber<Either.Either<unknown, SqlError>>>()
            const go = yield* Deferred.make<void>()
            const fiber = yield* Effect.gen(function*() {
              yield* t.insert(1)
              // A fiber that outlives the block (forkDaemon) and writes later.
              const daemon = yield* Effect.forkDaemon(Effect.zipRight(Deferred.await(go), Effect.either(t.insert(4))))
              yield* Deferred.succeed(started, daemon)
              yield* Effect.either(sql.unsafe(target.sleep(5)))
              yield* Effect.sleep("200 millis")
              yield* Effect.either(t.insert(2))
            }).pipe(Transaction.atomic(timeout ? { timeout: "10 seconds" } : {}), Effect.fork)
            const daemon = yield* Deferred.await(started)
            yield* Effect.sleep("100 millis")
            yield* Fiber.interrupt(fiber)
            yield* Deferred.succeed(go, undefined)
            // Awaited, not joined: joining would bring the daemon's context (the ended transaction) into this fiber.
            const late = yield* Effect.flatten(Fiber.await(daemon))
            assert.isTrue(Either.isLeft(late))
            assert.strictEqual((late as Either.Left<any, unknown>).left.cause?._tag, "TransactionClosed")
            yield* Effect.sleep("600 millis")
            assert.deepStrictEqual(yield* t.ids, [])
            // The pool's one connection is back, outside any transaction.
            yield* Transaction.atomic(t.insert(3))
            assert.deepStrictEqual(yield* t.ids, [3])
          }))

        it.scoped(`${variant}: random interruptions of two-insert transactions on a pool of one leave each whole`, () =>
          Effect.gen(function*() {
            const t = yield* makeTable("interrupt_pairs")
            const rounds = 120
            for (let i = 1; i <= rounds; i++) {
              const fiber = yield* Effect.gen(function*() {
                yield* t.insert(i)
                yield* Effect.sleep(yield* Random.nextIntBetween(0, 4))
                yield* t.insert(1000 + i)
              }).pipe(Transaction.atomic(timeout ? { timeout: "5 seconds" } : {}), Effect.fork)
              yield* Effect.sleep(yield* Random.nextIntBetween(0, 6))
              yield* Fiber.interrupt(fiber)
            }
            const ids = new Set(yield* t.ids)
            let whole = 0
            for (let i = 1; i <= rounds; i++) {
              assert.strictEqual(ids.has(i), ids.has(1000 + i), `transaction ${i} is half committed`)
              if (ids.has(i)) whole++
            }
            yield* Effect.log(`${target.name} ${variant}: ${whole} of ${rounds} interrupted pairs had committed`)
          }))
      })
    }

    layer(single(), { excludeTestServices: true, timeout: "60 seconds" })((it) => {
      it.scoped("a timeout that expires while the body sleeps after a caught error: nothing more is written", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("timeout_caught")
          // What became of the write after the caught error: it must not reach the transaction's connection.
          let late = "not run"
          const exit = yield* Effect.gen(function*() {
            yield* t.insert(1)
            yield* Effect.either(sql.unsafe(target.sleep(5)))
            yield* Effect.sleep("300 millis")
            const written = yield* Effect.either(t.insert(2))
            late = Either.isLeft(written) ? `refused:${(written.left as any).cause?._tag}` : "ran"
          }).pipe(Transaction.atomic({ timeout: "200 millis" }), Effect.exit)
          assert.isTrue(Exit.isFailure(exit))
          assert.strictEqual(Cause.failureOption((exit as Exit.Failure<never, any>).cause).pipe((o) => o._tag), "Some")
          assert.strictEqual((Cause.squash((exit as Exit.Failure<never, any>).cause) as any)._tag, "TransactionTimeout")
          yield* Effect.sleep("600 millis")
          assert.include(["not run", "refused:TransactionClosed"], late)
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped(
        "interrupting statements on a pool of one never waits for a pool slot: 20 interruptions",
        () =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const admin = yield* target.admin
            const start = Date.now()
            for (let i = 0; i < 20; i++) {
              const started = yield* Deferred.make<number>()
              const fiber = yield* Effect.gen(function*() {
                yield* Deferred.succeed(started, yield* target.connectionId)
                yield* sql.unsafe(target.sleep(30))
              }).pipe(Transaction.atomic(), Effect.fork)
              const id = yield* Deferred.await(started)
              yield* Effect.sleep("20 millis")
              yield* Fiber.interrupt(fiber)
              // Cancelled on the server before the interruption returned.
              assert.isFalse(yield* target.isRunning(id).pipe(Effect.provideService(SqlClient.SqlClient, admin)))
            }
            // @effect/sql-pg's own cancel waits for a free pool connection, up to the pool's connect timeout (10 s
            // here) each time: 20 of them could not finish within this test's 60 s.
            yield* Effect.log(`${target.name}: 20 interruptions on a pool of one took ${Date.now() - start} ms`)
          }),
        60_000
      )

      it.scoped("statements of a fiber that outlived its block, still waiting to be sent at COMMIT, are refused", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("queued_after_commit")
          const late = yield* Effect.gen(function*() {
            yield* t.insert(1)
            // A child fiber: its sleeping statement is in flight when the block commits, its inserts wait behind it.
            return yield* Effect.fork(
              Effect.all([
                Effect.either(sql.unsafe(target.sleep(0.3))),
                Effect.either(t.insert(2)),
                Effect.either(t.insert(3))
              ], {
                concurrency: "unbounded"
              })
            )
          }).pipe(Transaction.atomic())
          const [, second, third] = yield* Effect.flatten(Fiber.await(late))
          for (const result of [second, third]) {
            assert.isTrue(Either.isLeft(result))
            assert.strictEqual((result as Either.Left<any, unknown>).left.cause?._tag, "TransactionClosed")
          }
          assert.deepStrictEqual(yield* t.ids, [1])
        }))

      it.scoped("a connection killed by the server mid-transaction: ConnectionLost, nothing committed", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const admin = yield* target.admin
          const t = yield* makeTable("killed")
          const started = yield* Deferred.make<number>()
          const fiber = yield* Effect.gen(function*() {
            yield* t.insert(1)
            yield* Deferred.succeed(started, yield* target.connectionId)
            // The code catches the error of the killed statement and goes on: the transaction is gone all the same.
            yield* Effect.either(sql.unsafe(target.sleep(10)))
            yield* Effect.either(t.insert(2))
          }).pipe(Transaction.atomic(), Effect.either, Effect.fork)
          const id = yield* Deferred.await(started)
          yield* Effect.sleep("100 millis")
          yield* admin.unsafe(target.kill(id))
          const result = yield* Fiber.join(fiber)
          assert.isTrue(Either.isLeft(result))
          assert.strictEqual((result as Either.Left<any, unknown>).left._tag, "ConnectionLost")
          assert.isTrue(TransactionError.isRetryable((result as Either.Left<any, unknown>).left))
          assert.deepStrictEqual(yield* t.ids, [])
          yield* Transaction.atomic(t.insert(3))
          assert.deepStrictEqual(yield* t.ids, [3])
        }))
    })
  })

  describe(`${target.name}: errors that end the whole transaction`, () => {
    const pool = manager().pipe(Layer.provideMerge(target.layer({ maxConnections: 4 })))
    layer(pool, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
      /**
       * A nested block that deadlocks with another transaction (made the heavier one, so that MariaDB picks the
       * nested block's transaction as the victim; PostgreSQL's victim is the session whose deadlock_timeout expires
       * first: 20 ms in the pool under test, 1 s for the admin), caught by the outer block, which writes more.
       */
      const nestedDeadlock = (retry: boolean, plain = false) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const admin = yield* target.admin
          const rows = yield* makeTable("doom_rows")
          const log = yield* makeTable("doom_log")
          const heavy = yield* makeTable("doom_heavy")
          yield* sql.unsafe(`INSERT INTO ${rows.name} (id, v) VALUES (1, 0), (2, 0)`)
          const adminHolds = yield* Deferred.make<void>()
          const nestedHolds = yield* Deferred.make<void>()
          const other = yield* Effect.gen(function*() {
            yield* admin.unsafe(
              `INSERT INTO ${heavy.name} (id, v) VALUES ${
                Array.from({ length: 200 }, (_, i) => `(${i}, 0)`).join(", ")
              }`
            )
            yield* admin.unsafe(`UPDATE ${rows.name} SET v = v + 1 WHERE id = 2`)
            yield* Deferred.succeed(adminHolds, undefined)
            yield* Deferred.await(nestedHolds)
            yield* admin.unsafe(`UPDATE ${rows.name} SET v = v + 1 WHERE id = 1`)
          }).pipe(admin.withTransaction, Effect.fork)
          let attempts = 0
          const nestedErrors: Array<string> = []
          const result = yield* Effect.gen(function*() {
            attempts++
            yield* log.insert(attempts * 10 + 1)
            const nested = yield* Effect.gen(function*() {
              yield* sql.unsafe(`UPDATE ${rows.name} SET v = v + 10 WHERE id = 1`)
              yield* Deferred.succeed(nestedHolds, undefined)
              yield* Deferred.await(adminHolds)
              yield* Effect.sleep("300 millis")
              yield* sql.unsafe(`UPDATE ${rows.name} SET v = v + 10 WHERE id = 2`)
            }).pipe(plain ? sql.withTransaction : Transaction.atomic(), Effect.either)
            if (Either.isLeft(nested)) nestedErrors.push((nested.left as { readonly _tag: string })._tag)
            yield* log.insert(attempts * 10 + 2)
          }).pipe(Transaction.atomic({ name: "doomed" }), retry ? withRetry() : (self) => self, Effect.either)
          yield* Fiber.join(other)
          return { result, attempts, nestedErrors, ids: yield* log.ids }
        })

      if (target.name === "mysql") {
        it.scoped("MariaDB: a deadlock in a nested block dooms the transaction; withRetry runs it again", () =>
          Effect.gen(function*() {
            const { attempts, ids, nestedErrors, result } = yield* nestedDeadlock(true)
            assert.deepStrictEqual(nestedErrors, ["DeadlockDetected"])
            assert.isTrue(Either.isRight(result))
            assert.strictEqual(attempts, 2)
            // Nothing of the doomed attempt: its second row would have committed alone in autocommit.
            assert.deepStrictEqual(ids, [21, 22])
          }))

        it.scoped("MariaDB: a deadlock in a nested sql.withTransaction dooms the transaction too; retried", () =>
          Effect.gen(function*() {
            const { attempts, ids, result } = yield* nestedDeadlock(true, true)
            assert.isTrue(Either.isRight(result))
            assert.strictEqual(attempts, 2)
            assert.deepStrictEqual(ids, [21, 22])
          }))

        it.scoped("MariaDB: without withRetry the doomed transaction ends with DeadlockDetected, nothing written", () =>
          Effect.gen(function*() {
            const { ids, nestedErrors, result } = yield* nestedDeadlock(false)
            assert.deepStrictEqual(nestedErrors, ["DeadlockDetected"])
            assert.isTrue(Either.isLeft(result))
            assert.strictEqual((result as Either.Left<any, unknown>).left._tag, "DeadlockDetected")
            assert.deepStrictEqual(ids, [])
          }))

        it.scoped("MariaDB: a lock wait timeout is the statement's alone unless innodb_rollback_on_timeout", () =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const admin = yield* target.admin
            const [{ r }] = yield* sql.unsafe<{ r: number }>("SELECT @@innodb_rollback_on_timeout AS r")
            const rows = yield* makeTable("lock_wait")
            yield* sql.unsafe(`INSERT INTO ${rows.name} (id, v) VALUES (1, 0)`)
            const locked = yield* Deferred.make<void>()
            const release = yield* Deferred.make<void>()
            const holder = yield* Effect.gen(function*() {
              yield* admin.unsafe(`UPDATE ${rows.name} SET v = 1 WHERE id = 1`)
              yield* Deferred.succeed(locked, undefined)
              yield* Deferred.await(release)
            }).pipe(admin.withTransaction, Effect.fork)
            yield* Deferred.await(locked)
            const result = yield* Effect.gen(function*() {
              yield* rows.insert(2)
              const waited = yield* Effect.either(sql.unsafe(`UPDATE ${rows.name} SET v = 2 WHERE id = 1`))
              assert.strictEqual(Either.isLeft(waited) && (waited.left as any).cause.errno, 1205)
              yield* rows.insert(3)
            }).pipe(Transaction.atomic({ lockTimeout: "1 second" }), Effect.either)
            yield* Deferred.succeed(release, undefined)
            yield* Fiber.join(holder)
            if (Number(r) === 1) {
              assert.strictEqual((result as Either.Left<any, unknown>).left._tag, "LockTimeout")
              assert.deepStrictEqual(yield* rows.ids, [1])
            } else {
              assert.isTrue(Either.isRight(result))
              assert.deepStrictEqual(yield* rows.ids, [1, 2, 3])
            }
          }))
      } else {
        it.scoped("PostgreSQL: a deadlock in a nested block rolls back to its savepoint; the rest commits once", () =>
          Effect.gen(function*() {
            const { attempts, ids, nestedErrors, result } = yield* nestedDeadlock(true)
            assert.deepStrictEqual(nestedErrors, ["DeadlockDetected"])
            assert.isTrue(Either.isRight(result))
            assert.strictEqual(attempts, 1)
            assert.deepStrictEqual(ids, [11, 12])
          }))
      }
    })
  })
}
