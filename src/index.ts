/**
 * Production-grade database transactions for Effect programs on top of `@effect/sql`: one namespace per module,
 * and the two names most programs need, {@link TransactionLayer} and {@link withRetry}. The Prometheus endpoint and
 * the dashboard have entry points of their own, `effect-sql-tx/Prometheus` and `effect-sql-tx/TransactionDashboard`.
 *
 * @since 0.1.0
 */
import * as RetryPolicy from "./RetryPolicy.js"
import * as TransactionManager from "./TransactionManager.js"

/**
 * Dialects: the database-specific SQL, error tables and connection handling.
 *
 * @since 0.1.0
 */
export * as Dialect from "./Dialect.js"

/**
 * The four isolation levels.
 *
 * @since 0.1.0
 */
export * as IsolationLevel from "./IsolationLevel.js"

/**
 * Retry policies and `withRetry`.
 *
 * @since 0.1.0
 */
export * as RetryPolicy from "./RetryPolicy.js"

/**
 * Transactions, nested blocks and savepoints.
 *
 * @since 0.1.0
 */
export * as Transaction from "./Transaction.js"

/**
 * Typed errors, classification and retryability.
 *
 * @since 0.1.0
 */
export * as TransactionError from "./TransactionError.js"

/**
 * The manager service and its layers.
 *
 * @since 0.1.0
 */
export * as TransactionManager from "./TransactionManager.js"

/**
 * The metrics.
 *
 * @since 0.1.0
 */
export * as TransactionMetrics from "./TransactionMetrics.js"

/**
 * The monitor: snapshots, alert rules, health, recommendations, trends, reports and persisted history.
 *
 * @since 0.1.0
 */
export * as TransactionMonitor from "./TransactionMonitor.js"

/**
 * Two-phase commit across databases: PostgreSQL prepared transactions and MySQL/MariaDB XA, with a coordinator log
 * and a recovery scan.
 *
 * @since 0.1.0
 */
export * as TwoPhaseCommit from "./TwoPhaseCommit.js"

/**
 * The manager with its defaults: `TransactionManager.layer()`. It needs a `SqlClient`.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { SqliteClient } from "@effect/sql-sqlite-node"
 * import { TransactionLayer } from "effect-sql-tx"
 *
 * // Built once, provided at the edge: the client and the manager that uses it.
 * const MainLive = TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: "app.db" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const TransactionLayer = TransactionManager.layer()

/**
 * Re-runs a whole transaction on retryable errors: `RetryPolicy.withRetry`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const withRetry = RetryPolicy.withRetry
