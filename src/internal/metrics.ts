/**
 * Recording the metrics of a transaction: the tagged metrics of each (transaction name, database) pair are made
 * once and updated synchronously, so that a transaction pays a few map lookups, not a metric key per update.
 */
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import type { DbSystem } from "../Dialect.js"
import * as TransactionMetrics from "../TransactionMetrics.js"

/** @internal How a transaction ended, as the duration histogram's `outcome` tag says it. */
export type Outcome = "committed" | "rolled_back" | "unknown"

type Counter = Metric.Metric.Counter<number>

/** @internal The metrics of one transaction name on one database. */
export interface Recorder {
  readonly started: () => void
  readonly savepoint: () => void
  readonly timeout: () => void
  readonly longRunning: () => void
  readonly savepointBudgetExceeded: () => void
  readonly hookFailed: (hook: string) => void
  /** `error`: the tag of the failure the transaction returned, `undefined` when it succeeded. */
  readonly ended: (outcome: Outcome, error: string | undefined, seconds: number) => void
}

const recorders = new Map<DbSystem, Map<string, Recorder>>()

/** The extra tags of every update: none (the metrics are tagged already), and no array allocated per update. */
const none: ReadonlyArray<MetricLabel.MetricLabel> = []

const make = (name: string, dbSystem: DbSystem): Recorder => {
  const labels = [MetricLabel.make("transaction", name), MetricLabel.make("db_system", dbSystem)]
  const tag = <M extends Metric.Metric<any, any, any>>(metric: string, ...extra: Array<MetricLabel.MetricLabel>): M =>
    Metric.fromMetricKey(MetricKey.taggedWithLabels(TransactionMetrics.keys[metric]!, [...labels, ...extra])) as any
  const started = tag<Counter>("transactions_started_total")
  const committed = tag<Counter>("transactions_committed_total")
  const rolledBack = tag<Counter>("transactions_rolled_back_total")
  const savepoints = tag<Counter>("transaction_savepoints_total")
  const timeouts = tag<Counter>("transaction_timeouts_total")
  const longRunning = tag<Counter>("transactions_long_running_total")
  const budget = tag<Counter>("transaction_savepoint_budget_exceeded_total")
  const active = tag<Metric.Metric.Gauge<number>>("transactions_active")
  const byError: Record<string, Counter | undefined> = {
    DeadlockDetected: tag("transaction_deadlocks_total"),
    SerializationFailure: tag("transaction_serialization_failures_total"),
    LockTimeout: tag("transaction_lock_timeouts_total")
  }
  const failed = new Map<string, Counter>()
  const hookFailures = new Map<string, Counter>()
  const durations = new Map<Outcome, Metric.Metric.Histogram<number>>()
  let running = 0
  return {
    started: () => {
      started.unsafeUpdate(1, none)
      active.unsafeUpdate(++running, none)
    },
    savepoint: () => savepoints.unsafeUpdate(1, none),
    timeout: () => timeouts.unsafeUpdate(1, none),
    longRunning: () => longRunning.unsafeUpdate(1, none),
    savepointBudgetExceeded: () => budget.unsafeUpdate(1, none),
    hookFailed: (hook) => {
      let counter = hookFailures.get(hook)
      if (counter === undefined) {
        counter = tag<Counter>("transaction_hook_failures_total", MetricLabel.make("hook", hook))
        hookFailures.set(hook, counter)
      }
      counter.unsafeUpdate(1, none)
    },
    ended: (outcome, error, seconds) => {
      active.unsafeUpdate(--running, none)
      if (outcome === "committed") committed.unsafeUpdate(1, none)
      else if (outcome === "rolled_back") rolledBack.unsafeUpdate(1, none)
      if (error !== undefined) {
        let counter = failed.get(error)
        if (counter === undefined) {
          counter = tag<Counter>("transactions_failed_total", MetricLabel.make("error", error))
          failed.set(error, counter)
        }
        counter.unsafeUpdate(1, none)
        byError[error]?.unsafeUpdate(1, none)
      }
      let histogram = durations.get(outcome)
      if (histogram === undefined) {
        histogram = tag<Metric.Metric.Histogram<number>>(
          "transaction_duration_seconds",
          MetricLabel.make("outcome", outcome)
        )
        durations.set(outcome, histogram)
      }
      histogram.unsafeUpdate(seconds, none)
    }
  }
}

/** @internal The recorder of a transaction name on a database, made on first use. */
export const recorder = (name: string, dbSystem: DbSystem): Recorder => {
  // Nested maps rather than a joined key: a lookup then hashes no new string.
  let byName = recorders.get(dbSystem)
  if (byName === undefined) {
    byName = new Map()
    recorders.set(dbSystem, byName)
  }
  let found = byName.get(name)
  if (found === undefined) {
    found = make(name, dbSystem)
    byName.set(name, found)
  }
  return found
}
