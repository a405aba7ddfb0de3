/**
 * Concurrency against a server with real connections (PostgreSQL, MariaDB): deadlocks, lock timeouts, retries,
 * timeouts that cancel the statement on the server, and the bank workload.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Duration, Effect, Either, Fiber, Layer, Random, Scope } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionError,
  TransactionLayer,
  TransactionManager,
  withRetry
} from "../../src/index.js"
import type { PoolOptions } from "../utils/databases.js"
import { makeTable } from "./TransactionSuite.js"

export interface ContentionTarget {
  readonly name: "pg" | "mysql"
  readonly layer: (options?: PoolOptions) => Layer.Layer<SqlClient.SqlClient, unknown>
  /** A client outside the pool under test. */
  readonly admin: Effect.Effect<SqlClient.SqlClient, unknown, Scope.Scope>
  readonly connectionId: Effect.Effect<number, SqlError, SqlClient.SqlClient>
  /** A statement that sleeps on the server. */
  readonly sleep: (seconds: number) => string
  /** Whether the connection runs a statement now, seen from another connection. */
  readonly isRunning: (connectionId: number) => Effect.Effect<boolean, SqlError, SqlClient.SqlClient>
  /** SQL that ends a connection from another one (the server kills its backend). */
  readonly kill: (connectionId: number) => string
  /** The shortest lock timeout the database honours. */
  readonly lockTimeout: Duration.DurationInput
  /** Transfers per worker of the bank workload (16 workers). */
  readonly transfersPerWorker: number
}

const elapsedSince = (start: number) => Date.now() - start

