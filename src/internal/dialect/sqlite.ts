import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type { ClassifiedCode, Dialect, Fate } from "../../Dialect.js"
import type { ResolvedTransactionOptions } from "../../Transaction.js"
import { exec, property, rejectDeferrable, type Rows, standardSavepoints } from "./common.js"

/** @internal better-sqlite3 result code names (`SQLITE_BUSY_SNAPSHOT` is a `SQLITE_BUSY`). */
export const classify = (cause: unknown): ClassifiedCode | undefined => {
  const code = property(cause, "code")
  if (typeof code !== "string") return undefined
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return { tag: "LockTimeout", code }
  if (code.startsWith("SQLITE_READONLY")) return { tag: "ReadOnlyViolation", code }
  return undefined
}

/** The busy timeout to restore after a transaction with `lockTimeout`, per connection. */
const savedBusyTimeout = new WeakMap<Connection, number>()

/** `lockTimeout` is SQLite's busy timeout: how long a statement waits for another connection's lock. */
const setBusyTimeout = (conn: Connection, lockTimeout: Duration.Duration): Effect.Effect<void, SqlError> =>
  Effect.flatMap(conn.executeUnprepared("PRAGMA busy_timeout", [], undefined), (rows) => {
    savedBusyTimeout.set(conn, Number(property(rows[0], "timeout") ?? 0))
    return exec(conn, `PRAGMA busy_timeout = ${Math.max(1, Math.ceil(Duration.toMillis(lockTimeout)))}`)
  })

const restoreBusyTimeout = (conn: Connection): Effect.Effect<void, SqlError> =>
  Effect.suspend(() => {
    const saved = savedBusyTimeout.get(conn)
    savedBusyTimeout.delete(conn)
    return saved === undefined ? Effect.void : exec(conn, `PRAGMA busy_timeout = ${saved}`)
  })

/** Whether `begin` changed session state that the end of the transaction must restore. */
const changesSession = (options: ResolvedTransactionOptions): boolean =>
  options.readOnly || options.lockTimeout !== undefined

/** Restores the session state that `begin` changed, whatever happened to the statement before. */
const reset = (conn: Connection, options: ResolvedTransactionOptions): Effect.Effect<void> =>
  !changesSession(options) ? Effect.void : Effect.ignore(Effect.zipRight(
    options.readOnly ? exec(conn, "PRAGMA query_only = OFF") : Effect.void,
    options.lockTimeout === undefined ? Effect.void : restoreBusyTimeout(conn)
  ))

/** The result codes after which SQLite may have rolled the whole transaction back (its documentation's list). */
const mayEndTransaction = /^SQLITE_(FULL|IOERR|BUSY|NOMEM|INTERRUPT|CORRUPT)/

/**
 * Whether the transaction is still open: `BEGIN` fails inside one. When it succeeds, the failed statement had
 * ended the transaction, and the probe's own empty transaction is rolled back.
 */
const stillOpen = (conn: Connection): Effect.Effect<boolean> =>
  Effect.matchEffect(exec(conn, "BEGIN"), {
    onFailure: () => Effect.succeed(true),
    onSuccess: () => Effect.as(Effect.ignore(exec(conn, "ROLLBACK")), false)
  })

class Statements implements Connection {
  // A class rather than an object literal, made once per transaction: see `TransactionRoot` (state.ts).
  constructor(readonly conn: Connection, readonly fate: Fate) {}
  private watch<A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> {
    return Effect.catchAll(effect, (error) => {
      const code = property(error.cause, "code")
      if (typeof code !== "string" || !mayEndTransaction.test(code)) return Effect.fail(error)
      return Effect.flatMap(stillOpen(this.conn), (open) => {
        if (!open) this.fate.doomed ??= error
        return Effect.fail(error)
      })
    })
  }
  execute(sql: string, params: ReadonlyArray<unknown>, transformRows: Rows | undefined) {
    return this.watch(this.conn.execute(sql, params, transformRows))
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    return this.watch(this.conn.executeRaw(sql, params))
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    return this.watch(this.conn.executeValues(sql, params))
  }
  executeUnprepared(sql: string, params: ReadonlyArray<unknown>, transformRows: Rows | undefined) {
    return this.watch(this.conn.executeUnprepared(sql, params, transformRows))
  }
  executeStream(sql: string, params: ReadonlyArray<unknown>, transformRows: Rows | undefined) {
    return this.conn.executeStream(sql, params, transformRows)
  }
}

/**
 * The statements of a transaction: better-sqlite3 runs them synchronously in process, so there is nothing to
 * cancel; after an error that may have ended the transaction, SQLite is asked whether it did.
 */
const statements = (conn: Connection, fate: Fate): Connection => new Statements(conn, fate)

/**
 * @internal
 * SQLite is serializable whatever level is asked for. A read-write transaction starts with `BEGIN IMMEDIATE`, taking
 * the write lock at once, so that it cannot fail with `SQLITE_BUSY` half-way when a read turns into a write; a
 * read-only one starts with `BEGIN` and `PRAGMA query_only`, reset at the end. better-sqlite3 runs one statement a
 * call, but in process: no round trip.
 */
export const sqlite: Dialect = {
  name: "sqlite",
  dbSystem: "sqlite",
  interruptibleReserve: true,
  validate: rejectDeferrable("SQLite"),
  subtransactionCache: undefined,
  begin: (conn, options) => {
    const begin = options.readOnly
      ? Effect.zipRight(exec(conn, "BEGIN"), exec(conn, "PRAGMA query_only = ON"))
      : exec(conn, "BEGIN IMMEDIATE")
    return options.lockTimeout === undefined ? begin : Effect.zipRight(setBusyTimeout(conn, options.lockTimeout), begin)
  },
  // A refused COMMIT leaves the transaction open (the lifecycle rolls back next): reset only after a success.
  commit: (conn, options) =>
    Effect.as(
      changesSession(options) ? Effect.zipLeft(exec(conn, "COMMIT"), reset(conn, options)) : exec(conn, "COMMIT"),
      "committed" as const
    ),
  rollback: (conn, options) =>
    changesSession(options) ? Effect.ensuring(exec(conn, "ROLLBACK"), reset(conn, options)) : exec(conn, "ROLLBACK"),
  ...standardSavepoints,
  rollbackAndReleaseSavepoint: (conn, name) =>
    Effect.zipRight(exec(conn, `ROLLBACK TO SAVEPOINT ${name}`), exec(conn, `RELEASE SAVEPOINT ${name}`)),
  classify,
  connectionId: () => undefined,
  // Statements run synchronously in process: by the time another fiber runs, none is in flight.
  cancel: () => Effect.succeed(false),
  cancellable: false,
  // One connection per client: it cannot be replaced; make sure no transaction stays open on it, and reset the
  // session settings a transaction may have changed.
  destroy: (conn) =>
    Effect.all([
      Effect.ignore(exec(conn, "ROLLBACK")),
      Effect.ignore(exec(conn, "PRAGMA query_only = OFF")),
      Effect.ignore(restoreBusyTimeout(conn))
    ], { discard: true }),
  abandon: undefined,
  statements,
  errorAbortsBlock: false,
  poolSize: () => 1
}
