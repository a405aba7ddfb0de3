import type { Connection } from "@effect/sql/SqlConnection"
import * as Effect from "effect/Effect"
import type { ClassifiedCode, Dialect } from "../../Dialect.js"
import * as IsolationLevel from "../../IsolationLevel.js"
import type { ResolvedTransactionOptions } from "../../Transaction.js"
import { InvalidTransactionOptions } from "../../TransactionError.js"
import { exec, property, socketErrorCodes, standardSavepoints } from "./common.js"

/** The `pg` client behind an `@effect/sql-pg` reserved connection (a public field of its connection class). */
interface PgPoolClient {
  readonly processID?: number | null
  end(): Promise<void>
}

const pgClient = (conn: Connection): PgPoolClient | undefined => property(conn, "pg") as PgPoolClient | undefined

const sqlStates: Record<string, ClassifiedCode["tag"]> = {
  "40P01": "DeadlockDetected",
  "40001": "SerializationFailure",
  "55P03": "LockTimeout",
  "57014": "StatementTimeout",
  "25006": "ReadOnlyViolation",
  "25P02": "TransactionAborted",
  "57P01": "ConnectionLost", // admin_shutdown: pg_terminate_backend
  "57P02": "ConnectionLost", // crash_shutdown
  "57P03": "ConnectionLost" // cannot_connect_now
}

/** Messages of the plain `Error`s that `pg` raises when the socket is gone (they carry no code). */
const connectionMessages = /Connection terminated|not queryable|connection error|Client was closed/i

/** @internal */
export const classify = (cause: unknown): ClassifiedCode | undefined => {
  const code = property(cause, "code")
  if (typeof code === "string") {
    const tag = sqlStates[code]
    if (tag !== undefined) return { tag, code }
    if (code.startsWith("08")) return { tag: "ConnectionLost", code }
    if (socketErrorCodes.has(code)) return { tag: "ConnectionLost", code }
    return undefined
  }
  const message = property(cause, "message")
  if (typeof message === "string" && connectionMessages.test(message)) {
    return { tag: "ConnectionLost", code: undefined }
  }
  return undefined
}

/** @internal The BEGIN statement for the options, all modes folded into it. */
export const beginSql = (options: ResolvedTransactionOptions): string => {
  const modes: Array<string> = []
  if (options.isolation !== undefined) modes.push(`ISOLATION LEVEL ${IsolationLevel.toSql(options.isolation)}`)
  if (options.readOnly) modes.push("READ ONLY")
  if (options.deferrable) modes.push("DEFERRABLE")
  return modes.length === 0 ? "BEGIN" : `BEGIN ${modes.join(", ")}`
}

/** @internal */
export const pg: Dialect = {
  name: "pg",
  dbSystem: "postgresql",
  interruptibleReserve: false,
  validate: (options) =>
    options.deferrable && (options.isolation !== "serializable" || !options.readOnly)
      ? new InvalidTransactionOptions({
        option: "deferrable",
        value: true,
        reason: "PostgreSQL honours DEFERRABLE only with isolation \"serializable\" and readOnly: true"
      })
      : undefined,
  begin: (conn, options) => exec(conn, beginSql(options)),
  commit: (conn) =>
    Effect.map(
      conn.executeRaw("COMMIT", []),
      // PostgreSQL answers the COMMIT of an aborted transaction with the command tag ROLLBACK, not an error.
      (result) => property(result, "command") === "ROLLBACK" ? "rolledBack" : "committed"
    ),
  rollback: (conn) => exec(conn, "ROLLBACK"),
  ...standardSavepoints,
  rollbackAndReleaseSavepoint: (conn, name) => exec(conn, `ROLLBACK TO SAVEPOINT ${name}; RELEASE SAVEPOINT ${name}`),
  classify,
  connectionId: (conn) => pgClient(conn)?.processID ?? undefined,
  destroy: (conn) =>
    Effect.sync(() => {
      // `end()` marks the client as ending, so that pg-pool removes it instead of reusing it when it is released.
      pgClient(conn)?.end().catch(() => undefined)
    })
}
