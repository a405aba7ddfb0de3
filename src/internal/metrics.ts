/**
 * Recording the metrics of a transaction: the tagged metrics of each (transaction name, database) pair are made
 * once and updated synchronously, so that a transaction pays a few map lookups, not a metric key per update.
 */
import * as Metric from "effect/Metric"
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

const recorders = new Map<string, Recorder>()

const make = (name: string, dbSystem: DbSystem): Recorder => {
  const tag = <M extends Metric.Metric<any, any, any>>(metric: M): M =>
    Metric.tagged(Metric.tagged(metric, "transaction", name), "db_system", dbSystem) as M
  const started = tag(TransactionMetrics.started)
  const committed = tag(TransactionMetrics.committed)
  const rolledBack = tag(TransactionMetrics.rolledBack)
  const savepoints = tag(TransactionMetrics.savepoints)
  const timeouts = tag(TransactionMetrics.timeouts)
  const longRunning = tag(TransactionMetrics.longRunning)
  const budget = tag(TransactionMetrics.savepointBudgetExceeded)
  const active = tag(TransactionMetrics.active)
  const byError: Record<string, Counter | undefined> = {
    DeadlockDetected: tag(TransactionMetrics.deadlocks),
    SerializationFailure: tag(TransactionMetrics.serializationFailures),
    LockTimeout: tag(TransactionMetrics.lockTimeouts)
  }
  const failed = new Map<string, Counter>()
  const hookFailures = new Map<string, Counter>()
  const durations = new Map<Outcome, Metric.Metric.Histogram<number>>()
  let running = 0
  return {
    started: () => {
      started.unsafeUpdate(1, [])
      active.unsafeUpdate(++running, [])
    },
    savepoint: () => savepoints.unsafeUpdate(1, []),
    timeout: () => timeouts.unsafeUpdate(1, []),
    longRunning: () => longRunning.unsafeUpdate(1, []),
    savepointBudgetExceeded: () => budget.unsafeUpdate(1, []),
    hookFailed: (hook) => {
      let counter = hookFailures.get(hook)
      if (counter === undefined) {
        counter = Metric.tagged(tag(TransactionMetrics.hookFailures), "hook", hook)
        hookFailures.set(hook, counter)
      }
      counter.unsafeUpdate(1, [])
    },
    ended: (outcome, error, seconds) => {
      active.unsafeUpdate(--running, [])
      if (outcome === "committed") committed.unsafeUpdate(1, [])
      else if (outcome === "rolled_back") rolledBack.unsafeUpdate(1, [])
      if (error !== undefined) {
        let counter = failed.get(error)
        if (counter === undefined) {
          counter = Metric.tagged(tag(TransactionMetrics.failed), "error", error)
          failed.set(error, counter)
        }
        counter.unsafeUpdate(1, [])
        byError[error]?.unsafeUpdate(1, [])
      }
      let histogram = durations.get(outcome)
      if (histogram === undefined) {
        histogram = Metric.tagged(tag(TransactionMetrics.duration), "outcome", outcome)
        durations.set(outcome, histogram)
      }
      histogram.unsafeUpdate(seconds, [])
    }
  }
}

/** @internal The recorder of a transaction name on a database, made on first use. */
export const recorder = (name: string, dbSystem: DbSystem): Recorder => {
  const key = `${dbSystem}\u0000${name}`
  let found = recorders.get(key)
  if (found === undefined) {
    found = make(name, dbSystem)
    recorders.set(key, found)
  }
  return found
}
