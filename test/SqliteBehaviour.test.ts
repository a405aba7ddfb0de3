/**
 * SQLite-specific behaviour: the begin statements, and a COMMIT refused by a deferred foreign key, which leaves
 * the transaction open on SQLite.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it, layer } from "@effect/vitest"
import { Context, Deferred, Effect, Fiber, Layer } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Transaction, TransactionLayer, TransactionManager } from "../src/index.js"
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

describe("sqlite: two clients on one file", () => {
  it.scoped("lockTimeout bounds the wait for the other client's write lock: LockTimeout (SQLITE_BUSY)", () =>
    Effect.gen(function*() {
      const dir = yield* Effect.acquireRelease(
        Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-sql-tx-busy-"))),
        (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
      )
      const filename = Path.join(dir, "shared.db")
      const makeClient = Effect.flatMap(
        SqliteClient.make({ filename }),
        (sql) =>
          Effect.map(
            TransactionManager.make().pipe(Effect.provideService(SqlClient.SqlClient, sql)),
            (manager) =>
              Context.make(SqlClient.SqlClient, sql).pipe(Context.add(TransactionManager.TransactionManager, manager))
          )
      ).pipe(
        Effect.provide(Reactivity.layer)
      )
      const a = yield* makeClient
      const b = yield* makeClient
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`CREATE TABLE busy (id INTEGER PRIMARY KEY)`).pipe(
        Effect.provide(a)
      )
      const busyTimeout = Effect.flatMap(
        SqlClient.SqlClient,
        (sql) => Effect.map(sql<{ timeout: number }>`PRAGMA busy_timeout`, (rows) => rows[0]!.timeout)
      )
      const before = yield* busyTimeout.pipe(Effect.provide(b))
      const holding = yield* Deferred.make<void>()
      const done = yield* Deferred.make<void>()
      const holder = yield* Deferred.succeed(holding, undefined).pipe(
        Effect.zipRight(Deferred.await(done)),
        Transaction.atomic(),
        Effect.provide(a),
        Effect.fork
      )
      yield* Deferred.await(holding)
      const start = Date.now()
      const error = yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO busy (id) VALUES (1)`).pipe(
        Transaction.atomic({ lockTimeout: "100 millis" }),
        Effect.provide(b),
        Effect.flip
      )
      const waited = Date.now() - start
      yield* Deferred.succeed(done, undefined)
      yield* Fiber.join(holder)
      assert.strictEqual(error._tag, "LockTimeout")
      assert.match((error as any).code, /^SQLITE_BUSY/)
      assert.isBelow(waited, before) // bounded by lockTimeout, not by the client's 5 s default
      assert.strictEqual(yield* busyTimeout.pipe(Effect.provide(b)), before)
    }))
})
