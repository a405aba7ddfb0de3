/**
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
