/**
 * The service behind every transaction: the `SqlClient`, its dialect, the default options, and the ids of
 * transactions. `TransactionLayer` is `TransactionManager.layer()` with the defaults.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Dialect from "./Dialect.js"
import * as Options from "./internal/options.js"
import type { TransactionInfo, TransactionOptions } from "./Transaction.js"
import type { InvalidTransactionOptions, UnsupportedDialect } from "./TransactionError.js"

/**
 * What global hooks receive: the transaction, how long it has run, and how it ended (`undefined` before COMMIT).
 *
 * @since 0.1.0
 * @category models
 */
export interface HookInfo extends TransactionInfo {
  readonly duration: Duration.Duration
  readonly outcome: "committed" | "rolledBack" | undefined
}

/**
 * Hooks run for every outermost transaction of the manager, before the hooks registered in the transaction.
 * `beforeCommit` runs inside the transaction and its failure rolls it back; the others are logged and counted
 * when they fail, and never change the outcome.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionHooks {
  readonly beforeCommit?: ((info: HookInfo) => Effect.Effect<unknown, unknown>) | undefined
  readonly afterCommit?: ((info: HookInfo) => Effect.Effect<unknown, unknown>) | undefined
  readonly beforeRollback?: ((info: HookInfo) => Effect.Effect<unknown, unknown>) | undefined
  readonly afterRollback?: ((info: HookInfo) => Effect.Effect<unknown, unknown>) | undefined
}

/**
 * The manager's configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionManagerConfig {
  /**
   * Options applied to every outermost transaction that does not set them itself (`name`, `isolation`,
   * `readOnly`, `deferrable`, `timeout`, `lockTimeout`). Nested blocks inherit from their parent instead.
   */
  readonly defaults?: TransactionOptions | undefined
  /**
   * A bound on the wait for a pool connection; past it, the transaction fails with `ConnectionUnavailable`, and
   * the wait can be interrupted at any time. Without it the wait is bounded by the pool's own acquire timeout
   * (`PgClient`'s `connectTimeout`; mysql2 has none) and an interruption takes effect when the connection arrives.
   * It costs a fiber per transaction.
   */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** Hooks run for every outermost transaction. */
  readonly hooks?: TransactionHooks | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface TransactionManager {
  /** The client whose connections transactions reserve. */
  readonly sql: SqlClient.SqlClient
  /** The client's database. */
  readonly dialect: Dialect.Dialect
  /** The validated default options. */
  readonly defaults: TransactionOptions
  /** The bound on the wait for a pool connection, if any. */
  readonly acquireTimeout: Duration.Duration | undefined
  /** Hooks run for every outermost transaction. */
  readonly hooks: TransactionHooks | undefined
  /** A new transaction id, unique within this manager. */
  readonly nextId: () => string
}

/**
 * @since 0.1.0
 * @category tags
 */
export const TransactionManager: Context.Tag<TransactionManager, TransactionManager> = Context.GenericTag<
  TransactionManager
>("effect-sql-tx/TransactionManager")

/**
 * Builds a manager for the `SqlClient` in context. Fails when a default option is invalid or the database is not
 * supported.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: TransactionManagerConfig = {}
): Effect.Effect<TransactionManager, InvalidTransactionOptions | UnsupportedDialect, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const dialect = yield* Dialect.fromClient(sql)
    const defaults = yield* Options.validate(config.defaults ?? {})
    const acquireTimeout = yield* Options.positiveDuration("acquireTimeout", config.acquireTimeout)
    let counter = 0
    return TransactionManager.of({
      sql,
      dialect,
      defaults,
      acquireTimeout,
      hooks: config.hooks,
      nextId: () => String(++counter)
    })
  })

/**
 * The manager as a layer, for the `SqlClient` in context.
 *
 * @example
 * ```ts
 * import { TransactionManager } from "effect-sql-tx"
 *
 * const TransactionsLive = TransactionManager.layer({
 *   defaults: { isolation: "read committed", timeout: "5 seconds" }
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: TransactionManagerConfig = {}
): Layer.Layer<TransactionManager, InvalidTransactionOptions | UnsupportedDialect, SqlClient.SqlClient> =>
  Layer.effect(TransactionManager, make(config))

/**
 * The manager as a layer whose configuration is read with `Config`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  config: Config.Config.Wrap<TransactionManagerConfig>
): Layer.Layer<
  TransactionManager,
  ConfigError.ConfigError | InvalidTransactionOptions | UnsupportedDialect,
  SqlClient.SqlClient
> => Layer.effect(TransactionManager, Effect.flatMap(Config.unwrap(config), make))
