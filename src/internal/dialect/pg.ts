import type { Connection } from "@effect/sql/SqlConnection"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { ClassifiedCode, Dialect, Fate } from "../../Dialect.js"
import * as IsolationLevel from "../../IsolationLevel.js"
import type { ResolvedTransactionOptions } from "../../Transaction.js"
import { InvalidTransactionOptions } from "../../TransactionError.js"
import {
  configured,
  type Driver,
  exec,
  isPlain,
  type Mode,
  property,
  socketErrorCodes,
  standardSavepoints,
  statements as makeStatements
} from "./common.js"

/** The `pg` client behind an `@effect/sql-pg` reserved connection (a public field of its connection class). */
interface PgPoolClient {
  readonly processID?: number | null
  readonly secretKey?: number | null
  readonly host?: string
  readonly port?: number
  readonly connectionParameters?: unknown
  readonly _getActiveQuery?: () => unknown
  query(config: PgQueryConfig, callback: (error: unknown, result: PgResult | ReadonlyArray<PgResult>) => void): void
  end(): Promise<void>
}

interface PgQueryConfig {
  readonly text: string
  readonly values: ReadonlyArray<unknown>
  readonly rowMode?: "array"
}

interface PgResult {
  readonly rows?: ReadonlyArray<unknown>
}

/** The protocol-level connection of a `pg` client, enough to send a CancelRequest. */
interface PgWire {
  connect(port: number | string, host?: string): void
  cancel(processID: number, secretKey: number): void
  on(event: "end" | "error", listener: () => void): void
  once(event: "connect", listener: () => void): void
  end(): void
}

const pgClient = (conn: Connection): PgPoolClient | undefined => property(conn, "pg") as PgPoolClient | undefined

const sqlStates: Record<string, ClassifiedCode["tag"]> = {
  "40P01": "DeadlockDetected",
  "40001": "SerializationFailure",
  "55P03": "LockTimeout",
  "25006": "ReadOnlyViolation",
  "25P02": "TransactionAborted",
  "25P03": "ConnectionLost", // idle_in_transaction_session_timeout: the server closed the session
  "57P01": "ConnectionLost", // admin_shutdown: pg_terminate_backend
  "57P02": "ConnectionLost", // crash_shutdown
  "57P03": "ConnectionLost" // cannot_connect_now
}

/** Messages of the plain `Error`s that `pg` raises when the socket is gone (they carry no code). */
const connectionMessages = /Connection terminated|not queryable|connection error|Client was closed/i

/** @internal */
export const classify = (cause: unknown): ClassifiedCode | undefined => {
  const code = property(cause, "code")
  const message = property(cause, "message")
  if (typeof code === "string") {
    const tag = sqlStates[code]
    if (tag !== undefined) return { tag, code }
    // 57014 is any cancelled statement: only `statement_timeout` is a StatementTimeout. A cancel "due to user
    // request" (ours, on a transaction timeout, or an operator's) is not classified here.
    if (code === "57014" && typeof message === "string" && /statement timeout/i.test(message)) {
      return { tag: "StatementTimeout", code }
    }
    if (code.startsWith("08")) return { tag: "ConnectionLost", code }
    if (socketErrorCodes.has(code)) return { tag: "ConnectionLost", code }
    return undefined
  }
  if (typeof message === "string" && connectionMessages.test(message)) {
    return { tag: "ConnectionLost", code: undefined }
  }
  return undefined
}

const millis = (duration: Duration.Duration): number => Math.max(1, Math.ceil(Duration.toMillis(duration)))

