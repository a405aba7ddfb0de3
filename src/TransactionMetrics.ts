/**
 * The metrics of effect-sql-tx, built with Effect's `Metric` API (so that any Effect metrics exporter sees them),
 * and their snapshot with derived figures. The Prometheus endpoint has an entry point of its own,
 * `effect-sql-tx/Prometheus` (it needs OpenTelemetry and `@effect/platform`; this module needs only `effect`).
 *
 * Every metric is tagged `transaction` (the transaction's name) and `db_system` (`postgresql`, `mysql`,
 * `sqlite`); `transactions_failed_total` and `transaction_retries_total` also `error`, the duration histogram
 * `outcome`, `transaction_hook_failures_total` `hook`. At most the manager's `maxTransactionNames` names (default
 * 200) get series of their own per database system; the transactions of later names are recorded under
 * `transaction` = `"other"`.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricKey from "effect/MetricKey"
import * as MetricKeyType from "effect/MetricKeyType"
import * as MetricState from "effect/MetricState"
import { keys } from "./internal/metricKeys.js"
import * as Histogram from "./internal/monitor/histogram.js"
import type { CountField } from "./TransactionMonitor.js"

const counter = (name: string, description: string): Metric.Metric.Counter<number> => {
  const key = MetricKey.counter(name, { description, incremental: true })
  keys[name] = key
  return Metric.fromMetricKey(key)
}

/**
 * `transactions_started_total`: outermost transactions begun.
 *
 * @since 0.1.0
 * @category metrics
 */
export const started = counter("transactions_started_total", "Outermost transactions begun")

/**
 * `transactions_committed_total`: transactions whose COMMIT succeeded.
 *
 * @since 0.1.0
 * @category metrics
 */
export const committed = counter("transactions_committed_total", "Transactions committed")

/**
 * `transactions_rolled_back_total`: transactions that ended rolled back (failures, `setRollbackOnly`, refused
 * COMMITs).
 *
 * @since 0.1.0
 * @category metrics
 */
export const rolledBack = counter("transactions_rolled_back_total", "Transactions rolled back")

/**
 * `transactions_failed_total`: transactions whose result is a failure, tagged `error` (the error's tag, `defect`
 * or `interrupted`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const failed = counter("transactions_failed_total", "Transactions that failed, by error")

/**
 * `transaction_deadlocks_total`: transactions that ended with `DeadlockDetected`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const deadlocks = counter("transaction_deadlocks_total", "Transactions ended by a deadlock")

/**
 * `transaction_serialization_failures_total`: transactions that ended with `SerializationFailure`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const serializationFailures = counter(
  "transaction_serialization_failures_total",
  "Transactions ended by a serialization failure"
)

/**
 * `transaction_lock_timeouts_total`: transactions that ended with `LockTimeout`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const lockTimeouts = counter("transaction_lock_timeouts_total", "Transactions ended by a lock timeout")

/**
 * `transaction_timeouts_total`: blocks (outermost or nested) stopped by their `timeout`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const timeouts = counter("transaction_timeouts_total", "Transactions and blocks stopped by their timeout")

/**
 * `transaction_retries_total`: transactions re-run by `withRetry`, tagged `error` (the error that caused the
 * retry) and `db_system` where a `TransactionManager` is in context.
 *
 * @since 0.1.0
 * @category metrics
 */
export const retries = counter("transaction_retries_total", "Transactions re-run by withRetry after a retryable error")

/**
 * `transaction_savepoints_total`: savepoints created (nested blocks and manual savepoints).
 *
 * @since 0.1.0
 * @category metrics
 */
export const savepoints = counter("transaction_savepoints_total", "Savepoints created")

/**
 * `transaction_hook_failures_total`: hooks that failed or died after the outcome was decided (`afterCommit`,
 * `beforeRollback`, `afterRollback`), tagged `hook`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const hookFailures = counter(
  "transaction_hook_failures_total",
  "Transaction hooks that failed or died; they never change a transaction's outcome"
)

/**
 * `transactions_long_running_total`: transactions that ran longer than the manager's `longRunningThreshold`
 * (each counted once).
 *
 * @since 0.1.0
 * @category metrics
 */
