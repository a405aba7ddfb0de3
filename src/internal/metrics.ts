/**
 * Recording the metrics of a transaction: the tagged metrics of each (transaction name, database) pair are made
 * once and updated synchronously, so that a transaction pays a few map lookups, not a metric key per update.
 *
 * Effect's metric registry keeps every series it has seen for the life of the process (14 to 17 KB per name here),
 * so the names that get series of their own are bounded per database system, over the whole process as the registry
 * is: a manager gives a new name a series while fewer than its `maxTransactionNames` names of its database system
 * have one; past that, new names are recorded under {@link otherName}, and the first refused name is logged once per
 * database system.
 */
import * as Effect from "effect/Effect"
import type * as Fiber from "effect/Fiber"
import * as Metric from "effect/Metric"
import * as MetricKey from "effect/MetricKey"
import * as MetricLabel from "effect/MetricLabel"
import * as Runtime from "effect/Runtime"
import type { DbSystem } from "../Dialect.js"
import type { TransactionManager } from "../TransactionManager.js"
import * as TransactionMetrics from "../TransactionMetrics.js"
import type { CountField, NameReading } from "../TransactionMonitor.js"
import { keys } from "./metricKeys.js"

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
  /** The retry counters of the name, by error (made by {@link retryCounter}). */
  readonly retries: Map<string, Counter>
  /** The cumulative figures of the name, read from its metric handles (no registry scan). */
  readonly read: () => NameReading
}

/** @internal The name the transactions of names past the bound are recorded under. */
export const otherName = "other"

/** The series of one database system. */
interface Table {
  /** The recorders by name: the admitted names, and {@link otherName} once a name was refused. */
  readonly recorders: Map<string, Recorder>
  /** How many names were admitted ({@link otherName} counts only when a transaction was given that name). */
  admitted: number
  /** Whether a refused name was logged. */
  reported: boolean
}

const tables = new Map<DbSystem, Table>()

/** The extra tags of every update: none (the metrics are tagged already), and no array allocated per update. */
const none: ReadonlyArray<MetricLabel.MetricLabel> = []

/** @internal Counts of nothing, to count into. */
export const zeroCounts = (): { -readonly [K in CountField]: number } => ({
  started: 0,
  committed: 0,
  rolledBack: 0,
  failed: 0,
  deadlocks: 0,
  serializationFailures: 0,
  lockTimeouts: 0,
  timeouts: 0,
  retries: 0,
  savepoints: 0,
  hookFailures: 0,
  longRunning: 0,
  savepointBudgetExceeded: 0
})

/** The duration histogram's bucket bounds, ascending (the last is `+Inf`). */
const bounds = Float64Array.from(TransactionMetrics.durationBoundaries.values)

const bucketCount = bounds.length

/** The bucket of a duration as Effect's histogram counts it: the first bound it does not exceed. */
const bucketOf = (seconds: number): number => {
  let from = 0
  let to = bucketCount - 1
  while (from < to) {
    const mid = (from + to) >>> 1
    if (seconds <= bounds[mid]!) to = mid
    else from = mid + 1
  }
  return from
}

