/**
 * The service behind every transaction: the `SqlClient`, its dialect, the default options, and the ids of
 * transactions. `TransactionLayer` is `TransactionManager.layer()` with the defaults.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as Dialect from "./Dialect.js"
import * as Metrics from "./internal/metrics.js"
import * as Options from "./internal/options.js"
import { ActiveRegistry, copyOf } from "./internal/registry.js"
import type { TransactionInfo, TransactionOptions } from "./Transaction.js"
import type { InvalidTransactionOptions, TransactionError, UnsupportedDialect } from "./TransactionError.js"

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
 *
 * - `beforeCommit` runs inside the transaction; its failure rolls it back and is the transaction's result. Like
 *   `Transaction.beforeCommit`, it may fail only with a `TransactionError` or a `SqlError`, which the error type of
 *   `Transaction.atomic` already includes: the manager is one service for every transaction, so an error of its
 *   own could not appear in their types. Map other errors to a defect, or catch them.
 * - `afterCommit`, `beforeRollback` and `afterRollback` may fail with anything: their failures and defects are
 *   logged and counted in `transaction_hook_failures_total`, and never change the outcome.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { TransactionManager } from "effect-sql-tx"
 *
 * const TransactionsLive = Layer.unwrapEffect(Effect.map(SqlClient.SqlClient, (sql) =>
 *   TransactionManager.layer({
 *     hooks: {
 *       // Runs on the transaction's connection; a SqlError rolls the transaction back.
 *       beforeCommit: (info) => sql`INSERT INTO tx_log (name) VALUES (${info.name})`,
 *       afterCommit: (info) => Effect.log(`committed ${info.name}`)
 *     }
 *   })))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionHooks {
  readonly beforeCommit?: ((info: HookInfo) => Effect.Effect<unknown, TransactionError | SqlError>) | undefined
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
  /** A transaction running longer than this is logged once (name, age, connection id) and counted. Default 5 s. */
  readonly longRunningThreshold?: Duration.DurationInput | undefined
  /**
   * PostgreSQL: past 64 savepoints in one transaction (the backend's subtransaction cache), fail with
   * `SavepointError` instead of logging once and counting. Default `false`.
   */
  readonly failOnSavepointBudget?: boolean | undefined
  /**
   * Make the transaction's name visible to the database's own monitoring, in the BEGIN round trip: PostgreSQL
   * `SET LOCAL application_name = 'effect-sql-tx:<name>'` (in `pg_stat_activity`), MySQL/MariaDB a comment
   * `/* effect-sql-tx:<name> *\/` on START TRANSACTION. Default `false`.
   */
  readonly serverLabel?: boolean | undefined
  /**
   * Run every transaction's body in a fiber of its own, so that an interruption also stops a body that is not
   * inside a statement (it sleeps, or waits for something else) before the ROLLBACK; its guard refuses statements
   * from then on. (An interrupted statement is cancelled on the server either way, over a connection of its own.)
   * Costs a fiber per transaction. Default `false`.
   */
  readonly superviseInterruption?: boolean | undefined
  /**
   * A COMMIT that has not answered within this bound is abandoned: the connection is destroyed (which ends the
   * transaction on the server unless it had already committed) and the transaction fails with
   * `CommitOutcomeUnknown`. Measured with real timers. Default 30 seconds.
   */
  readonly commitTimeout?: Duration.DurationInput | undefined
  /**
   * A hook (global or registered) that runs longer than this is interrupted and treated as a failing hook: a
   * `beforeCommit` hook then rolls the transaction back; the others are logged and counted. Default 30 seconds.
   */
  readonly hookTimeout?: Duration.DurationInput | undefined
  /**
   * How many distinct transaction names get metric series of their own, per database system. Effect's metric
   * registry keeps every series for the life of the process (14 to 17 KB per name), so that a name built from an id
   * (`order-1234`) would grow memory without bound: past the bound, new names are recorded under the name
   * `"other"`, and a warning naming the bound and the first refused name is logged once per database system.
   * Names that already have series keep them. Like the registry, the count is process-wide: it includes the names of
   * every manager of the same database system, and a manager admits a new name while fewer than its own bound have
   * series. Only metrics are affected: logs, spans and the registry of active transactions keep the real name.
   * A whole number ≥ 1; default 200 (as Micrometer's `maximumAllowableTags`).
   *
   * @example
   * ```ts
   * import { TransactionManager } from "effect-sql-tx"
   *
   * // Name transactions after what they do ("checkout"), not after what they touch ("checkout-1234").
   * const TransactionsLive = TransactionManager.layer({ maxTransactionNames: 50 })
   * ```
   */
  readonly maxTransactionNames?: number | undefined
  /**
   * Replaces the dialect found from the client, for example with one that instruments or alters its statements
   * (the fault-injection tests do). Receives the detected dialect.
   */
  readonly dialect?: ((detected: Dialect.Dialect) => Dialect.Dialect) | undefined
}

/**
 * An outermost transaction running now, as the manager's registry knows it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ActiveTransaction {
  readonly id: string
  readonly name: string
  /** The depth of the innermost block running now (0: no savepoint). */
  depth: number
  readonly startedAt: Date
  readonly attempt: number
  /** The server's id of its connection: PostgreSQL backend pid, MySQL connection id (none on SQLite). */
  readonly connectionId: number | undefined
  /** Whether it was already reported as long-running. */
  flagged: boolean
}