export const longRunning = counter("transactions_long_running_total", "Transactions older than the threshold")

/**
 * `transaction_savepoint_budget_exceeded_total`: PostgreSQL transactions that created more savepoints than the
 * backend's subtransaction cache holds (64), past which the whole server slows down (each counted once).
 *
 * @since 0.1.0
 * @category metrics
 */
export const savepointBudgetExceeded = counter(
  "transaction_savepoint_budget_exceeded_total",
  "Transactions with more savepoints than PostgreSQL's per-backend subtransaction cache"
)

/**
 * The boundaries of the duration histogram, in seconds: 0.5 ms doubling up to about 33 s (then +Inf).
 *
 * @since 0.1.0
 * @category metrics
 */
export const durationBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 0.0005,
  factor: 2,
  count: 18
})

/**
 * `transaction_duration_seconds`: from BEGIN to the end of COMMIT or ROLLBACK, tagged `outcome` (`committed`,
 * `rolled_back`, `unknown`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const duration: Metric.Metric.Histogram<number> = Metric.fromMetricKey(
  keys["transaction_duration_seconds"] = MetricKey.histogram(
    "transaction_duration_seconds",
    durationBoundaries,
    "Transaction duration from BEGIN to the end of COMMIT or ROLLBACK"
  )
)

/**
 * `transactions_active`: outermost transactions running now.
 *
 * @since 0.1.0
 * @category metrics
 */
export const active: Metric.Metric.Gauge<number> = Metric.fromMetricKey(
  keys["transactions_active"] = MetricKey.gauge("transactions_active", { description: "Transactions running now" })
)

/**
 * The figures of one transaction name (or of all of them) in a {@link Snapshot}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Figures {
  readonly started: number
  readonly committed: number
  readonly rolledBack: number
  readonly failed: number
  readonly failedByError: Readonly<Record<string, number>>
  readonly deadlocks: number
  readonly serializationFailures: number
  readonly lockTimeouts: number
  readonly timeouts: number
  readonly retries: number
  readonly savepoints: number
  readonly hookFailures: number
  readonly longRunning: number
  readonly savepointBudgetExceeded: number
  readonly active: number
  /** Committed / ended (committed + rolled back), 0 when none ended. */
  readonly successRate: number
  /** Failed / ended, 0 when none ended. */
  readonly failureRate: number
  /**
   * Durations, in seconds; percentiles are interpolated within the histogram bucket they fall in and never exceed
   * the largest duration observed.
   */
  readonly duration: {
    readonly count: number
    readonly average: number
    readonly p50: number
    readonly p95: number
    readonly p99: number
    readonly max: number
  }
}

/**
 * The metrics now: overall and per transaction name.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly takenAt: Date
  readonly overall: Figures
  readonly byName: Readonly<Record<string, Figures>>
}

interface Accumulator {
  counts: Record<string, number>
  failedByError: Record<string, number>
  active: number
  buckets: Map<number, number>
  durationCount: number
  durationSum: number
  durationMax: number
}

const emptyAccumulator = (): Accumulator => ({
  counts: {},
  failedByError: {},
  active: 0,
  buckets: new Map(),
  durationCount: 0,
  durationSum: 0,
  durationMax: 0
})

/** @internal The counters, by metric name, and the field of the figures each one fills. */
export const countersByName: Readonly<Record<string, CountField>> = {
  transactions_started_total: "started",
  transactions_committed_total: "committed",
  transactions_rolled_back_total: "rolledBack",
  transactions_failed_total: "failed",
  transaction_deadlocks_total: "deadlocks",
  transaction_serialization_failures_total: "serializationFailures",
  transaction_lock_timeouts_total: "lockTimeouts",
  transaction_timeouts_total: "timeouts",
  transaction_retries_total: "retries",
  transaction_savepoints_total: "savepoints",
  transaction_hook_failures_total: "hookFailures",
  transactions_long_running_total: "longRunning",
  transaction_savepoint_budget_exceeded_total: "savepointBudgetExceeded"
}

