/**
 * Transactions as scoped resources: `atomic` runs an effect inside a transaction on one reserved connection, where
 * plain `sql` statements use that connection. Success commits; a failure, a defect or an interruption rolls back.
 * Nested blocks are savepoints.
 *
 * @since 0.1.0
 */
import type { SqlError } from "@effect/sql/SqlError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { dual } from "effect/Function"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/lifecycle.js"
import type { IsolationLevel } from "./IsolationLevel.js"
import type { TransactionError } from "./TransactionError.js"
import type { TransactionManager } from "./TransactionManager.js"

/**
 * The options of a transaction or a nested block. Invalid values fail with `InvalidTransactionOptions`; options a
 * savepoint cannot apply fail with `TransactionOptionsConflict`.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionOptions {
  /** A label for metrics, logs, spans and the dashboard; keep the set of names small. Default `"transaction"`. */
  readonly name?: string | undefined
  /** The isolation level; the database's default when not given. */
  readonly isolation?: IsolationLevel | undefined
  /** A read-only transaction: writes fail with `ReadOnlyViolation`. */
  readonly readOnly?: boolean | undefined
  /** PostgreSQL `SERIALIZABLE READ ONLY DEFERRABLE`; refused elsewhere and without those two modes. */
  readonly deferrable?: boolean | undefined
  /** A bound on the body (not the COMMIT); when it expires the block fails with `TransactionTimeout`. */
  readonly timeout?: Duration.DurationInput | undefined
  /** A bound on each lock wait inside the transaction. */
  readonly lockTimeout?: Duration.DurationInput | undefined
}

/**
 * The options in effect for a transaction or block, after defaults and validation.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResolvedTransactionOptions {
  readonly name: string
  /** `undefined`: the database's default level. */
  readonly isolation: IsolationLevel | undefined
  readonly readOnly: boolean
  readonly deferrable: boolean
  readonly timeout: Duration.Duration | undefined
  readonly lockTimeout: Duration.Duration | undefined
}

/**
 * What is known of a running transaction or block.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionInfo {
  /** Unique within the manager; a nested block's id is its parent's id, a dot and a number. */
  readonly id: string
  readonly name: string
  /** 0 for the outermost transaction, 1 for a block nested in it, and so on. */
  readonly depth: number
  readonly options: ResolvedTransactionOptions
  readonly startedAt: Date
}

/**
 * A savepoint made with {@link savepoint}: a token for {@link rollbackTo} and {@link release}, valid in the block
 * that made it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Savepoint {
  readonly _tag: "Savepoint"
  readonly name: string
  /** The id of the block that made it. */
  readonly transactionId: string
}

/**
 * The innermost running transaction or block, with its operations. Code that needs a transaction says so by
 * requiring this service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Transaction extends TransactionInfo {
  /** See {@link savepoint}. */
  readonly savepoint: (name?: string) => Effect.Effect<Savepoint, TransactionError | SqlError>
  /** See {@link rollbackTo}. */
  readonly rollbackTo: (savepoint: Savepoint) => Effect.Effect<void, TransactionError | SqlError>
  /** See {@link release}. */
  readonly release: (savepoint: Savepoint) => Effect.Effect<void, TransactionError | SqlError>
  /** See {@link setRollbackOnly}. */
  readonly setRollbackOnly: Effect.Effect<void>
}

/**
 * The tag of the innermost running transaction or block.
 *
 * @since 0.1.0
 * @category tags
 */
export const Transaction: Context.Tag<Transaction, Transaction> = internal.TransactionTag