/**
 * The manager service: the client and its dialect, the resolved configuration, and the outermost transactions
 * running now.
 *
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
  readonly longRunningThreshold: Duration.Duration
  readonly failOnSavepointBudget: boolean
  readonly serverLabel: boolean
  readonly superviseInterruption: boolean
  /** The bound on a COMMIT's answer. */
  readonly commitTimeout: Duration.Duration
  /** The bound on each hook. */
  readonly hookTimeout: Duration.Duration
  /** How many transaction names of its database system get metric series of their own; later ones: `"other"`. */
  readonly maxTransactionNames: number
  /** The clock transactions are timed with. */
  readonly clock: Clock.Clock
  /**
   * @internal
   * The outermost transactions running now, in the order they were registered: live entries, the library's own (read
   * them through `active`).
   */
  readonly registry: ActiveRegistry
  /** A copy of the registry: the outermost transactions running now, oldest first. */
  readonly active: Effect.Effect<ReadonlyArray<ActiveTransaction>>
  /** @internal A new transaction id, unique within this manager. */
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
    const detected = yield* Dialect.fromClient(sql)
    const dialect = config.dialect === undefined ? detected : config.dialect(detected)
    const defaults = yield* Options.validate(config.defaults ?? {})
    const acquireTimeout = yield* Options.positiveDuration("acquireTimeout", config.acquireTimeout)
    const longRunningThreshold =
      (yield* Options.positiveDuration("longRunningThreshold", config.longRunningThreshold)) ?? Duration.seconds(5)
    const commitTimeout = (yield* Options.positiveDuration("commitTimeout", config.commitTimeout)) ??
      Duration.seconds(30)
    const hookTimeout = (yield* Options.positiveDuration("hookTimeout", config.hookTimeout)) ?? Duration.seconds(30)
    const maxTransactionNames = yield* Options.positiveInteger("maxTransactionNames", config.maxTransactionNames, 200)
    const clock = yield* Effect.clock
    const registry = new ActiveRegistry()
    let counter = 0
    return TransactionManager.of({
      sql,
      dialect,
      defaults,
      acquireTimeout,
      hooks: config.hooks,
      longRunningThreshold,
      failOnSavepointBudget: config.failOnSavepointBudget === true,
      serverLabel: config.serverLabel === true,
      superviseInterruption: config.superviseInterruption === true,
      commitTimeout,
      hookTimeout,
      maxTransactionNames,
      clock,
      registry,
      active: Effect.sync(() =>
        registry.entries().map(copyOf).sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime())
      ),
      nextId: () => String(++counter)
    })
  })

/**
 * Reports the transactions older than the manager's `longRunningThreshold` that were not reported yet: each is
 * logged once (name, age, connection id) and counted in `transactions_long_running_total`. The manager's layer
 * runs it periodically; it returns those it reported.
 *
 * @since 0.1.0
 * @category observability
 */
export const checkLongRunning = (manager: TransactionManager): Effect.Effect<ReadonlyArray<ActiveTransaction>> =>
  Effect.suspend(() => {
    const now = manager.clock.unsafeCurrentTimeMillis()
    const threshold = Duration.toMillis(manager.longRunningThreshold)
    const found = manager.registry.entries().filter((entry) =>
      !entry.flagged && now - entry.startedAt.getTime() >= threshold
    )
    return Effect.as(
      Effect.forEach(found, (entry) => {
        entry.flagged = true
        Metrics.recorder(entry.name, manager).longRunning()
        return Effect.logWarning("effect-sql-tx: long-running transaction").pipe(
          Effect.annotateLogs({
            transaction: entry.name,
            id: entry.id,
            age: Duration.format(Duration.millis(now - entry.startedAt.getTime())),
            connection: entry.connectionId ?? "n/a"
          })
        )
      }, { discard: true }),
      found.map(copyOf)
    )
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
  Layer.scoped(TransactionManager, Effect.tap(make(config), watchLongRunning))

/** Checks for long-running transactions a few times per threshold (at least once a second), while the layer lives. */
const watchLongRunning = (manager: TransactionManager): Effect.Effect<void, never, Scope.Scope> => {
  const every = Duration.min(
    Duration.divide(manager.longRunningThreshold, 4).pipe(Option.getOrElse(() => Duration.seconds(1))),
    Duration.seconds(1)
  )
  return Effect.asVoid(Effect.forkScoped(Effect.repeat(checkLongRunning(manager), Schedule.spaced(every))))
}

/**
 * The manager as a layer whose configuration is read with `Config`.
 *
 * @example
 * ```ts
 * import { Config } from "effect"
 * import { TransactionManager } from "effect-sql-tx"
 *
 * // TX_TIMEOUT=2s and TX_LONG_RUNNING=30s in the environment; the defaults otherwise.
 * const TransactionsLive = TransactionManager.layerConfig({
 *   defaults: { timeout: Config.duration("TX_TIMEOUT").pipe(Config.withDefault("5 seconds")) },
 *   longRunningThreshold: Config.duration("TX_LONG_RUNNING").pipe(Config.withDefault("1 minute"))
 * })
 * ```
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
> => Layer.scoped(TransactionManager, Effect.tap(Effect.flatMap(Config.unwrap(config), make), watchLongRunning))