export const suite = (target: ContentionTarget) => {
  const live = TransactionLayer.pipe(Layer.provideMerge(target.layer({ maxConnections: 20 })))

  describe(`${target.name}: deadlocks, lock timeouts and retries`, () => {
    layer(live, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      /** Two transactions that lock two rows in opposite orders, in lock step: a deadlock, every time. */
      const deadlockPair = (table: string, retry: boolean) =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const locked = [yield* Deferred.make<void>(), yield* Deferred.make<void>()] as const
          let attempts = 0
          const tx = (me: 0 | 1) =>
            Effect.gen(function*() {
              attempts++
              const [first, second] = me === 0 ? [1, 2] : [2, 1]
              yield* sql.unsafe(`UPDATE ${table} SET v = v + 1 WHERE id = ${first}`)
              yield* Deferred.succeed(locked[me], undefined)
              yield* Deferred.await(locked[1 - me]!)
              yield* sql.unsafe(`UPDATE ${table} SET v = v + 1 WHERE id = ${second}`)
            }).pipe(Transaction.atomic({ name: `deadlock_${me}` }), retry ? withRetry() : (self) => self)
          const results = yield* Effect.all([Effect.either(tx(0)), Effect.either(tx(1))], { concurrency: 2 })
          return { results, attempts }
        })

      it.scoped("a deadlock fails one transaction with DeadlockDetected", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("deadlock")
          yield* Effect.zipRight(t.insert(1), t.insert(2))
          const { results } = yield* deadlockPair(t.name, false)
          const failures = results.filter(Either.isLeft).map((r) => r.left._tag)
          assert.deepStrictEqual(failures, ["DeadlockDetected"])
        }))

      it.scoped("with withRetry both transactions of a deadlock commit", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("deadlock_retry")
          yield* Effect.zipRight(t.insert(1), t.insert(2))
          const { attempts, results } = yield* deadlockPair(t.name, true)
          assert.isTrue(results.every(Either.isRight))
          assert.strictEqual(attempts, 3)
          const rows = yield* sql.unsafe<{ v: number }>(`SELECT v FROM ${t.name} ORDER BY id`)
          assert.deepStrictEqual(rows.map((r) => Number(r.v)), [3, 4])
        }))

      it.scoped("a lock wait beyond lockTimeout fails with LockTimeout", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("lock_timeout")
          const sql = yield* SqlClient.SqlClient
          yield* t.insert(1)
          const holding = yield* Deferred.make<void>()
          const done = yield* Deferred.make<void>()
          const holder = yield* sql.unsafe(`UPDATE ${t.name} SET v = 10 WHERE id = 1`).pipe(
            Effect.zipRight(Deferred.succeed(holding, undefined)),
            Effect.zipRight(Deferred.await(done)),
            Transaction.atomic(),
            Effect.fork
          )
          yield* Deferred.await(holding)
          const error = yield* sql.unsafe(`UPDATE ${t.name} SET v = 20 WHERE id = 1`).pipe(
            Transaction.atomic({ lockTimeout: target.lockTimeout }),
            Effect.flip
          )
          yield* Deferred.succeed(done, undefined)
          yield* Fiber.join(holder)
          assert.strictEqual(error._tag, "LockTimeout")
          assert.strictEqual((error as any).code, target.name === "pg" ? "55P03" : "1205")
        }))

      it.scoped("withRetry inside a running transaction passes the error on, without retrying", () =>
        Effect.gen(function*() {
          let attempts = 0
          const inner = Effect.suspend(() => {
            attempts++
            return Effect.fail(
              new TransactionError.DeadlockDetected({ dialect: target.name, code: "x", cause: undefined })
            )
          })
          const t = yield* makeTable("nested_retry")
          const error = yield* Effect.gen(function*() {
            yield* t.insert(1)
            return yield* inner.pipe(
              Transaction.atomic(),
              withRetry(RetryPolicy.exponential({ times: 5 })),
              Effect.flip
            )
          }).pipe(Transaction.atomic())
          assert.strictEqual(attempts, 1)
          assert.strictEqual(error._tag, "DeadlockDetected")
        }))
    })
  })

  describe(`${target.name}: timeouts stop the work on the server`, () => {
    const single = TransactionLayer.pipe(Layer.provideMerge(target.layer({ maxConnections: 1 })))
    layer(single, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
      it.scoped("a sleeping statement under a 300 ms timeout: TransactionTimeout, cancelled, pool reusable", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const admin = yield* target.admin
          const t = yield* makeTable("timeout")
          let connectionId = -1
          const start = Date.now()
          const error = yield* Effect.gen(function*() {
            connectionId = yield* target.connectionId
            yield* t.insert(1)
            yield* sql.unsafe(target.sleep(30))
          }).pipe(Transaction.atomic({ name: "sleepy", timeout: "300 millis" }), Effect.flip)
          const elapsed = elapsedSince(start)
          yield* Effect.log(`${target.name}: a 300 ms timeout returned after ${elapsed} ms`)
          assert.strictEqual(error._tag, "TransactionTimeout")
          if (error._tag === "TransactionTimeout") {
            assert.strictEqual(error.name, "sleepy")
            assert.isAtLeast(Duration.toMillis(error.elapsed), 300)
          }
          // A generous bound that still tells a cancelled statement from one left to run its 30 seconds.
          assert.isBelow(elapsed, 10_000)
          assert.isFalse(yield* target.isRunning(connectionId).pipe(Effect.provideService(SqlClient.SqlClient, admin)))
          // The one connection of the pool is back, outside any transaction.
          yield* t.insert(2).pipe(Transaction.atomic(), Effect.timeout("5 seconds"))
          assert.deepStrictEqual(yield* t.ids, [2])
        }))

      it.scoped("a nested block's timeout rolls back to its savepoint only", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("nested_timeout")
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            const inner = yield* Effect.zipRight(t.insert(2), sql.unsafe(target.sleep(30))).pipe(
              Transaction.atomic({ timeout: "200 millis" }),
              Effect.flip
            )
            assert.strictEqual(inner._tag, "TransactionTimeout")
            yield* t.insert(3)
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1, 3])
        }))

      it.scoped("interrupting a transaction cancels its statement on the server (superviseInterruption)", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const admin = yield* target.admin
          const supervised = yield* TransactionManager.make({ superviseInterruption: true })
          const started = yield* Deferred.make<number>()
          const fiber = yield* Effect.gen(function*() {
            yield* Deferred.succeed(started, yield* target.connectionId)
            yield* sql.unsafe(target.sleep(30))
          }).pipe(
            Transaction.atomic(),
            Effect.provideService(TransactionManager.TransactionManager, supervised),
            Effect.fork
          )
          const connectionId = yield* Deferred.await(started)
          yield* Effect.sleep("200 millis")
          const start = Date.now()
          yield* Fiber.interrupt(fiber)
          yield* Effect.log(`${target.name}: interrupting a running statement took ${elapsedSince(start)} ms`)
          assert.isBelow(elapsedSince(start), 10_000)
          assert.isFalse(yield* target.isRunning(connectionId).pipe(Effect.provideService(SqlClient.SqlClient, admin)))
          yield* Transaction.atomic(Effect.void).pipe(Effect.timeout("5 seconds"))
        }))
    })
  })

  describe(`${target.name}: interruption without supervision`, () => {
    const single = TransactionLayer.pipe(Layer.provideMerge(target.layer({ maxConnections: 1 })))
    layer(single, { excludeTestServices: true, timeout: "60 seconds" })((it) => {
      it.scoped(
        "an interrupted statement does not outlive its transaction, even on a pool of one",
        () =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const admin = yield* target.admin
            const started = yield* Deferred.make<number>()
            const fiber = yield* Effect.gen(function*() {
              yield* Deferred.succeed(started, yield* target.connectionId)
              yield* sql.unsafe(target.sleep(30))
            }).pipe(Transaction.atomic(), Effect.fork)
            const connectionId = yield* Deferred.await(started)
            yield* Effect.sleep("200 millis")
            const start = Date.now()
            yield* Fiber.interrupt(fiber)
            // mysql2: interrupted at once, then KILL QUERY before ROLLBACK. pg: @effect/sql-pg's cancel waits for a
            // pool slot (5 s at most) before the transaction cancels the statement itself, before ROLLBACK.
            yield* Effect.log(`${target.name}: an unsupervised interruption took ${elapsedSince(start)} ms`)
            assert.isBelow(elapsedSince(start), 10_000)
            assert.isFalse(
              yield* target.isRunning(connectionId).pipe(Effect.provideService(SqlClient.SqlClient, admin))
            )
            yield* Transaction.atomic(Effect.void).pipe(Effect.timeout("5 seconds"))
          }),
        30_000
      )
    })
  })

  describe(`${target.name}: the bank workload`, () => {
    layer(TransactionLayer.pipe(Layer.provideMerge(target.layer({ maxConnections: 16 }))), {
      excludeTestServices: true,
      timeout: "600 seconds"
    })((it) => {
      it.scoped(
        `16 workers × ${target.transfersPerWorker} transfers in random order all commit through withRetry`,
        () =>
          Effect.gen(function*() {
            const sql = yield* SqlClient.SqlClient
            const accounts = yield* makeTable("bank")
            const log = yield* makeTable("bank_log")
            yield* sql.unsafe(
              `INSERT INTO ${accounts.name} (id, v) VALUES ${
                Array.from({ length: 10 }, (_, i) => `(${i}, 1000)`).join(", ")
              }`
            )
            const seen = new Map<string, number>()
            let nextLogId = 0
            const transfer = Effect.gen(function*() {
              const from = yield* Random.nextIntBetween(0, 10)
              const to = (from + (yield* Random.nextIntBetween(1, 10))) % 10
              const amount = yield* Random.nextIntBetween(1, 50)
              const logId = ++nextLogId
              return yield* Effect.gen(function*() {
                // Random order: no lock ordering, so deadlocks happen.
                yield* sql`UPDATE ${sql(accounts.name)} SET v = v - ${amount} WHERE id = ${from}`
                yield* sql`UPDATE ${sql(accounts.name)} SET v = v + ${amount} WHERE id = ${to}`
                yield* sql`INSERT INTO ${sql(log.name)} (id, v) VALUES (${logId}, ${amount})`
              }).pipe(
                Transaction.atomic({ name: "transfer" }),
                Effect.tapError((e) => Effect.sync(() => seen.set(e._tag, (seen.get(e._tag) ?? 0) + 1))),
                withRetry(RetryPolicy.exponential({ base: "2 millis", times: 200, maxDelay: "100 millis" }))
              )
            })
            const start = Date.now()
            yield* Effect.forEach(
              Array.from({ length: 16 }),
              () => Effect.repeatN(transfer, target.transfersPerWorker - 1),
              { concurrency: "unbounded", discard: true }
            )
            const seconds = elapsedSince(start) / 1000
            const total = 16 * target.transfersPerWorker
            const [{ sum }] = yield* sql.unsafe<{ sum: number }>(`SELECT SUM(v) AS sum FROM ${accounts.name}`)
            const [{ n }] = yield* sql.unsafe<{ n: number }>(`SELECT COUNT(*) AS n FROM ${log.name}`)
            const retries = [...seen.values()].reduce((a, b) => a + b, 0)
            yield* Effect.log(
              `${target.name} bank: ${total} transfers in ${seconds.toFixed(1)} s (${
                Math.round(total / seconds)
              }/s), ` +
                `errors retried ${JSON.stringify(Object.fromEntries(seen))}, ${(retries / total).toFixed(3)} per commit`
            )
            assert.strictEqual(Number(sum), 10_000)
            assert.strictEqual(Number(n), total)
            assert.isTrue(seen.has("DeadlockDetected"), "the workload should provoke deadlocks")
            for (const tag of seen.keys()) {
              assert.include(["DeadlockDetected", "LockTimeout", "SerializationFailure"], tag)
            }
          }),
        600_000
      )
    })
  })
}
