/**
 * What effect-sql-tx needs to know about a database, in one interface: the SQL of BEGIN (with the options folded
 * into one round trip), savepoints, COMMIT and ROLLBACK; the table that maps driver error codes to typed errors;
 * the connection's server-side id; and how to discard a connection whose state is unknown.
 *
 * The three implementations (`pg`, `mysql`, `sqlite`) are the only code of the library that knows a database.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as MysqlDialect from "./internal/dialect/mysql.js"
import * as PgDialect from "./internal/dialect/pg.js"
import * as SqliteDialect from "./internal/dialect/sqlite.js"
import type { ResolvedTransactionOptions } from "./Transaction.js"
import type { DatabaseErrorTag, InvalidTransactionOptions } from "./TransactionError.js"
import { UnsupportedDialect } from "./TransactionError.js"

/**
 * The dialects this library supports, named as `@effect/sql` names them.
 *
 * @since 0.1.0
 * @category models
 */
export type DialectName = "pg" | "mysql" | "sqlite"

/**
 * The OpenTelemetry `db.system` value of a dialect, used as the `db_system` metric tag.
 *
 * @since 0.1.0
 * @category models
 */
export type DbSystem = "postgresql" | "mysql" | "sqlite"

/**
 * How the database answered COMMIT: PostgreSQL answers a COMMIT of an aborted transaction with `ROLLBACK`.
 *
 * @since 0.1.0
 * @category models
 */
export type CommitOutcome = "committed" | "rolledBack"

/**
 * A driver error recognized by a dialect's error table.
 *
 * @since 0.1.0
 * @category models
 */
export interface ClassifiedCode {
  readonly tag: DatabaseErrorTag
  readonly code: string | undefined
}

/**
 * What a transaction's statements share about its fate: the error after which the database had rolled the whole
 * transaction back (a MySQL/MariaDB deadlock, a lost connection…). Once it is set no statement of the transaction
 * is sent: they fail with it, and the transaction ends with it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Fate {
  doomed: SqlError | undefined
  /**
   * Set when the transaction's COMMIT or ROLLBACK is about to be sent: a statement still waiting to be sent then
   * (of a fiber that outlived its block) fails with the error it makes instead. (A function: an error is made
   * only when one is needed, as making one captures a stack trace.)
   */
  closed: (() => SqlError) | undefined
}

/**
 * Everything database-specific that a transaction needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface Dialect {
  readonly name: DialectName
  readonly dbSystem: DbSystem
  /** Refuses options the database cannot honour (for example `deferrable` outside PostgreSQL). */
  readonly validate: (options: ResolvedTransactionOptions) => InvalidTransactionOptions | undefined
  /**
   * Whether the client's `reserve` can be interrupted while it waits for a connection without leaking it
   * (`@effect/sql-sqlite-node`: yes; `@effect/sql-pg` and `@effect/sql-mysql2`: no).
   */
  readonly interruptibleReserve: boolean
  /**
   * Starts a transaction with the options applied, in one round trip where the driver allows it; `label`, when
   * given, makes the transaction's name visible to the database's own monitoring.
   */
  readonly begin: (
    conn: Connection,
    options: ResolvedTransactionOptions,
    label?: string | undefined
  ) => Effect.Effect<void, SqlError>
  /** How many savepoints a transaction can have before the server slows down (PostgreSQL: 64), if any limit. */
  readonly subtransactionCache: number | undefined
  /** Commits, and restores any session state that `begin` changed. */
  readonly commit: (conn: Connection, options: ResolvedTransactionOptions) => Effect.Effect<CommitOutcome, SqlError>
  /** Rolls back, and restores any session state that `begin` changed. */
  readonly rollback: (conn: Connection, options: ResolvedTransactionOptions) => Effect.Effect<void, SqlError>
  readonly savepoint: (conn: Connection, name: string) => Effect.Effect<void, SqlError>
  readonly releaseSavepoint: (conn: Connection, name: string) => Effect.Effect<void, SqlError>
  /** Rolls back to a savepoint, which stays defined (SQL semantics). */
  readonly rollbackToSavepoint: (conn: Connection, name: string) => Effect.Effect<void, SqlError>
  /** Rolls back to a savepoint and releases it, in one round trip where the driver allows it. */
  readonly rollbackAndReleaseSavepoint: (conn: Connection, name: string) => Effect.Effect<void, SqlError>
  /** Maps a driver error (the `cause` of a `SqlError`) to a typed error tag, or `undefined` when it is unrelated. */
  readonly classify: (cause: unknown) => ClassifiedCode | undefined
  /** The server's id for the connection (PostgreSQL backend pid, MySQL connection id), read from the driver. */
  readonly connectionId: (conn: Connection) => number | undefined
  /**
   * Cancels the statement in flight on the connection, from outside it (PostgreSQL: a protocol CancelRequest on a
   * new socket; MySQL: `KILL QUERY` from a new connection), without needing a pool slot. Succeeds with whether a
   * statement was in flight.
   */
  readonly cancel: (conn: Connection) => Effect.Effect<boolean>
  /** Whether `cancel` can stop a running statement (SQLite runs statements synchronously: nothing to cancel). */
  readonly cancellable: boolean
  /**
   * Makes sure the connection is closed instead of going back to the pool, or, where it cannot be replaced
   * (SQLite's one connection), that no transaction is left open on it.
   */
  readonly destroy: (conn: Connection) => Effect.Effect<void>
  /**
   * Closes the connection's socket at once, failing the statement in flight (a timer calls it when COMMIT does
   * not answer); `undefined` where statements run in process (SQLite).
   */
  readonly abandon: ((conn: Connection) => void) | undefined
  /**
   * The connection the statements of a transaction run on: one that cancels an interrupted statement on the
   * server without a pool slot and returns once it has settled, and that records in `fate` a failure after which
   * the server rolled the whole transaction back, before it sends anything else.
   */
  readonly statements: (conn: Connection, fate: Fate) => Connection
  /**
   * Whether any failed statement aborts the innermost savepoint (or the transaction) until it is rolled back
   * (PostgreSQL: later statements fail with 25P02), rather than the statement alone.
   */
  readonly errorAbortsBlock: boolean
  /**
   * The size of the client's connection pool, read from its configuration (the driver's default when it sets
   * none; SQLite: its one connection), or `undefined` when the client does not tell.
   */
  readonly poolSize: (sql: SqlClient.SqlClient) => number | undefined
}

/**
 * MySQL and MariaDB through `@effect/sql-mysql2`.
 *
 * @since 0.1.0
 * @category dialects
 */
export const mysql: Dialect = MysqlDialect.mysql

/**
 * PostgreSQL through `@effect/sql-pg`.
 *
 * @since 0.1.0
 * @category dialects
 */
export const pg: Dialect = PgDialect.pg

/**
 * SQLite through `@effect/sql-sqlite-node`.
 *
 * @since 0.1.0
 * @category dialects
 */
export const sqlite: Dialect = SqliteDialect.sqlite

/**
 * The dialect of a `SqlClient`, from its compiler's dialect.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromClient = (sql: SqlClient.SqlClient): Effect.Effect<Dialect, UnsupportedDialect> =>
  sql.onDialectOrElse({
    pg: () => Effect.succeed(pg),
    mysql: () => Effect.succeed(mysql),
    sqlite: () => Effect.succeed(sqlite),
    mssql: () => Effect.fail(new UnsupportedDialect({ dialect: "mssql" })),
    orElse: () => Effect.fail(new UnsupportedDialect({ dialect: "unknown" }))
  })