/** A string literal: the name's characters are already restricted, and quotes are doubled all the same. */
const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`

/** @internal The BEGIN statement for the options, all modes folded into it, and the local settings after it. */
export const beginSql = (options: ResolvedTransactionOptions, label?: string | undefined): string => {
  if (label === undefined && isPlain(options)) return "BEGIN"
  const modes: Array<string> = []
  if (options.isolation !== undefined) modes.push(`ISOLATION LEVEL ${IsolationLevel.toSql(options.isolation)}`)
  if (options.readOnly) modes.push("READ ONLY")
  if (options.deferrable) modes.push("DEFERRABLE")
  const begin = modes.length === 0 ? "BEGIN" : `BEGIN ${modes.join(", ")}`
  // SET LOCAL ends with the transaction, whichever way it ends: nothing to restore.
  const locals: Array<string> = []
  if (options.lockTimeout !== undefined) locals.push(`SET LOCAL lock_timeout = ${millis(options.lockTimeout)}`)
  if (label !== undefined) locals.push(`SET LOCAL application_name = ${literal(`effect-sql-tx:${label}`.slice(0, 63))}`)
  return [begin, ...locals].join("; ")
}

/**
 * Sends a CancelRequest for the client's running statement over a new socket, as `pg`'s own `Client.cancel`
 * does, but without needing a pool slot (a pool whose connections are all busy cannot run `pg_cancel_backend`).
 * Completes when the server has closed the cancel socket, that is when it has taken the request.
 */
const cancel = (conn: Connection): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    const client = pgClient(conn)
    if (
      client === undefined || client.processID == null || client.secretKey == null ||
      client._getActiveQuery?.() == null
    ) {
      // Nothing in flight (every ROLLBACK asks): no socket, no timer.
      return Effect.succeed(false)
    }
    const processID = client.processID
    const secretKey = client.secretKey
    return Effect.async<boolean>((resume) => {
      const Client = (client as object).constructor as new(config: unknown) => { readonly connection: PgWire }
      const wire = new Client(client.connectionParameters).connection
      let done = false
      const finish = () => {
        if (done) return
        done = true
        resume(Effect.succeed(true))
      }
      wire.on("end", finish)
      wire.on("error", finish)
      if (client.host?.startsWith("/")) wire.connect(`${client.host}/.s.PGSQL.${client.port}`)
      else wire.connect(client.port ?? 5432, client.host)
      wire.once("connect", () => wire.cancel(processID, secretKey))
      return Effect.sync(() => wire.end())
    }).pipe(Effect.timeoutTo({ duration: "5 seconds", onTimeout: () => true, onSuccess: (sent) => sent }))
  })

/** `end()` marks the client as ending, so that pg-pool removes it instead of reusing it when it is released. */
const abandon = (conn: Connection): void => {
  pgClient(conn)?.end().catch(() => undefined)
}

/** The rows of a result, as `@effect/sql-pg` gives them (one array per statement for several statements). */
const rowsOf = (result: PgResult | ReadonlyArray<PgResult>, mode: Mode): unknown =>
  mode === "raw"
    ? result
    : Array.isArray(result)
    ? result.map((r: PgResult) => r.rows ?? [])
    : (result as PgResult).rows ?? []

/**
 * What `common.statements` needs of the `pg` client. A class rather than an object literal, made once per
 * transaction (see `MysqlDriver`).
 */
class PgDriver implements Driver {
  constructor(readonly conn: Connection, readonly client: PgPoolClient) {}
  send(text: string, values: ReadonlyArray<unknown>, mode: Mode, callback: (error: unknown, rows: unknown) => void) {
    this.client.query(
      mode === "values" ? { text, values, rowMode: "array" } : { text, values },
      (error, result) => error ? callback(error, undefined) : callback(null, rowsOf(result, mode))
    )
  }
  // A failed statement aborts the transaction (or the savepoint) but does not end it, unless the connection is gone.
  endsTransaction(error: unknown, answer: (ends: boolean) => void) {
    answer(classify(error)?.tag === "ConnectionLost")
  }
  /** Made when a statement is cancelled, not with every transaction. */
  get cancel() {
    return cancel(this.conn)
  }
  destroy() {
    abandon(this.conn)
  }
}

/** The statements of a transaction, sent on the `pg` client itself (see `common.statements`). */
const statements = (conn: Connection, fate: Fate): Connection => {
  const client = pgClient(conn)
  return client === undefined ? conn : makeStatements(conn, fate, new PgDriver(conn, client))
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
  begin: (conn, options, label) => exec(conn, beginSql(options, label)),
  subtransactionCache: 64,
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
  cancel,
  cancellable: true,
  destroy: (conn) => Effect.sync(() => abandon(conn)),
  abandon,
  statements,
  errorAbortsBlock: true,
  // pg-pool's default `max` is 10.
  poolSize: (sql) => configured(sql, 10)
}
