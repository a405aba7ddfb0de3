/**
 * What the two-phase commit tests share: the participants (PostgreSQL `test`, a second PostgreSQL database
 * `test2pc_b`, MariaDB `test`), their tables, and checks that no prepared transaction is left behind.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, Redacted } from "effect"
import { TwoPhaseCommit } from "../../src/index.js"
import * as Databases from "./databases.js"

export const secondPgDatabase = "test2pc_b"

export const pgBUrl = (() => {
  const url = new URL(Databases.pgUrl)
  url.pathname = `/${secondPgDatabase}`
  return url.toString()
})()

/** Creates the second PostgreSQL database if it is missing (idempotent, safe against a concurrent creation). */
export const ensureSecondPgDatabase: Effect.Effect<void, unknown> = Effect.scoped(Effect.gen(function*() {
  const admin = yield* Databases.pgAdmin
  const rows = yield* admin`SELECT 1 AS one FROM pg_database WHERE datname = ${secondPgDatabase}`
  if (rows.length > 0) return
  yield* admin.unsafe(`CREATE DATABASE ${secondPgDatabase}`).pipe(
    // 42P04 duplicate_database, or 23505 when two processes create it at once.
    Effect.catchAll((error) => {
      const code = (error.cause as { code?: string } | undefined)?.code
      return code === "42P04" || code === "23505" ? Effect.void : Effect.fail(error)
    })
  )
}))

export const pgLayer = (): Layer.Layer<SqlClient.SqlClient, unknown> => Databases.pg({ maxConnections: 4 })

export const pgBLayer = (): Layer.Layer<SqlClient.SqlClient, unknown> =>
  PgClient.layer({ url: Redacted.make(pgBUrl), maxConnections: 4, connectTimeout: "10 seconds" })

export const mysqlLayer = (): Layer.Layer<SqlClient.SqlClient, unknown> => Databases.mysql({ maxConnections: 4 })

export const pgBAdmin = PgClient.make({ url: Redacted.make(pgBUrl), maxConnections: 2 }).pipe(
  Effect.provide(Reactivity.layer)
)

export const mysqlAdminClient = MysqlClient.make({ url: Redacted.make(Databases.mysqlUrl), maxConnections: 2 }).pipe(
  Effect.provide(Reactivity.layer)
)

/** A coordinator id no other test (of this run or a parallel one) uses. */
export const uniqueCoordinator = (): string =>
  `t${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}${Math.random().toString(36).slice(2, 6)}`

/** The global ids of prepared transactions of a coordinator, on PostgreSQL (both databases) and MariaDB. */
export const preparedLeft = (
  coordinatorId: string,
  prefix = "etx2pc"
): Effect.Effect<ReadonlyArray<string>, unknown> =>
  Effect.scoped(Effect.gen(function*() {
    const pg = yield* Databases.pgAdmin
    const my = yield* mysqlAdminClient
    const stem = `${prefix}.${coordinatorId}.`
    const pgRows = yield* pg<
      { gid: string }
    >`SELECT gid FROM pg_prepared_xacts WHERE left(gid, ${stem.length}) = ${stem}`
    const myRows = yield* my.unsafe<{ gtrid_length: number; data: Uint8Array | string }>("XA RECOVER").unprepared
    const myGids = myRows.map((row) =>
      (typeof row.data === "string" ? row.data : Buffer.from(row.data).toString("utf8")).slice(
        0,
        Number(row.gtrid_length)
      )
    ).filter((gid) => gid.startsWith(stem))
    return [...pgRows.map((row) => row.gid), ...myGids]
  }))

/**
 * Rolls back whatever a coordinator left prepared, on the three databases: registered by the tests before their
 * tables are dropped, as a prepared transaction keeps its locks (a DROP TABLE would wait for it forever).
 */
export const cleanupPrepared = (coordinatorId: string, prefix = "etx2pc"): Effect.Effect<void> =>
  Effect.scoped(Effect.gen(function*() {
    const stem = `${prefix}.${coordinatorId}.`
    const pgA = yield* Databases.pgAdmin
    const pgB = yield* pgBAdmin
    for (const sql of [pgA, pgB]) {
      const rows = yield* sql<{ gid: string }>`SELECT gid FROM pg_prepared_xacts
        WHERE database = current_database() AND left(gid, ${stem.length}) = ${stem}`
      for (const row of rows) yield* Effect.ignore(sql.unsafe(`ROLLBACK PREPARED '${row.gid}'`))
    }
    const my = yield* mysqlAdminClient
    const left = yield* preparedLeft(coordinatorId, prefix)
    for (const gid of left) yield* Effect.ignore(my.unsafe(`XA ROLLBACK '${gid}'`).unprepared)
  })).pipe(Effect.ignore)

/** A participant's table of rows (id, amount), created empty; dropped with the scope. */
export const table = (
  sql: SqlClient.SqlClient,
  name: string
): Effect.Effect<void, unknown, import("effect/Scope").Scope> =>
  Effect.acquireRelease(
    Effect.asVoid(sql.unsafe(`CREATE TABLE ${name} (id VARCHAR(64) PRIMARY KEY, amount INT NOT NULL)`)),
    () => Effect.ignore(sql.unsafe(`DROP TABLE IF EXISTS ${name}`))
  )

export const ids = (sql: SqlClient.SqlClient, name: string): Effect.Effect<ReadonlyArray<string>, unknown> =>
  Effect.map(sql.unsafe<{ id: string }>(`SELECT id FROM ${name} ORDER BY id`), (rows) => rows.map((r) => r.id))

export const insert = (name: string, id: string, amount = 1) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      sql.unsafe(
        `INSERT INTO ${name} (id, amount) VALUES (${
          sql.onDialectOrElse({
            pg: () => "$1",
            orElse: () => "?"
          })
        }, ${amount})`,
        [id]
      )
  )

export type { TwoPhaseCommit }
