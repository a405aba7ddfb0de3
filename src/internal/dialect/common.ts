import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { Dialect, Fate } from "../../Dialect.js"
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

/**
 * @internal
 * The `maxConnections` of a `PgClient` or `MysqlClient` configuration (both keep it in `config`), or the driver's
 * default pool size when not set.
 */
export const configured = (sql: unknown, fallback: number): number => {
  // A client is a function (the `sql` template tag) carrying its configuration as a property.
  const config = typeof sql === "function" ? (sql as { readonly config?: unknown }).config : property(sql, "config")
  const max = property(config, "maxConnections")
  return typeof max === "number" && max > 0 ? max : fallback
}

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

/** @internal What a driver query returns, as the five statement methods of a `Connection` ask for it. */
export type Mode = "execute" | "raw" | "values" | "unprepared"

/**
 * @internal
 * What `statements` needs of a driver: send a query on the connection (`callback` once, with the rows as the
 * mode asks), tell whether a failed query ended the whole transaction on the server (possibly asking the server,
 * before any other statement is sent), cancel the query in flight from outside the connection, and destroy the
 * connection.
 */
export interface Driver {
  readonly send: (
    sql: string,
    params: ReadonlyArray<unknown>,
    mode: Mode,
    callback: (error: unknown, rows: unknown) => void
  ) => void
  readonly endsTransaction: (error: unknown, answer: (ends: boolean) => void) => void
  readonly cancel: Effect.Effect<boolean>
  readonly destroy: () => void
}

/** How long an interrupted statement gets to settle after its cancel before its connection is destroyed. */
const settleMillis = 5_000

/**
 * @internal
 * The statements of a transaction on a PostgreSQL or MySQL connection, sent by the library rather than through the
 * `@effect/sql` driver, for two guarantees the drivers do not give:
 *
 * - an interrupted statement is cancelled on the server over a connection of its own (no pool slot needed), and
 *   the interrupted fiber goes on only once the driver has settled it (or destroyed the connection), so that no
 *   statement is left running on a connection that is about to be rolled back and returned;
 * - statements are sent one at a time, and when one fails in a way that ended the whole transaction on the
 *   server (a MySQL deadlock, a lost connection), `fate.doomed` is set before the next is sent: the ones queued
 *   behind it fail with the same error instead of running in autocommit.
 */
export const statements = (conn: Connection, fate: Fate, driver: Driver): Connection => {
  let busy = false
  // While a cancel is on its way, nothing else is sent: it must not reach the statement after the cancelled one.
  let cancelling = 0
  // Made when a statement must wait (statements sent at once by concurrent fibers), not with every transaction.
  let waiting: Array<() => void> | undefined
  const next = () => {
    busy = false
    if (cancelling > 0) return
    const send = waiting?.shift()
    if (send !== undefined) send()
  }
  const run = (sql: string, params: ReadonlyArray<unknown>, mode: Mode) =>
    Effect.async<unknown, SqlError>((resume) => {
      let state: "waiting" | "sent" | "settled" = "waiting"
      let onSettled: (() => void) | undefined
      const settle = (result: Effect.Effect<unknown, SqlError>) => {
        // Once: mysql2 may call back twice on a broken connection, and a statement given up on may answer late.
        if (state === "settled") return
        state = "settled"
        if (onSettled !== undefined) onSettled()
        resume(result)
        next()
      }
      const send = () => {
        const refused = fate.doomed ?? fate.closed?.()
        if (refused !== undefined) return settle(Effect.fail(refused))
        busy = true
        state = "sent"
        try {
          driver.send(sql, params, mode, (cause, rows) => {
            if (cause === null || cause === undefined) return settle(Effect.succeed(rows))
            const error = new SqlError({ cause, message: "Failed to execute statement" })
            driver.endsTransaction(cause, (ends) => {
              if (ends) fate.doomed ??= error
              settle(Effect.fail(error))
            })
          })
        } catch (cause) {
          settle(Effect.fail(new SqlError({ cause, message: "Failed to execute statement" })))
        }
      }
      if (busy) (waiting ??= []).push(send)
      else send()
      return Effect.suspend(() => {
        if (state === "settled") return Effect.void
        if (state === "waiting") {
          const index = waiting?.indexOf(send) ?? -1
          if (index !== -1) waiting!.splice(index, 1)
          return Effect.void
        }
        cancelling++
        const resumeQueue = Effect.sync(() => {
          cancelling--
          if (!busy) next()
        })
        return Effect.zipRight(
          driver.cancel,
          Effect.async<void>((done) => {
            if (state === "settled") return done(Effect.void)
            let destroyed = false
            const timer = setTimeout(function expire() {
              if (destroyed) {
                // The driver did not call back even on a destroyed connection: give the statement up, and with
                // it the transaction.
                const lost = new SqlError({
                  cause: new Error("the connection was destroyed"),
                  message: "Connection lost"
                })
                fate.doomed ??= lost
                return settle(Effect.fail(lost))
              }
              destroyed = true
              driver.destroy()
              timer.refresh()
            }, settleMillis)
            onSettled = () => {
              clearTimeout(timer)
              done(Effect.void)
            }
          }).pipe(Effect.ensuring(resumeQueue))
        )
      })
    })
  const withRows = (
    sql: string,
    params: ReadonlyArray<unknown>,
    mode: Mode,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) => {
    const effect = run(sql, params, mode) as Effect.Effect<ReadonlyArray<any>, SqlError>
    return transformRows === undefined ? effect : Effect.map(effect, transformRows)
  }
  return new DriverStatements(conn, run, withRows)
}

/** @internal The `transformRows` argument of a `Connection`'s statement methods. */
export type Rows = <A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>

/**
 * The connection `statements` returns: a class rather than an object literal, made once per transaction (V8 would
 * allocate a literal's objects in the old generation once most outlive a scavenge: see `TransactionRoot`).
 */
class DriverStatements implements Connection {
  constructor(
    readonly conn: Connection,
    readonly run: (sql: string, params: ReadonlyArray<unknown>, mode: Mode) => Effect.Effect<unknown, SqlError>,
    readonly withRows: (
      sql: string,
      params: ReadonlyArray<unknown>,
      mode: Mode,
      transformRows: Rows | undefined
    ) => Effect.Effect<ReadonlyArray<any>, SqlError>
  ) {}
  execute(sql: string, params: ReadonlyArray<unknown>, transformRows: Rows | undefined) {
    return this.withRows(sql, params, "execute", transformRows)
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    return this.run(sql, params, "raw")
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    return this.run(sql, params, "values") as Effect.Effect<ReadonlyArray<any>, SqlError>
  }
  executeUnprepared(sql: string, params: ReadonlyArray<unknown>, transformRows: Rows | undefined) {
    return this.withRows(sql, params, "unprepared", transformRows)
  }
  // Streams are rare inside transactions: the driver's own, checked by the block's guard.
  executeStream(sql: string, params: ReadonlyArray<unknown>, transformRows: Rows | undefined) {
    return this.conn.executeStream(sql, params, transformRows)
  }
}
