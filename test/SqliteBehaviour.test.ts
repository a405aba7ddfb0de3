/**
 * SQLite-specific behaviour: the begin statements, and a COMMIT refused by a deferred foreign key, which leaves
 * the transaction open on SQLite.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Transaction, TransactionLayer } from "../src/index.js"
import { uniqueTable } from "./utils/databases.js"
import * as Databases from "./utils/databases.js"
import { SentStatements, spy } from "./utils/spy.js"

const live = TransactionLayer.pipe(Layer.provideMerge(spy(Databases.sqlite())))

describe("sqlite", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.effect("read-write takes the write lock at BEGIN; read-only uses query_only, reset at the end", () =>
      Effect.gen(function*() {
        const log = yield* SentStatements
        log.length = 0
        yield* Transaction.atomic(Effect.void, { isolation: "read committed" })
        yield* Effect.flip(Transaction.atomic(Effect.fail("no"), { readOnly: true }))
        yield* Transaction.atomic(Effect.void, { readOnly: true })
        assert.deepStrictEqual(log, [
          "BEGIN IMMEDIATE",
          "COMMIT",
          "BEGIN",
          "PRAGMA query_only = ON",
          "ROLLBACK",
          "PRAGMA query_only = OFF",
          "BEGIN",
          "PRAGMA query_only = ON",
          "COMMIT",
          "PRAGMA query_only = OFF"
        ])
      }))

    it.scoped("a deferred foreign key refusing COMMIT is a typed error, and the transaction is rolled back", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const parent = uniqueTable("parent")
        const child = uniqueTable("child")
        yield* sql.unsafe("PRAGMA foreign_keys = ON")
        yield* Effect.acquireRelease(
          Effect.zipRight(
            sql.unsafe(`CREATE TABLE ${parent} (id INTEGER PRIMARY KEY)`),
            sql.unsafe(
              `CREATE TABLE ${child} (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES ${parent}(id) ` +
                `DEFERRABLE INITIALLY DEFERRED)`
            )
          ),
          () => Effect.ignore(sql.unsafe(`DROP TABLE ${child}; DROP TABLE ${parent}`))
        )
        const error = yield* sql.unsafe(`INSERT INTO ${child} (id, parent) VALUES (1, 99)`).pipe(
          Transaction.atomic(),
          Effect.flip
        )
        assert.instanceOf(error, SqlError)
        assert.strictEqual((error as any).cause.code, "SQLITE_CONSTRAINT_FOREIGNKEY")
        // Rolled back, not left open: the next transaction begins and commits.
        yield* sql.unsafe(`INSERT INTO ${parent} (id) VALUES (1)`).pipe(Transaction.atomic())
        const rows = yield* sql.unsafe<{ n: number }>(`SELECT count(*) AS n FROM ${child}`)
        assert.strictEqual(rows[0]!.n, 0)
      }))
  })
})