const percentile = (accumulator: Accumulator, p: number): number => {
  const sorted = [...accumulator.buckets].sort(([a], [b]) => a - b)
  return Histogram.percentile(
    sorted.map(([bound]) => bound),
    sorted.map(([, cumulative]) => cumulative),
    accumulator.durationCount,
    accumulator.durationMax,
    p
  )
}

const figures = (accumulator: Accumulator): Figures => {
  const count = (key: keyof Figures) => accumulator.counts[key] ?? 0
  const ended = count("committed") + count("rolledBack")
  return {
    started: count("started"),
    committed: count("committed"),
    rolledBack: count("rolledBack"),
    failed: count("failed"),
    failedByError: accumulator.failedByError,
    deadlocks: count("deadlocks"),
    serializationFailures: count("serializationFailures"),
    lockTimeouts: count("lockTimeouts"),
    timeouts: count("timeouts"),
    retries: count("retries"),
    savepoints: count("savepoints"),
    hookFailures: count("hookFailures"),
    longRunning: count("longRunning"),
    savepointBudgetExceeded: count("savepointBudgetExceeded"),
    active: accumulator.active,
    successRate: ended === 0 ? 0 : count("committed") / ended,
    failureRate: ended === 0 ? 0 : count("failed") / ended,
    duration: {
      count: accumulator.durationCount,
      average: accumulator.durationCount === 0 ? 0 : accumulator.durationSum / accumulator.durationCount,
      p50: percentile(accumulator, 0.5),
      p95: percentile(accumulator, 0.95),
      p99: percentile(accumulator, 0.99),
      max: accumulator.durationMax
    }
  }
}

/**
 * Reads the metrics of effect-sql-tx from Effect's metric registry, overall and per transaction name, with the
 * derived figures: success and failure rates, average and p50/p95/p99 durations.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { TransactionMetrics } from "effect-sql-tx"
 *
 * const report = Effect.gen(function*() {
 *   const { overall, byName } = yield* TransactionMetrics.snapshot
 *   yield* Effect.log(`${overall.committed} committed, ${overall.failed} failed, p99 ${overall.duration.p99} s`)
 *   const checkout = byName["checkout"]
 *   if (checkout !== undefined) yield* Effect.log(`checkout: ${checkout.failureRate * 100} % failed`)
 * })
 * ```
 *
 * @since 0.1.0
 * @category getters
 */
export const snapshot: Effect.Effect<Snapshot> = Effect.map(Metric.snapshot, (pairs) => {
  const overall = emptyAccumulator()
  const byName = new Map<string, Accumulator>()
  for (const pair of pairs) {
    const key = pair.metricKey
    const tags = new Map(key.tags.map((tag) => [tag.key, tag.value]))
    const name = tags.get("transaction")
    const targets = name === undefined
      ? [overall]
      : [overall, byName.get(name) ?? byName.set(name, emptyAccumulator()).get(name)!]
    const state = pair.metricState
    const field = countersByName[key.name]
    if (field !== undefined && MetricState.isCounterState(state)) {
      for (const target of targets) {
        target.counts[field] = (target.counts[field] ?? 0) + Number(state.count)
        if (field === "failed") {
          const error = tags.get("error") ?? "unknown"
          target.failedByError[error] = (target.failedByError[error] ?? 0) + Number(state.count)
        }
      }
    } else if (key.name === "transactions_active" && MetricState.isGaugeState(state)) {
      for (const target of targets) target.active += Number(state.value)
    } else if (
      key.name === "transaction_duration_seconds" && MetricKeyType.isHistogramKey(key.keyType) &&
      MetricState.isHistogramState(state)
    ) {
      for (const target of targets) {
        for (const [bound, cumulative] of state.buckets) {
          target.buckets.set(bound, (target.buckets.get(bound) ?? 0) + cumulative)
        }
        target.durationCount += state.count
        target.durationSum += state.sum
        if (state.count > 0) target.durationMax = Math.max(target.durationMax, state.max)
      }
    }
  }
  return {
    takenAt: new Date(),
    overall: figures(overall),
    byName: Object.fromEntries([...byName].map(([name, accumulator]) => [name, figures(accumulator)]))
  }
})
