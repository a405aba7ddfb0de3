import type { Connection } from "@effect/sql/SqlConnection"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { ClassifiedCode, Dialect, Fate } from "../../Dialect.js"
import * as IsolationLevel from "../../IsolationLevel.js"
import type { ResolvedTransactionOptions } from "../../Transaction.js"
import {
  configured,
  type Driver,
  exec,
  isPlain,
  type Mode,
  property,
  rejectDeferrable,
  socketErrorCodes,
  standardSavepoints,
  statements as makeStatements
} from "./common.js"

/** The `mysql2` pool connection behind an `@effect/sql-mysql2` reserved connection. */
interface MysqlPoolConnection {
  readonly threadId?: number | null
  readonly config?: unknown
  /** The command in flight, `null` when idle. */
  readonly _command?: unknown
  readonly stream?: { destroy(error?: Error): void }
  query(options: MysqlQuery, callback: (error: unknown, results: unknown) => void): void
  execute(options: MysqlQuery, callback: (error: unknown, results: unknown) => void): void
  destroy(): void
}

interface MysqlQuery {
  readonly sql: string
  readonly values?: ReadonlyArray<unknown>
  readonly rowsAsArray?: boolean
}

/** A standalone `mysql2` connection, made with the pool connection's own class and configuration. */
interface MysqlControlConnection {
  query(sql: string, callback: (error: unknown) => void): void
  on(event: "error", listener: (error: unknown) => void): void
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

/** The session variable that keeps the lock wait timeout to restore after a transaction with `lockTimeout`. */
const savedLockWait = "@effect_sql_tx_lock_wait_timeout"

/** InnoDB's lock wait timeout has a resolution of one second: a shorter bound is rounded up. */
const lockWaitSeconds = (duration: Duration.Duration): number => Math.max(1, Math.ceil(Duration.toSeconds(duration)))

/**
 * @internal
 * `SET TRANSACTION …` (when a level is asked for) and `START TRANSACTION …`, with the lock wait timeout saved and
 * set when asked for, sent in one round trip.
 */
export const beginSql = (options: ResolvedTransactionOptions, label?: string | undefined): string => {
  if (label === undefined && isPlain(options)) return "START TRANSACTION"
  const statements: Array<string> = []
  if (options.lockTimeout !== undefined) {
    statements.push(
      `SET ${savedLockWait} = @@SESSION.innodb_lock_wait_timeout, ` +
        `SESSION innodb_lock_wait_timeout = ${lockWaitSeconds(options.lockTimeout)}`
    )
  }
  if (options.isolation !== undefined) {
    statements.push(`SET TRANSACTION ISOLATION LEVEL ${IsolationLevel.toSql(options.isolation)}`)
  }
  statements.push(options.readOnly ? "START TRANSACTION READ ONLY" : "START TRANSACTION")
  // MySQL has no application name per transaction: a comment shows in the process list and statement history.
  // The name's characters cannot close a comment.
  return label === undefined ? statements.join("; ") : `/* effect-sql-tx:${label} */ ${statements.join("; ")}`
}

/** COMMIT or ROLLBACK, followed by the restore of the lock wait timeout when `begin` changed it. */
const endSql = (statement: string, options: ResolvedTransactionOptions): string =>
  options.lockTimeout === undefined
    ? statement
    : `${statement}; SET SESSION innodb_lock_wait_timeout = ${savedLockWait}`

/**
 * `KILL QUERY` for the connection's running statement, from a new connection outside the pool (with the pool's
 * configuration): a saturated pool could not give one, and mysql2 itself never cancels a statement.
 */
const cancel = (conn: Connection): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    const victim = poolConnection(conn)
    // Nothing in flight (every ROLLBACK asks): no connection, no timer.
    if (victim === undefined || victim.threadId == null || victim._command == null) return Effect.succeed(false)
    return Effect.async<boolean>((resume) => {
      // PoolConnection extends Connection, whose constructor takes `{ config }`.
      const Connection = Object.getPrototypeOf(Object.getPrototypeOf(victim)).constructor as new(
        options: { readonly config: unknown }
      ) => MysqlControlConnection
      const control = new Connection({ config: victim.config })
      control.on("error", () => undefined)
      control.query(`KILL QUERY ${Number(victim.threadId)}`, () => {
        control.destroy()
        resume(Effect.succeed(true))
      })
      return Effect.sync(() => control.destroy())
    }).pipe(Effect.timeoutTo({ duration: "5 seconds", onTimeout: () => true, onSuccess: (sent) => sent }))
  })

