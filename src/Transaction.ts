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
import * as Hooks from "./internal/hooks.js"
import * as internal from "./internal/lifecycle.js"
import { registerHook } from "./internal/state.js"
import type { IsolationLevel } from "./IsolationLevel.js"
import type { TransactionClosed, TransactionError } from "./TransactionError.js"
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
  /** The attempt of the enclosing `withRetry` (1 for the first run, or without `withRetry`). */
  readonly attempt: number
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
 * Runs an effect in a transaction of its own, on another connection, even inside a running transaction (Spring's
 * REQUIRES_NEW): its commit survives a rollback of the enclosing one, for audit rows that must stay. The wait for
 * its connection is bounded by the manager's `acquireTimeout`, or 5 seconds: on a pool whose connections the
 * enclosing transactions hold, it fails with `ConnectionUnavailable` instead of waiting forever.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { Transaction } from "effect-sql-tx"
 *
 * const audit = (what: string) =>
 *   Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO audit (what) VALUES (${what})`).pipe(
 *     Transaction.independent({ name: "audit" })
 *   )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const independent: {
  /**
   * Data-last: `effect.pipe(Transaction.independent(options))`.
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
   * Data-first: `Transaction.independent(effect, options)`.
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
  <A, E, R>(self: Effect.Effect<A, E, R>, options?: TransactionOptions) => internal.independent(self, options)
)

/**
 * The innermost running transaction or block, if any.
 *
 * @since 0.1.0
 * @category getters
 */
export const current: Effect.Effect<Option.Option<TransactionInfo>> = Effect.map(
  Effect.serviceOption(Transaction),
  Option.map(internal.infoOf)
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
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { Transaction } from "effect-sql-tx"
 *
 * // A dry run: the statements run and their rows are returned, then everything is rolled back.
 * const preview = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* Transaction.setRollbackOnly
 *   return yield* sql`UPDATE prices SET amount = amount * 1.1 RETURNING id, amount`
 * }).pipe(Transaction.atomic({ name: "price-preview" }))
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const setRollbackOnly: Effect.Effect<void, never, Transaction> = Effect.flatMap(
  Transaction,
  (tx) => tx.setRollbackOnly
)

const register = (kind: Hooks.HookKind) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(
    Transaction,
    (tx) =>
      Effect.contextWithEffect((context: Context.Context<R>) => registerHook(tx, Hooks.capture(kind, effect, context)))
  )

/**
 * A hook's requirements may not include `Transaction` where it runs outside the transaction.
 *
 * @since 0.1.0
 * @category models
 */
export type OutsideTransaction<R> = [Extract<R, Transaction>] extends [never] ? unknown
  : { readonly "this hook runs after the transaction: it cannot use Transaction": never }

/**
 * Registers an effect to run just before the outermost COMMIT, inside the transaction (it may run SQL). Its failure
 * rolls the transaction back and is the transaction's result. Registered in a nested block, it is discarded if that
 * block rolls back to its savepoint. The effect's requirements are captured now.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { Transaction } from "effect-sql-tx"
 *
 * const program = Effect.gen(function*() {
 *   const sql = yield* SqlClient.SqlClient
 *   yield* sql`INSERT INTO orders (id) VALUES (1)`
 *   yield* Transaction.beforeCommit(sql`UPDATE stats SET orders = orders + 1`)
 * }).pipe(Transaction.atomic())
 * ```
 *
 * @since 0.1.0
 * @category hooks
 */
export const beforeCommit: <A, R>(
  effect: Effect.Effect<A, TransactionError | SqlError, R>
) => Effect.Effect<void, TransactionClosed, Transaction | R> = register("beforeCommit")

/**
 * Registers an effect to run after the outermost COMMIT succeeded, outside the transaction: its statements take a
 * pooled connection. It runs once, for the `withRetry` attempt that committed; its failures and defects are logged
 * and counted in `transaction_hook_failures_total`, and never change the outcome.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Transaction } from "effect-sql-tx"
 *
 * const program = Effect.gen(function*() {
 *   // … the order's statements …
 *   yield* Transaction.afterCommit(Effect.log("order committed: send the e-mail"))
 * }).pipe(Transaction.atomic({ name: "order" }))
 * ```
 *
 * @since 0.1.0
 * @category hooks
 */
export const afterCommit: <A, E, R>(
  effect: Effect.Effect<A, E, R> & OutsideTransaction<R>
) => Effect.Effect<void, TransactionClosed, Transaction | R> = register("afterCommit")

/**
 * Registers an effect to run just before the outermost ROLLBACK, inside the transaction. Its failures and defects
 * are logged and counted; the transaction rolls back anyway.
 *
 * @since 0.1.0
 * @category hooks
 */
export const beforeRollback: <A, E, R>(
  effect: Effect.Effect<A, E, R>
) => Effect.Effect<void, TransactionClosed, Transaction | R> = register("beforeRollback")

/**
 * Registers an effect to run after the outermost ROLLBACK, outside the transaction. Under `withRetry` it runs when
 * `withRetry` stops (once, for the last attempt), and is discarded with an attempt that is run again. Its failures
 * and defects are logged and counted.
 *
 * @since 0.1.0
 * @category hooks
 */
export const afterRollback: <A, E, R>(
  effect: Effect.Effect<A, E, R> & OutsideTransaction<R>
) => Effect.Effect<void, TransactionClosed, Transaction | R> = register("afterRollback")
