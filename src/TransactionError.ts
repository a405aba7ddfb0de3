/**
 * The typed errors of effect-sql-tx, the classification of driver errors into them, and which are safe to retry.
 *
 * Errors raised by statements inside `Transaction.atomic`, and by COMMIT itself, reach the caller classified:
 * a deadlock is a `DeadlockDetected`, whatever the database. `SqlError`s that are not about the transaction
 * (constraint violations, syntax errors…) pass through unchanged.
 *
 * @since 0.1.0
 */
import { type SqlError, SqlErrorTypeId } from "@effect/sql/SqlError"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Predicate from "effect/Predicate"
import type { Dialect, DialectName } from "./Dialect.js"

/**
 * The type id that every error of this module carries: errors are recognised by it (and by their `_tag`), never by
 * `instanceof`, so that two copies of the package (a linked install, a monorepo) still agree.
 *
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-sql-tx/TransactionError")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * The fields shared by errors that a database reported.
 *
 * @since 0.1.0
 * @category models
 */
export interface DatabaseErrorFields {
  /** The database that raised the error. */
  readonly dialect: DialectName
  /** The driver's code: a SQLSTATE on PostgreSQL, the errno on MySQL, the result code name on SQLite. */
  readonly code: string | undefined
  /** The original error: the `SqlError` with the driver's error as its own `cause`. */
  readonly cause: unknown
}

const describe = (what: string, fields: DatabaseErrorFields): string => {
  const cause = fields.cause as { readonly cause?: { readonly message?: unknown } } | undefined
  const detail = typeof cause?.cause?.message === "string" ? `: ${cause.cause.message}` : ""
  return `${what} (${fields.dialect}${fields.code === undefined ? "" : ` ${fields.code}`})${detail}`
}

/**
 * The database chose this transaction as a deadlock victim and rolled it back (PostgreSQL 40P01, MySQL 1213).
 * Retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class DeadlockDetected extends Data.TaggedError("DeadlockDetected")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Deadlock detected", this)
  }
}

/**
 * The database could not serialize this transaction with concurrent ones (SQLSTATE 40001). Retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class SerializationFailure extends Data.TaggedError("SerializationFailure")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Serialization failure", this)
  }
}

/**
 * A lock wait was given up (PostgreSQL 55P03, MySQL 1205 and 3572, SQLite `SQLITE_BUSY`). Retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class LockTimeout extends Data.TaggedError("LockTimeout")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Lock wait timed out", this)
  }
}

/**
 * A statement was cancelled by a server-side time limit (PostgreSQL 57014, MySQL 3024, MariaDB 1969).
 *
 * @since 0.1.0
 * @category errors
 */
export class StatementTimeout extends Data.TaggedError("StatementTimeout")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Statement cancelled by a time limit", this)
  }
}

/**
 * A write was attempted in a read-only transaction (PostgreSQL 25006, MySQL 1792, SQLite `SQLITE_READONLY`).
 *
 * @since 0.1.0
 * @category errors
 */
export class ReadOnlyViolation extends Data.TaggedError("ReadOnlyViolation")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Write in a read-only transaction", this)
  }
}

/**
 * The connection failed before COMMIT was sent (PostgreSQL 08xxx and 57P01, mysql2 connection errors). Nothing
 * was committed, so it is retryable.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionLost extends Data.TaggedError("ConnectionLost")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Connection lost", this)
  }
}

/**
 * The transaction had been aborted by an earlier error (PostgreSQL 25P02: a statement failed and the code caught
 * the error), so the database rolled it back instead of committing it, or refused to release a savepoint.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransactionAborted extends Data.TaggedError("TransactionAborted")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("Transaction aborted by an earlier error; it was rolled back", this)
  }
}

/**
 * The connection failed while COMMIT was in flight: the transaction may or may not have committed. Never retried
 * by default.
 *
 * @since 0.1.0
 * @category errors
 */
export class CommitOutcomeUnknown extends Data.TaggedError("CommitOutcomeUnknown")<DatabaseErrorFields> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return describe("The connection failed during COMMIT; the transaction may or may not have committed", this)
  }
}