/**
 * `destroy()` removes the connection from the pool (the release that follows is then a no-op); it only half-closes
 * the socket, and mysql2 then never calls back the command in flight: the socket is destroyed first, with an
 * error, which fails that command.
 */
const abandon = (conn: Connection): void => {
  const connection = poolConnection(conn)
  connection?.stream?.destroy(new Error("effect-sql-tx: connection abandoned"))
  connection?.destroy()
}

/**
 * Whether a failed statement ended the whole transaction: InnoDB rolls a transaction back on a deadlock, and on a
 * lock wait timeout when `innodb_rollback_on_timeout` is on (asked of the server, before anything else is sent);
 * a lost connection ends it too. Other errors roll back the statement alone.
 */
const endsTransaction = (connection: MysqlPoolConnection, error: unknown, answer: (ends: boolean) => void): void => {
  const tag = classify(error)
  if (tag?.code === "1213" || tag?.tag === "ConnectionLost") return answer(true)
  if (tag?.code !== "1205") return answer(false)
  connection.query({ sql: "SELECT @@innodb_rollback_on_timeout AS r" }, (failed, rows) => {
    answer(failed !== null && failed !== undefined || Number(property((rows as Array<unknown>)[0], "r")) === 1)
  })
}

/**
 * What `common.statements` needs of the `mysql2` connection. A class rather than an object literal, made once per
 * transaction: V8 allocated the literal (and its closures) in the old generation once most outlived a scavenge
 * (`bench:profile -- --survivors --database mysql`: 456 bytes per transaction; see `TransactionRoot`).
 */
class MysqlDriver implements Driver {
  constructor(readonly conn: Connection, readonly connection: MysqlPoolConnection) {}
  // As `@effect/sql-mysql2` sends them: prepared, except `executeUnprepared`; rows as arrays for `executeValues`.
  send(sql: string, values: ReadonlyArray<unknown>, mode: Mode, callback: (error: unknown, rows: unknown) => void) {
    const query = { sql, values, rowsAsArray: mode === "values" }
    const done = (error: unknown, results: unknown) =>
      error ? callback(error, undefined) : callback(null, mode === "raw" || Array.isArray(results) ? results : [])
    if (mode === "unprepared") this.connection.query(query, done)
    else this.connection.execute(query, done)
  }
  endsTransaction(error: unknown, answer: (ends: boolean) => void) {
    endsTransaction(this.connection, error, answer)
  }
  /** Made when a statement is cancelled, not with every transaction. */
  get cancel() {
    return cancel(this.conn)
  }
  destroy() {
    abandon(this.conn)
  }
}

/** The statements of a transaction, sent on the `mysql2` connection itself (see `common.statements`). */
const statements = (conn: Connection, fate: Fate): Connection => {
  const connection = poolConnection(conn)
  return connection === undefined ? conn : makeStatements(conn, fate, new MysqlDriver(conn, connection))
}

/** @internal */
export const mysql: Dialect = {
  name: "mysql",
  dbSystem: "mysql",
  interruptibleReserve: false,
  validate: rejectDeferrable("MySQL/MariaDB"),
  begin: (conn, options, label) => exec(conn, beginSql(options, label)),
  subtransactionCache: undefined,
  commit: (conn, options) =>
    Effect.as(conn.executeUnprepared(endSql("COMMIT", options), [], undefined), "committed" as const),
  rollback: (conn, options) => exec(conn, endSql("ROLLBACK", options)),
  ...standardSavepoints,
  rollbackAndReleaseSavepoint: (conn, name) => exec(conn, `ROLLBACK TO SAVEPOINT ${name}; RELEASE SAVEPOINT ${name}`),
  classify,
  connectionId: (conn) => poolConnection(conn)?.threadId ?? undefined,
  cancel,
  cancellable: true,
  destroy: (conn) => Effect.sync(() => abandon(conn)),
  abandon,
  statements,
  errorAbortsBlock: false,
  // `@effect/sql-mysql2` passes `maxConnections` as mysql2's `connectionLimit`, whose default is 10.
  poolSize: (sql) => configured(sql, 10)
}