/**
 * Begins a transaction whose end is the end of the current scope: closing the scope with success commits (or
 * releases the savepoint), with a failure, a defect or an interruption rolls back. Until then, plain `sql`
 * statements of the fiber run on the transaction's connection. Inside a running transaction it makes a savepoint.
 *
 * A scope finalizer cannot fail, so a failed COMMIT surfaces here as a defect holding the typed error; use
 * {@link atomic} to receive it as a typed failure.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { Transaction } from "effect-sql-tx"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   const tx = yield* Transaction.begin({ isolation: "repeatable read" })
 *   yield* sql`INSERT INTO audit (what) VALUES ('begin')`
 *   const sp = yield* tx.savepoint()
 *   yield* tx.rollbackTo(sp)
 * }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const begin = (
  options?: TransactionOptions
): Effect.Effect<Transaction, TransactionError | SqlError, Scope.Scope | TransactionManager> => internal.begin(options)

/**
 * Runs an effect inside a transaction (or, inside a running one, a savepoint). It commits when the effect
 * succeeds and rolls back when it fails, dies or is interrupted; errors of its statements and of COMMIT reach the
 * caller classified (`DeadlockDetected`, `SerializationFailure`…), never as defects.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { Transaction } from "effect-sql-tx"
 *
 * const transfer = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql`UPDATE accounts SET balance = balance - 10 WHERE id = 1`
 *   yield* sql`UPDATE accounts SET balance = balance + 10 WHERE id = 2`
 * }).pipe(Transaction.atomic({ name: "transfer", isolation: "serializable" }))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const atomic: {
  /**
   * Data-last: `effect.pipe(Transaction.atomic(options))`.
   *
   * @since 0.1.0
   * @category combinators
   */
  (
    options?: TransactionOptions
  ): <A, E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<A, E | TransactionError | SqlError, Exclude<R, Transaction> | TransactionManager>
  /**
   * Data-first: `Transaction.atomic(effect, options)`.
   *
   * @since 0.1.0
   * @category combinators
   */
  <A, E, R>(
    self: Effect.Effect<A, E, R>,
    options?: TransactionOptions
  ): Effect.Effect<A, E | TransactionError | SqlError, Exclude<R, Transaction> | TransactionManager>
} = dual(
  (args) => Effect.isEffect(args[0]),
  <A, E, R>(self: Effect.Effect<A, E, R>, options?: TransactionOptions) => internal.atomic(self, options)
)

/**
 * The innermost running transaction or block, if any.
 *
 * @since 0.1.0
 * @category getters
 */
export const current: Effect.Effect<Option.Option<TransactionInfo>> = Effect.map(
  Effect.serviceOption(Transaction),
  Option.map(({ depth, id, name, options, startedAt }): TransactionInfo => ({ id, name, depth, options, startedAt }))
)

/**
 * Makes a savepoint in the current block. `name` must be a plain identifier not starting with `effect_sql`, and
 * not in use; a name is generated when none is given. Invalid names fail with `SavepointError` before anything
 * is sent to the server.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Transaction } from "effect-sql-tx"
 *
 * const program = Effect.gen(function*() {
 *   const before = yield* Transaction.savepoint("before_import")
 *   // … work that may be undone …
 *   yield* Transaction.rollbackTo(before)
 *   yield* Transaction.release(before)
 * }).pipe(Transaction.atomic())
 * ```
 *
 * @since 0.1.0
 * @category savepoints
 */
export const savepoint = (name?: string): Effect.Effect<Savepoint, TransactionError | SqlError, Transaction> =>
  Effect.flatMap(Transaction, (tx) => tx.savepoint(name))

/**
 * Rolls back to a savepoint of the current block; it stays defined, the savepoints made after it are gone. An
 * unknown or released savepoint, or one of another block, fails with `SavepointError`.
 *
 * @since 0.1.0
 * @category savepoints
 */
export const rollbackTo = (savepoint: Savepoint): Effect.Effect<void, TransactionError | SqlError, Transaction> =>
  Effect.flatMap(Transaction, (tx) => tx.rollbackTo(savepoint))

/**
 * Releases a savepoint of the current block (and those made after it), keeping their work. An unknown or
 * released savepoint, or one of another block, fails with `SavepointError`.
 *
 * @since 0.1.0
 * @category savepoints
 */
export const release = (savepoint: Savepoint): Effect.Effect<void, TransactionError | SqlError, Transaction> =>
  Effect.flatMap(Transaction, (tx) => tx.release(savepoint))

/**
 * Marks the current block to roll back when it ends, even if its effect succeeds; the effect's value is still
 * returned. In a nested block, only that block's savepoint is rolled back.
 *
 * @since 0.1.0
 * @category combinators
 */
export const setRollbackOnly: Effect.Effect<void, never, Transaction> = Effect.flatMap(
  Transaction,
  (tx) => tx.setRollbackOnly
)
