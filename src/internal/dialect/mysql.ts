import type { Connection } from "@effect/sql/SqlConnection"
import * as Effect from "effect/Effect"
import type { ClassifiedCode, Dialect } from "../../Dialect.js"
import * as IsolationLevel from "../../IsolationLevel.js"
import type { ResolvedTransactionOptions } from "../../Transaction.js"
import { exec, property, rejectDeferrable, socketErrorCodes, standardSavepoints } from "./common.js"

/** The `mysql2` pool connection behind an `@effect/sql-mysql2` reserved connection. */
interface MysqlPoolConnection {
  readonly threadId?: number | null
  destroy(): void
}

const poolConnection = (conn: Connection): MysqlPoolConnection | undefined =>
  property(conn, "conn") as MysqlPoolConnection | undefined

const errnos: Record<number, ClassifiedCode["tag"]> = {
  1213: "DeadlockDetected", // ER_LOCK_DEADLOCK (its SQLSTATE is 40001: classify by errno first)
  1020: "SerializationFailure", // ER_CHECKREAD: MariaDB's snapshot isolation write conflict
  1205: "LockTimeout", // ER_LOCK_WAIT_TIMEOUT
  3572: "LockTimeout", // ER_LOCK_NOWAIT
  3024: "StatementTimeout", // ER_QUERY_TIMEOUT (MySQL MAX_EXECUTION_TIME)
  1969: "StatementTimeout", // ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
  1792: "ReadOnlyViolation", // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
  2006: "ConnectionLost", // CR_SERVER_GONE_ERROR
  2013: "ConnectionLost", // CR_SERVER_LOST
  1053: "ConnectionLost", // ER_SERVER_SHUTDOWN
  1927: "ConnectionLost", // ER_CONNECTION_KILLED (MariaDB)
  4031: "ConnectionLost" // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
}

const connectionCodes: ReadonlySet<string> = new Set([
  ...socketErrorCodes,
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "ER_SERVER_SHUTDOWN"
])

/** @internal */
export const classify = (cause: unknown): ClassifiedCode | undefined => {
  const errno = property(cause, "errno")
  if (typeof errno === "number") {
    const tag = errnos[errno]
    if (tag !== undefined) return { tag, code: String(errno) }
  }
  const code = property(cause, "code")
  if (typeof code === "string" && connectionCodes.has(code)) return { tag: "ConnectionLost", code }
  if (property(cause, "fatal") === true) {
    return { tag: "ConnectionLost", code: typeof code === "string" ? code : undefined }
  }
  if (property(cause, "sqlState") === "40001") return { tag: "SerializationFailure", code: "40001" }
  return undefined
}

/** @internal `SET TRANSACTION …` (when a level is asked for) and `START TRANSACTION …`, sent in one round trip. */
export const beginSql = (options: ResolvedTransactionOptions): string => {
  const start = options.readOnly ? "START TRANSACTION READ ONLY" : "START TRANSACTION"
  return options.isolation === undefined
    ? start
    : `SET TRANSACTION ISOLATION LEVEL ${IsolationLevel.toSql(options.isolation)}; ${start}`
}

/** @internal */
export const mysql: Dialect = {
  name: "mysql",
  dbSystem: "mysql",
  interruptibleReserve: false,
  validate: rejectDeferrable("MySQL/MariaDB"),
  begin: (conn, options) => exec(conn, beginSql(options)),
  commit: (conn) => Effect.as(exec(conn, "COMMIT"), "committed" as const),
  rollback: (conn) => exec(conn, "ROLLBACK"),
  ...standardSavepoints,
  rollbackAndReleaseSavepoint: (conn, name) => exec(conn, `ROLLBACK TO SAVEPOINT ${name}; RELEASE SAVEPOINT ${name}`),
  classify,
  connectionId: (conn) => poolConnection(conn)?.threadId ?? undefined,
  destroy: (conn) =>
    Effect.sync(() => {
      // `destroy()` removes the connection from the pool; the release that follows is then a no-op.
      poolConnection(conn)?.destroy()
    })
}
