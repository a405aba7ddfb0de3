/**
 * Client layers for the three databases of the test suite, with this machine's defaults. Each call builds its own
 * pool; the URLs come from `PG_URL` and `MYSQL_URL`.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { SqlClient } from "@effect/sql/SqlClient"
import { Effect, Layer, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

export const pgUrl = process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
export const mysqlUrl = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"

export interface PoolOptions {
  readonly maxConnections?: number | undefined
  /** PostgreSQL only: the session's deadlock_timeout (a superuser setting, passed at connection start-up). */
  readonly deadlockTimeout?: string | undefined
}

export const pg = (options: PoolOptions = {}): Layer.Layer<SqlClient, unknown> =>
  PgClient.layer({
    url: Redacted.make(
      options.deadlockTimeout === undefined
        ? pgUrl
        : `${pgUrl}${pgUrl.includes("?") ? "&" : "?"}options=${
          encodeURIComponent(`-c deadlock_timeout=${options.deadlockTimeout}`)
        }`
    ),
    maxConnections: options.maxConnections ?? 8,
    connectTimeout: "10 seconds"
  })

export const mysql = (options: PoolOptions = {}): Layer.Layer<SqlClient, unknown> =>
  MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections: options.maxConnections ?? 8 })

/** SQLite in a file of its own in a temporary folder, removed when the layer is released. */
export const sqlite = (_options: PoolOptions = {}): Layer.Layer<SqlClient, unknown> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-sql-tx-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    )
    return SqliteClient.layer({ filename: Path.join(dir, "test.db") })
  }))

/** A table name no other test (of this run or a parallel one) uses. */
export const uniqueTable = (prefix: string): string =>
  `${prefix}_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`

/** A second, independent client for a test to act from outside the pool under test (scoped). */
export const pgAdmin = PgClient.make({ url: Redacted.make(pgUrl), maxConnections: 2 }).pipe(
  Effect.provide(Reactivity.layer)
)

/** A second, independent client for a test to act from outside the pool under test (scoped). */
export const mysqlAdmin = MysqlClient.make({ url: Redacted.make(mysqlUrl), maxConnections: 2 }).pipe(
  Effect.provide(Reactivity.layer)
)