/**
 * No connection could be had from the pool within the manager's `acquireTimeout`. Nothing was sent.
 *
 * @since 0.1.0
 * @category errors
 */
export class ConnectionUnavailable extends Data.TaggedError("ConnectionUnavailable")<{
  readonly dialect: DialectName
  /** The bound that expired. */
  readonly acquireTimeout: Duration.Duration
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `No connection from the ${this.dialect} pool within ${Duration.format(this.acquireTimeout)}`
  }
}

/**
 * The transaction's `timeout` expired: the work was stopped and the transaction (or the savepoint) rolled back.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransactionTimeout extends Data.TaggedError("TransactionTimeout")<{
  /** The transaction's name. */
  readonly name: string
  /** The limit that was set. */
  readonly timeout: Duration.Duration
  /** How long the body had run when it was stopped. */
  readonly elapsed: Duration.Duration
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Transaction "${this.name}" timed out after ${Duration.format(this.elapsed)} (limit ${
      Duration.format(this.timeout)
    })`
  }
}

/**
 * A hook ran longer than the manager's `hookTimeout` and was interrupted. A `beforeCommit` hook that times out
 * rolls the transaction back with this error; the other kinds are logged and counted like any failing hook.
 *
 * @since 0.1.0
 * @category errors
 */
export class HookTimeout extends Data.TaggedError("HookTimeout")<{
  /** The kind of hook. */
  readonly hook: "beforeCommit" | "afterCommit" | "beforeRollback" | "afterRollback"
  /** The transaction's name. */
  readonly name: string
  /** The limit that was set. */
  readonly timeout: Duration.Duration
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `A hook (${this.hook}) of transaction "${this.name}" ran longer than ${Duration.format(this.timeout)}`
  }
}

/**
 * A manual savepoint operation was refused: an invalid name, an unknown or already released savepoint, or a
 * savepoint of another transaction or block. Nothing was sent to the server.
 *
 * @since 0.1.0
 * @category errors
 */
export class SavepointError extends Data.TaggedError("SavepointError")<{
  /** The savepoint's name, as given. */
  readonly savepoint: string
  /** Why the operation was refused. */
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Savepoint "${this.savepoint}": ${this.reason}`
  }
}

/**
 * A statement, a hook registration or a savepoint operation reached a block that has already ended: a fiber
 * forked inside a transaction outlived it, or a captured handle or context was used later. Nothing was sent to
 * the server; the block's work was committed or rolled back as a whole before.
 *
 * @since 0.1.0
 * @category errors
 */
export class TransactionClosed extends Data.TaggedError("TransactionClosed")<{
  /** The id of the block that has ended. */
  readonly transactionId: string
  /** The transaction's name. */
  readonly name: string
  /** What was refused. */
  readonly operation: "statement" | "hook" | "savepoint"
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Transaction "${this.name}" (${this.transactionId}) has ended: a ${this.operation} can no longer use it`
  }
}

/**
 * A nested block asked for options that cannot be applied to a savepoint of its parent (another isolation level,
 * read-write inside read-only…).
 *
 * @since 0.1.0
 * @category errors
 */
export class TransactionOptionsConflict extends Data.TaggedError("TransactionOptionsConflict")<{
  /** The option in conflict. */
  readonly option: string
  /** The enclosing transaction's value. */
  readonly parent: unknown
  /** The nested block's value. */
  readonly requested: unknown
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Nested transaction option "${this.option}" = ${JSON.stringify(this.requested)} conflicts with the ` +
      `enclosing transaction's ${JSON.stringify(this.parent)}: a savepoint cannot change it`
  }
}

/**
 * A transaction option (or a manager default) is invalid, or cannot be honoured by this database.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidTransactionOptions extends Data.TaggedError("InvalidTransactionOptions")<{
  /** The option at fault. */
  readonly option: string
  /** The value given. */
  readonly value: unknown
  /** Why it was refused. */
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Invalid transaction option "${this.option}" (${String(this.value)}): ${this.reason}`
  }
}

/**
 * The `SqlClient` is of a database this library does not support (it knows PostgreSQL, MySQL/MariaDB, SQLite).
 *
 * @since 0.1.0
 * @category errors
 */
export class UnsupportedDialect extends Data.TaggedError("UnsupportedDialect")<{
  readonly dialect: string
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Unsupported SQL dialect "${this.dialect}": effect-sql-tx supports pg, mysql and sqlite`
  }
}

