/**
 * Where the demo runs: `--database-url` (or `DATABASE_URL`) read as PostgreSQL, MySQL/MariaDB or a SQLite file,
 * and the client layer for it.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type * as SqlClient from "@effect/sql/SqlClient"
import { Data, Effect, Either, Layer, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Url from "node:url"

export type Database = Data.TaggedEnum<{
  /** SQLite in a temporary folder, removed at the end (no `--database-url`). */
  Temporary: {}
  /** SQLite in this file (a path, or a `file:` URL). */
  Sqlite: { readonly filename: string }
  Pg: { readonly url: Redacted.Redacted }
  Mysql: { readonly url: Redacted.Redacted }
}>
export const Database = Data.taggedEnum<Database>()

const schemes = "postgres://, postgresql://, mysql://, file: or a SQLite file path"

/**
 * Reads a database URL, or says what is wrong with it. The messages never repeat the URL, which may hold a
 * password. A string without a scheme (`./bank.db`, `C:\bank.db`) is a SQLite path; an empty one means the default.
 */
export const parse = (input: string): Either.Either<Database, string> => {
  if (input === "") return Either.right(Database.Temporary())
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(input)?.[1]?.toLowerCase()
  if (scheme === undefined) return Either.right(Database.Sqlite({ filename: input }))
  if (scheme === "file") {
    try {
      return Either.right(Database.Sqlite({ filename: Url.fileURLToPath(input) }))
    } catch (error) {
      return Either.left(`not a file URL (${error instanceof Error ? error.message : String(error)})`)
    }
  }
  if (scheme !== "postgres" && scheme !== "postgresql" && scheme !== "mysql") {
    return Either.left(`unsupported scheme "${scheme}:"; use ${schemes}`)
  }
  if (!URL.canParse(input)) {
    return Either.left(`not a valid URL (expected ${scheme}://user:password@host:port/database)`)
  }
  const url = Redacted.make(input)
  return Either.right(scheme === "mysql" ? Database.Mysql({ url }) : Database.Pg({ url }))
}

/** The client for `database`, with a pool of `connections`. */
export const layer = (database: Database, connections: number): Layer.Layer<SqlClient.SqlClient, unknown> =>
  Database.$match(database, {
    Pg: ({ url }) => PgClient.layer({ url, maxConnections: connections }),
    Mysql: ({ url }) => MysqlClient.layer({ url, maxConnections: connections }),
    Sqlite: ({ filename }) => SqliteClient.layer({ filename }),
    Temporary: () =>
      Layer.unwrapScoped(Effect.map(
        Effect.acquireRelease(
          Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-sql-tx-demo-"))),
          (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
        ),
        (dir) => SqliteClient.layer({ filename: Path.join(dir, "bank.db") })
      ))
  })
