/**
 * MySQL/MariaDB-specific behaviour: the begin statements, the isolation level InnoDB really runs at, a killed
 * connection.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer } from "effect"
import { Transaction, TransactionLayer, TransactionManager } from "../src/index.js"
import { makeTable, outside } from "./suites/TransactionSuite.js"
import * as Databases from "./utils/databases.js"
import { SentStatements, spy } from "./utils/spy.js"

const live = TransactionLayer.pipe(Layer.provideMerge(spy(Databases.mysql())))

describe("mysql: modes", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.scoped("the isolation level is the one InnoDB runs the transaction at", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("isolation")
        for (const isolation of ["read uncommitted", "read committed", "repeatable read", "serializable"] as const) {
          const level = yield* Effect.gen(function*() {
            yield* t.idsHere // InnoDB lists a transaction once it has touched a table
            yield* sql`SELECT SLEEP(0.15)` // INNODB_TRX is a cache refreshed at most every 100 ms
            const rows = yield* sql<{ level: string }>`
              SELECT trx_isolation_level AS level FROM information_schema.INNODB_TRX
              WHERE trx_mysql_thread_id = CONNECTION_ID()`
            return rows[0]!.level
          }).pipe(Transaction.atomic({ isolation }))
          assert.strictEqual(level, isolation.toUpperCase())
        }
      }))

    it.effect("the level and the access mode go in one round trip before START TRANSACTION", () =>
      Effect.gen(function*() {
        const log = yield* SentStatements
        log.length = 0
        yield* Transaction.atomic(Effect.void, { isolation: "serializable", readOnly: true })
        yield* Transaction.atomic(Effect.void)
        assert.deepStrictEqual(log, [
          "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; START TRANSACTION READ ONLY",
          "COMMIT",
          "START TRANSACTION",
          "COMMIT"
        ])
      }))
  })
})

describe("mysql: a killed connection", () => {
  layer(TransactionLayer.pipe(Layer.provideMerge(Databases.mysql({ maxConnections: 1 }))), {
    excludeTestServices: true
  })((it) => {
    it.scoped("fails with ConnectionLost, and the pool of one serves the next transaction", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const admin = yield* Databases.mysqlAdmin
        const t = yield* makeTable("killed")
        const error = yield* Effect.gen(function*() {
          const [{ id }] = yield* sql<{ id: number }>`SELECT CONNECTION_ID() AS id`
          yield* t.insert(1)
          yield* outside(admin.unsafe(`KILL ${Number(id)}`)) // outside: the connection tag is one for every client
          yield* t.insert(2)
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.strictEqual(error._tag, "ConnectionLost")
        yield* t.insert(3).pipe(Transaction.atomic())
        assert.deepStrictEqual(yield* t.ids, [3])
      }))
  })
})

describe("mysql: classification and limits", () => {
  layer(TransactionLayer.pipe(Layer.provideMerge(spy(Databases.mysql({ maxConnections: 1 })))), {
    excludeTestServices: true
  })((it) => {
    const lockWait = Effect.flatMap(
      SqlClient.SqlClient,
      (sql) =>
        Effect.map(sql<{ s: number }>`SELECT @@SESSION.innodb_lock_wait_timeout AS s`, (rows) => Number(rows[0]!.s))
    )

    it.effect("MariaDB's max_statement_time is a StatementTimeout (1969)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const error = yield* sql`SET STATEMENT max_statement_time = 0.05 FOR SELECT SLEEP(2)`.pipe(
          Transaction.atomic(),
          Effect.flip
        )
        assert.strictEqual(error._tag, "StatementTimeout")
        assert.strictEqual((error as any).code, "1969")
      }))

    it.scoped("lockTimeout sets innodb_lock_wait_timeout for the transaction and restores it after", () =>
      Effect.gen(function*() {
        const log = yield* SentStatements
        const before = yield* lockWait
        log.length = 0
        // InnoDB counts whole seconds: 1.5 s becomes 2 s.
        assert.strictEqual(yield* lockWait.pipe(Transaction.atomic({ lockTimeout: "1500 millis" })), 2)
        assert.strictEqual(yield* lockWait, before)
        yield* Effect.flip(Transaction.atomic(Effect.fail("rolled back"), { lockTimeout: "3 seconds" }))
        assert.strictEqual(yield* lockWait, before)
        const changes = log.filter((s) => s.includes("innodb_lock_wait_timeout") && !s.startsWith("SELECT"))
        assert.strictEqual(changes.length, 4)
        assert.match(log[0]!, /^SET @effect_sql_tx_lock_wait_timeout = .*; START TRANSACTION$/)
      }))
  })
})

describe("mysql: NOWAIT", () => {
  layer(TransactionLayer.pipe(Layer.provideMerge(Databases.mysql())), { excludeTestServices: true })((it) => {
    it.scoped("a locked row read with NOWAIT is a LockTimeout", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("nowait")
        yield* t.insert(1)
        const holding = yield* Deferred.make<void>()
        const done = yield* Deferred.make<void>()
        const holder = yield* sql.unsafe(`SELECT * FROM ${t.name} WHERE id = 1 FOR UPDATE`).pipe(
          Effect.zipRight(Deferred.succeed(holding, undefined)),
          Effect.zipRight(Deferred.await(done)),
          Transaction.atomic(),
          Effect.fork
        )
        yield* Deferred.await(holding)
        const error = yield* sql.unsafe(`SELECT * FROM ${t.name} WHERE id = 1 FOR UPDATE NOWAIT`).pipe(
          Transaction.atomic(),
          Effect.flip
        )
        yield* Deferred.succeed(done, undefined)
        yield* Fiber.join(holder)
        assert.strictEqual(error._tag, "LockTimeout")
      }))
  })
})

describe("mysql: observability", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.effect("round trips: a flat transaction with every option is its statements + 2; a successful nested block adds 1 (its SAVEPOINT)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const log = yield* SentStatements
        const labelled = yield* TransactionManager.make({ serverLabel: true })
        log.length = 0
        yield* Effect.zipRight(sql`SELECT 1`, sql`SELECT 2`).pipe(
          Transaction.atomic({
            name: "all_options",
            isolation: "serializable",
            readOnly: true,
            timeout: "5 seconds",
            lockTimeout: "1 second"
          }),
          Effect.provideService(TransactionManager.TransactionManager, labelled)
        )
        assert.strictEqual(log.length, 2 + 2, log.join(" | "))
        assert.match(log[0]!, /^\/\* effect-sql-tx:all_options \*\/ SET @effect_sql_tx_lock_wait_timeout/)
        log.length = 0
        yield* sql`SELECT 1`.pipe(Transaction.atomic(), Transaction.atomic(), Transaction.atomic())
        assert.strictEqual(log.length, 1 + 2 + 2 * 1, log.join(" | "))
        assert.isFalse(log.some((s) => s.startsWith("RELEASE")), log.join(" | "))
      }))
  })
})
