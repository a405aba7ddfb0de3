import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { Dialect } from "../../Dialect.js"
import type { ResolvedTransactionOptions } from "../../Transaction.js"
import { InvalidTransactionOptions } from "../../TransactionError.js"

/** @internal Sends SQL text as is (simple protocol, several statements allowed where the driver allows it). */
export const exec = (conn: Connection, sql: string): Effect.Effect<void, SqlError> =>
  Effect.asVoid(conn.executeUnprepared(sql, [], undefined))

/** @internal The SQL-standard savepoint statements, which all three databases accept. */
export const standardSavepoints: Pick<
  Dialect,
  "savepoint" | "releaseSavepoint" | "rollbackToSavepoint"
> = {
  savepoint: (conn, name) => exec(conn, `SAVEPOINT ${name}`),
  releaseSavepoint: (conn, name) => exec(conn, `RELEASE SAVEPOINT ${name}`),
  rollbackToSavepoint: (conn, name) => exec(conn, `ROLLBACK TO SAVEPOINT ${name}`)
}

/**
 * @internal
 * Whether a transaction asks for nothing but the database's defaults (most do: their BEGIN is a constant).
 */
export const isPlain = (options: ResolvedTransactionOptions): boolean =>
  options.isolation === undefined && !options.readOnly && !options.deferrable && options.lockTimeout === undefined

/** @internal Refuses `deferrable` on a database that has no such mode. */
export const rejectDeferrable = (database: string) => (options: ResolvedTransactionOptions) =>
  options.deferrable
    ? new InvalidTransactionOptions({
      option: "deferrable",
      value: true,
      reason: `${database} has no deferrable transactions (a PostgreSQL feature)`
    })
    : undefined

/** @internal Reads a property of an unknown error object. */
export const property = (cause: unknown, key: string): unknown =>
  typeof cause === "object" && cause !== null ? (cause as Record<string, unknown>)[key] : undefined

/** @internal Node's socket error codes: the connection is gone. */
export const socketErrorCodes: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTCONN"
])
