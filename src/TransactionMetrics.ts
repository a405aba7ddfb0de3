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