/**
 * The errors a database reports that `classify` recognizes.
 *
 * @since 0.1.0
 * @category models
 */
export type DatabaseError =
  | DeadlockDetected
  | SerializationFailure
  | LockTimeout
  | StatementTimeout
  | ReadOnlyViolation
  | ConnectionLost
  | TransactionAborted

/**
 * Every typed error of effect-sql-tx.
 *
 * @since 0.1.0
 * @category models
 */
export type TransactionError =
  | DatabaseError
  | CommitOutcomeUnknown
  | ConnectionUnavailable
  | TransactionTimeout
  | HookTimeout
  | SavepointError
  | TransactionOptionsConflict
  | InvalidTransactionOptions
  | TransactionClosed
  | UnsupportedDialect

/**
 * The tag of a {@link DatabaseError}: what a dialect's error table maps driver codes to.
 *
 * @since 0.1.0
 * @category models
 */
export type DatabaseErrorTag = DatabaseError["_tag"]

const constructors: { readonly [K in DatabaseErrorTag]: new(fields: DatabaseErrorFields) => DatabaseError } = {
  DeadlockDetected,
  SerializationFailure,
  LockTimeout,
  StatementTimeout,
  ReadOnlyViolation,
  ConnectionLost,
  TransactionAborted
}

/**
 * Whether `u` is one of the {@link TransactionError}s.
 *
 * @since 0.1.0
 * @category guards
 */
export const isTransactionError = (u: unknown): u is TransactionError => Predicate.hasProperty(u, TypeId)

/**
 * Whether `u` is an `SqlError` of `@effect/sql`, recognised by its type id (any copy of the package).
 *
 * @since 0.1.0
 * @category guards
 */
export const isSqlError = (u: unknown): u is SqlError =>
  Predicate.hasProperty(u, SqlErrorTypeId) && (u as { readonly _tag?: unknown })._tag === "SqlError"

/**
 * Maps a `SqlError` to the {@link DatabaseError} its driver code stands for, using the dialect's error table, or
 * returns it unchanged when the code is not about the transaction (a constraint violation, a syntax error…).
 *
 * @example
 * ```ts
 * import { SqlError } from "@effect/sql/SqlError"
 * import { Dialect, TransactionError } from "effect-sql-tx"
 * import { strictEqual } from "node:assert"
 *
 * // A deadlock as `@effect/sql-pg` reports it: the driver's error, with its SQLSTATE, is the cause.
 * const sqlError = new SqlError({ cause: { code: "40P01", message: "deadlock detected" } })
 *
 * const classified = TransactionError.classify(sqlError, Dialect.pg)
 * strictEqual(classified._tag, "DeadlockDetected")
 * strictEqual(TransactionError.isRetryable(classified), true)
 * ```
 *
 * @since 0.1.0
 * @category classification
 */
export const classify = (error: SqlError, dialect: Dialect): DatabaseError | TransactionClosed | SqlError => {
  // The connection of a block that has ended refuses statements with a `SqlError` around a `TransactionClosed`.
  if (isTransactionError(error.cause) && error.cause._tag === "TransactionClosed") return error.cause
  const found = dialect.classify(error.cause)
  if (found === undefined) return error
  return new constructors[found.tag]({ dialect: dialect.name, code: found.code, cause: error })
}

/**
 * Whether re-running the whole transaction is safe and may succeed: `DeadlockDetected`, `SerializationFailure`,
 * `LockTimeout` and `ConnectionLost` (which is only raised before COMMIT was sent). Never
 * `CommitOutcomeUnknown`, `TransactionTimeout` nor anything else.
 *
 * @since 0.1.0
 * @category classification
 */
export const isRetryable = (error: unknown): boolean =>
  isTransactionError(error) && (
    error._tag === "DeadlockDetected" ||
    error._tag === "SerializationFailure" ||
    error._tag === "LockTimeout" ||
    error._tag === "ConnectionLost"
  )
