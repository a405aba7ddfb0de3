/**
 * The metrics of effect-sql-tx, built with Effect's `Metric` API, so that any Effect metrics exporter (OpenTelemetry,
 * Prometheus) sees them.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"

/**
 * `transaction_retries_total`: transactions re-run by `withRetry`, tagged `error` (the error that caused the retry)
 * and `db_system` where a `TransactionManager` is in context.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retries: Metric.Metric.Counter<number> = Metric.counter("transaction_retries_total", {
  description: "Transactions re-run by withRetry after a retryable error",
  incremental: true
})

/**
 * `transaction_hook_failures_total`: hooks that failed or died after the outcome was decided (`afterCommit`,
 * `beforeRollback`, `afterRollback`), tagged `hook`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const hookFailures: Metric.Metric.Counter<number> = Metric.counter("transaction_hook_failures_total", {
  description: "Transaction hooks that failed or died; they never change a transaction's outcome",
  incremental: true
})
