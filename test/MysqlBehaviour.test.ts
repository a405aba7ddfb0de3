/**
 * MySQL/MariaDB-specific behaviour: the begin statements, the isolation level InnoDB really runs at, a killed
 * connection.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Transaction, TransactionLayer } from "../src/index.js"
import { makeTable } from "./suites/TransactionSuite.js"
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
          yield* admin.unsafe(`KILL ${Number(id)}`)
          yield* t.insert(2)
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.strictEqual(error._tag, "ConnectionLost")
        yield* t.insert(3).pipe(Transaction.atomic())
        assert.deepStrictEqual(yield* t.ids, [3])
      }))
  })
})