const make = (name: string, dbSystem: DbSystem): Recorder => {
  const labels = [MetricLabel.make("transaction", name), MetricLabel.make("db_system", dbSystem)]
  const tag = <M extends Metric.Metric<any, any, any>>(metric: string, ...extra: Array<MetricLabel.MetricLabel>): M =>
    Metric.fromMetricKey(MetricKey.taggedWithLabels(keys[metric]!, [...labels, ...extra])) as any
  const started = tag<Counter>("transactions_started_total")
  const committed = tag<Counter>("transactions_committed_total")
  const rolledBack = tag<Counter>("transactions_rolled_back_total")
  const savepoints = tag<Counter>("transaction_savepoints_total")
  const timeouts = tag<Counter>("transaction_timeouts_total")
  const longRunning = tag<Counter>("transactions_long_running_total")
  const budget = tag<Counter>("transaction_savepoint_budget_exceeded_total")
  const active = tag<Metric.Metric.Gauge<number>>("transactions_active")
  // A Map: an error's tag is the body's to choose, and may be "constructor".
  const byError = new Map<string, readonly [Counter, "deadlocks" | "serializationFailures" | "lockTimeouts"]>([
    ["DeadlockDetected", [tag("transaction_deadlocks_total"), "deadlocks"]],
    ["SerializationFailure", [tag("transaction_serialization_failures_total"), "serializationFailures"]],
    ["LockTimeout", [tag("transaction_lock_timeouts_total"), "lockTimeouts"]]
  ])
  const failed = new Map<string, readonly [Counter, count: number]>()
  const hookFailures = new Map<string, Counter>()
  const durations = new Map<Outcome, Metric.Metric.Histogram<number>>()
  const retries = new Map<string, Counter>()
  let running = 0
  // What `read` returns is kept here beside the metrics rather than read back from them: a metric's state is a new
  // object per read (a histogram's, a new bucket array), and reading them made 60% of a monitor's snapshot (measured
  // by bench/monitor.ts: 0.51 ms for 50 names, 0.2 ms read from here). Only this recorder updates these series;
  // the retry counters, which `withRetry` updates, are read from the metrics.
  const counts: { -readonly [K in CountField]: number } = zeroCounts()
  const buckets = new Float64Array(bucketCount)
  let durationCount = 0
  let durationSum = 0
  let durationMax = 0
  return {
    retries,
    read: () => {
      let retried = 0
      for (const counter of retries.values()) retried += counter.unsafeValue(none).count
      const cumulative: Array<number> = new Array(bucketCount)
      let upTo = 0
      for (let i = 0; i < bucketCount; i++) cumulative[i] = upTo += buckets[i]!
      return {
        counts: { ...counts, retries: retried },
        failedByError: Object.fromEntries(Array.from(failed, ([error, [, n]]) => [error, n])),
        cumulative,
        durationCount,
        durationSum,
        durationMax
      }
    },
    started: () => {
      started.unsafeUpdate(1, none)
      counts.started++
      active.unsafeUpdate(++running, none)
    },
    savepoint: () => {
      savepoints.unsafeUpdate(1, none)
      counts.savepoints++
    },
    timeout: () => {
      timeouts.unsafeUpdate(1, none)
      counts.timeouts++
    },
    longRunning: () => {
      longRunning.unsafeUpdate(1, none)
      counts.longRunning++
    },
    savepointBudgetExceeded: () => {
      budget.unsafeUpdate(1, none)
      counts.savepointBudgetExceeded++
    },
    hookFailed: (hook) => {
      let counter = hookFailures.get(hook)
      if (counter === undefined) {
        counter = tag<Counter>("transaction_hook_failures_total", MetricLabel.make("hook", hook))
        hookFailures.set(hook, counter)
      }
      counter.unsafeUpdate(1, none)
      counts.hookFailures++
    },
    ended: (outcome, error, seconds) => {
      active.unsafeUpdate(--running, none)
      if (outcome === "committed") {
        committed.unsafeUpdate(1, none)
        counts.committed++
      } else if (outcome === "rolled_back") {
        rolledBack.unsafeUpdate(1, none)
        counts.rolledBack++
      }
      if (error !== undefined) {
        const [counter, n] = failed.get(error) ??
          [tag<Counter>("transactions_failed_total", MetricLabel.make("error", error)), 0]
        failed.set(error, [counter, n + 1])
        counter.unsafeUpdate(1, none)
        counts.failed++
        const specific = byError.get(error)
        if (specific !== undefined) {
          specific[0].unsafeUpdate(1, none)
          counts[specific[1]]++
        }
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
      buckets[bucketOf(seconds)]!++
      durationCount++
      durationSum += seconds
      if (seconds > durationMax) durationMax = seconds
    }
  }
}

/**
 * @internal
 * The recorder of a transaction name on the manager's database, made on first use while the manager's
 * `maxTransactionNames` allows; past it, the recorder of {@link otherName}. The first refused name is logged
 * (once per database system) with the caller's fiber, when given.
 */
export const recorder = (
  name: string,
  manager: Pick<TransactionManager, "dialect" | "maxTransactionNames">,
  fiber?: Fiber.RuntimeFiber<unknown, unknown> | undefined
): Recorder => {
  // Nested maps rather than a joined key: a lookup then hashes no new string.
  const dbSystem = manager.dialect.dbSystem
  let table = tables.get(dbSystem)
  if (table === undefined) {
    table = { recorders: new Map(), admitted: 0, reported: false }
    tables.set(dbSystem, table)
  }
  const found = table.recorders.get(name)
  if (found !== undefined) return found
  if (table.admitted < manager.maxTransactionNames) {
    const made = make(name, dbSystem)
    table.recorders.set(name, made)
    table.admitted++
    return made
  }
  return refuse(table, name, dbSystem, manager.maxTransactionNames, fiber)
}

const refuse = (
  table: Table,
  name: string,
  dbSystem: DbSystem,
  max: number,
  fiber: Fiber.RuntimeFiber<unknown, unknown> | undefined
): Recorder => {
  let other = table.recorders.get(otherName)
  if (other === undefined) {
    other = make(otherName, dbSystem)
    table.recorders.set(otherName, other)
  }
  if (!table.reported && fiber !== undefined) {
    table.reported = true
    // A plain function on the path of every transaction: the warning runs once, with the caller's runtime (its
    // loggers, level and annotations); a logger that throws changes nothing here.
    const runtime = Runtime.make({
      context: fiber.currentContext,
      fiberRefs: fiber.getFiberRefs(),
      runtimeFlags: Runtime.defaultRuntimeFlags
    })
    Runtime.runSyncExit(
      runtime,
      Effect.logWarning(
        `effect-sql-tx: more than ${max} transaction names on ${dbSystem} (maxTransactionNames): "${name}" and ` +
          `further new names are recorded under "${otherName}" in the metrics`
      ).pipe(Effect.annotateLogs({ maxTransactionNames: max, transaction: name, db_system: dbSystem }))
    )
  }
  return other
}

/**
 * @internal
 * The cumulative figures of every name with series of its own (and of {@link otherName}) on a database system,
 * read from the recorders' metric handles: what the monitor reads, without a scan of Effect's whole registry.
 */
export const readAll = (dbSystem: DbSystem): Map<string, NameReading> => {
  const out = new Map<string, NameReading>()
  const table = tables.get(dbSystem)
  if (table !== undefined) { for (const [name, recorder] of table.recorders) out.set(name, recorder.read()) }
  return out
}

/**
 * @internal
 * The counter of `withRetry`'s retries after an error: the metric tagged `error`, and `db_system` and
 * `transaction` (the name, or {@link otherName} past the bound) where known. With both known it is made once and
 * kept by the name's recorder, whose reading then includes it.
 */
export const retryCounter = (name: string | undefined, dbSystem: DbSystem | undefined, error: string): Counter => {
  const series = name === undefined ? undefined : seriesName(name, dbSystem)
  const recorder = series === undefined || dbSystem === undefined
    ? undefined
    : tables.get(dbSystem)?.recorders.get(series)
  let counter = recorder?.retries.get(error)
  if (counter === undefined) {
    counter = TransactionMetrics.retries.pipe(
      Metric.tagged("error", error),
      dbSystem === undefined ? (m) => m : Metric.tagged("db_system", dbSystem),
      series === undefined ? (m) => m : Metric.tagged("transaction", series)
    )
    recorder?.retries.set(error, counter)
  }
  return counter
}

/**
 * @internal
 * The `transaction` tag of a name's metrics: the name when it has series of its own on the database (on any, when
 * `undefined`), {@link otherName} otherwise. Made for metrics updated outside a recorder (retries).
 */
export const seriesName = (name: string, dbSystem: DbSystem | undefined): string => {
  for (const [system, table] of tables) {
    if ((dbSystem === undefined || system === dbSystem) && table.recorders.has(name)) return name
  }
  return otherName
}
