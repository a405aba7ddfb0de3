/**
 * The metrics of two-phase transactions, tagged `transaction` (the run's name) where a run is known, and
 * `coordinator`.
 */
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"

/** @internal */
export const started = Metric.counter("two_phase_transactions_started_total", {
  description: "Two-phase transactions begun",
  incremental: true
})

/** @internal */
export const committed = Metric.counter("two_phase_transactions_committed_total", {
  description: "Two-phase transactions whose commit decision was logged",
  incremental: true
})

/** @internal */
export const rolledBack = Metric.counter("two_phase_transactions_rolled_back_total", {
  description: "Two-phase transactions rolled back (every branch)",
  incremental: true
})

/** @internal Tag `error`. */
export const failed = Metric.counter("two_phase_transactions_failed_total", {
  description: "Two-phase transactions that failed, by error",
  incremental: true
})

/** @internal Tag `hook`. */
export const hookFailures = Metric.counter("two_phase_hook_failures_total", {
  description: "Two-phase hooks that failed",
  incremental: true
})

/** @internal Branches whose COMMIT PREPARED failed at first and is retried. */
export const commitRetries = Metric.counter("two_phase_commit_retries_total", {
  description: "COMMIT PREPARED attempts retried after a failure",
  incremental: true
})

/** @internal Tag `outcome`. */
export const duration = Metric.histogram(
  "two_phase_duration_seconds",
  // 1 ms to about 33 s.
  MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 16 }),
  "Duration of two-phase transactions, by outcome"
)

/** @internal Prepared transactions older than the threshold that the last recovery scan could not finish. */
export const inDoubt = Metric.gauge("transactions_in_doubt", {
  description: "Prepared transactions of this coordinator left in doubt after the last recovery scan"
})

/** @internal Tag `outcome` = committed | rolled_back. */
export const resolved = Metric.counter("transactions_in_doubt_resolved_total", {
  description: "In-doubt prepared transactions finished by the recovery scan, by outcome",
  incremental: true
})
