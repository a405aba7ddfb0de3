/**
 * Readings of the metrics (cumulative, as Effect's registry keeps them) and the snapshots made of two consecutive
 * readings: the counts of the interval, the totals, rates per second, and the durations of the interval.
 */
import * as Effect from "effect/Effect"
import type { DbSystem } from "../../Dialect.js"
import type { ActiveTransaction } from "../../TransactionManager.js"
import * as TransactionMetrics from "../../TransactionMetrics.js"
import type {
  ActiveView,
  CountField,
  Counts,
  DurationFigures,
  MonitorFigures,
  MonitorReading,
  MonitorSnapshot,
  NameReading
} from "../../TransactionMonitor.js"
import * as Metrics from "../metrics.js"
import { zeroCounts } from "../metrics.js"
import { intervalMax, percentile } from "./histogram.js"

/** @internal The count fields, in the order reports list them. */
export const countFields: ReadonlyArray<CountField> = [
  "started",
  "committed",
  "rolledBack",
  "failed",
  "deadlocks",
  "serializationFailures",
  "lockTimeouts",
  "timeouts",
  "retries",
  "savepoints",
  "hookFailures",
  "longRunning",
  "savepointBudgetExceeded"
]

/** @internal The upper bounds of the duration histogram's buckets (seconds), `Infinity` last. */
export const bounds: ReadonlyArray<number> = [...TransactionMetrics.durationBoundaries.values]

/**
 * @internal
 * Adds `from` to `into`, field by field: keyed access by a variable name (`counts[field]`) is several times slower in
 * these loops. (No `sign *` factor: a product is a double to V8, and a field once given a double keeps its numbers
 * in boxes, 200 bytes more per figures object of the ring.)
 */
export const addCounts = (into: { -readonly [K in CountField]: number }, from: Counts): void => {
  into.started += from.started
  into.committed += from.committed
  into.rolledBack += from.rolledBack
  into.failed += from.failed
  into.deadlocks += from.deadlocks
  into.serializationFailures += from.serializationFailures
  into.lockTimeouts += from.lockTimeouts
  into.timeouts += from.timeouts
  into.retries += from.retries
  into.savepoints += from.savepoints
  into.hookFailures += from.hookFailures
  into.longRunning += from.longRunning
  into.savepointBudgetExceeded += from.savepointBudgetExceeded
}

/** @internal Subtracts `from` from `into`, field by field. */
export const subtractCounts = (into: { -readonly [K in CountField]: number }, from: Counts): void => {
  into.started -= from.started
  into.committed -= from.committed
  into.rolledBack -= from.rolledBack
  into.failed -= from.failed
  into.deadlocks -= from.deadlocks
  into.serializationFailures -= from.serializationFailures
  into.lockTimeouts -= from.lockTimeouts
  into.timeouts -= from.timeouts
  into.retries -= from.retries
  into.savepoints -= from.savepoints
  into.hookFailures -= from.hookFailures
  into.longRunning -= from.longRunning
  into.savepointBudgetExceeded -= from.savepointBudgetExceeded
}

const sameCounts = (a: Counts, b: Counts): boolean =>
  a.started === b.started && a.committed === b.committed && a.rolledBack === b.rolledBack && a.failed === b.failed &&
  a.deadlocks === b.deadlocks && a.serializationFailures === b.serializationFailures &&
  a.lockTimeouts === b.lockTimeouts && a.timeouts === b.timeouts && a.retries === b.retries &&
  a.savepoints === b.savepoints && a.hookFailures === b.hookFailures && a.longRunning === b.longRunning &&
  a.savepointBudgetExceeded === b.savepointBudgetExceeded

interface MutableNameReading {
  counts: { -readonly [K in CountField]: number }
  failedByError: Record<string, number>
  cumulative: Array<number>
  durationCount: number
  durationSum: number
  durationMax: number
}

const emptyName = (): MutableNameReading => ({
  counts: zeroCounts(),
  failedByError: {},
  cumulative: bounds.map(() => 0),
  durationCount: 0,
  durationSum: 0,
  durationMax: 0
})

/**
 * @internal
 * The metrics of one database system, per transaction name, read from the library's own metric handles (the
 * series that Effect's registry and the Prometheus scrape show, without a scan of the whole registry), with the
 * manager's active transactions.
 */
export const readMetrics = (
  dbSystem: DbSystem,
  active: Effect.Effect<ReadonlyArray<ActiveTransaction>>
): Effect.Effect<MonitorReading> =>
  Effect.map(active, (transactions) => ({ names: Metrics.readAll(dbSystem), active: transactions }))

const subtract = (now: Counts, before: Counts | undefined): { -readonly [K in CountField]: number } => {
  const out = zeroCounts()
  addCounts(out, now)
  if (before !== undefined) subtractCounts(out, before)
  return out
}

const durationFigures = (
  before: NameReading | undefined,
  now: NameReading
): DurationFigures => {
  const count = now.durationCount - (before?.durationCount ?? 0)
  // A copy to overwrite: an array grown by push keeps about twice the room it needs (a ring holds 18,000 of them).
  const buckets = now.cumulative.slice()
  for (let i = 0; i < buckets.length; i++) {
    buckets[i] = now.cumulative[i]! - (i === 0 ? 0 : now.cumulative[i - 1]!) -
      (before === undefined ? 0 : before.cumulative[i]! - (i === 0 ? 0 : before.cumulative[i - 1]!))
  }
  if (count <= 0) return { count: 0, average: 0, p50: 0, p95: 0, p99: 0, max: 0, buckets }
  const max = intervalMax(bounds, before?.cumulative, now.cumulative, before?.durationMax ?? 0, now.durationMax)
  return summarize(buckets, count, now.durationSum - (before?.durationSum ?? 0), max)
}

/** @internal Percentiles of per-bucket (not cumulative) counts. */
export const summarize = (
  buckets: ReadonlyArray<number>,
  count: number,
  sum: number,
  max: number
): DurationFigures => {
  if (count <= 0) return { count: 0, average: 0, p50: 0, p95: 0, p99: 0, max: 0, buckets }
  const cumulative: Array<number> = []
  let running = 0
  for (const n of buckets) cumulative.push(running += n)
  return {
    count,
    average: sum / count,
    p50: percentile(bounds, cumulative, count, max, 0.5),
    p95: percentile(bounds, cumulative, count, max, 0.95),
    p99: percentile(bounds, cumulative, count, max, 0.99),
    max,
    buckets
  }
}

/** @internal Success and failure rates of the transactions that ended. */
export const rates = (counts: Counts): { readonly successRate: number; readonly failureRate: number } => {
  const ended = counts.committed + counts.rolledBack
  return ended === 0
    ? { successRate: 0, failureRate: 0 }
    : { successRate: counts.committed / ended, failureRate: counts.failed / ended }
}

const figures = (
  before: NameReading | undefined,
  now: NameReading,
  seconds: number,
  active: number,
  oldestAge: number
): MonitorFigures => {
  const interval = subtract(now.counts, before?.counts)
  const perSecond = zeroCounts()
  if (seconds > 0) {
    perSecond.started = interval.started / seconds
    perSecond.committed = interval.committed / seconds
    perSecond.rolledBack = interval.rolledBack / seconds
    perSecond.failed = interval.failed / seconds
    perSecond.deadlocks = interval.deadlocks / seconds
    perSecond.serializationFailures = interval.serializationFailures / seconds
    perSecond.lockTimeouts = interval.lockTimeouts / seconds
    perSecond.timeouts = interval.timeouts / seconds
    perSecond.retries = interval.retries / seconds
    perSecond.savepoints = interval.savepoints / seconds
    perSecond.hookFailures = interval.hookFailures / seconds
    perSecond.longRunning = interval.longRunning / seconds
    perSecond.savepointBudgetExceeded = interval.savepointBudgetExceeded / seconds
  }
  const failedByError: Record<string, number> = {}
  for (const error in now.failedByError) {
    const n = now.failedByError[error]! - (before?.failedByError[error] ?? 0)
    if (n > 0) failedByError[error] = n
  }
  return {
    interval,
    totals: now.counts,
    perSecond,
    failedByError,
    ...rates(interval),
    duration: durationFigures(before, now),
    active,
    oldestAge
  }
}

/** The sum of a reading's names, kept for the next snapshot (when that reading is the one before). */
const sums = new WeakMap<MonitorReading, NameReading>()
const sumOf = (reading: MonitorReading): NameReading => {
  let found = sums.get(reading)
  if (found === undefined) sums.set(reading, found = sumReadings(reading.names.values()))
  return found
}

const sumReadings = (readings: Iterable<NameReading>): NameReading => {
  const total = emptyName()
  for (const reading of readings) {
    addCounts(total.counts, reading.counts)
    for (const error in reading.failedByError) {
      total.failedByError[error] = (total.failedByError[error] ?? 0) + reading.failedByError[error]!
    }
    for (let i = 0; i < bounds.length; i++) total.cumulative[i]! += reading.cumulative[i]!
    total.durationCount += reading.durationCount
    total.durationSum += reading.durationSum
    if (reading.durationMax > total.durationMax) total.durationMax = reading.durationMax
  }
  return total
}

/** The most active transactions a snapshot lists (oldest first); the count and the oldest age cover all. */
const maxListed = 100

/**
 * @internal
 * The snapshot of the interval between two readings. Names with nothing new in the interval and nothing active
 * are left out of `byName` (they stay in the overall figures).
 */
export const diff = (
  before: MonitorReading | undefined,
  now: MonitorReading,
  context: {
    readonly takenAt: number
    readonly seconds: number
    readonly instance: string
    readonly dbSystem: string
    readonly longRunningMillis: number
    readonly poolSize: number | undefined
  }
): MonitorSnapshot => {
  const activeByName = new Map<string, { count: number; oldest: number }>()
  const views: Array<ActiveView> = []
  let longRunning = 0
  let oldest = 0
  for (const entry of now.active) {
    const age = Math.max(0, (context.takenAt - entry.startedAt.getTime()) / 1000)
    const isLong = age * 1000 >= context.longRunningMillis
    if (isLong) longRunning++
    if (age > oldest) oldest = age
    const seen = activeByName.get(entry.name)
    if (seen === undefined) activeByName.set(entry.name, { count: 1, oldest: age })
    else {
      seen.count++
      if (age > seen.oldest) seen.oldest = age
    }
    if (views.length < maxListed) {
      views.push({
        id: entry.id,
        name: entry.name,
        depth: entry.depth,
        attempt: entry.attempt,
        startedAt: entry.startedAt.getTime(),
        age,
        connectionId: entry.connectionId,
        longRunning: isLong
      })
    }
  }
  const byName: Record<string, MonitorFigures> = {}
  for (const [name, reading] of now.names) {
    const previous = before?.names.get(name)
    const activeHere = activeByName.get(name)
    if (
      activeHere === undefined && previous !== undefined &&
      previous.durationCount === reading.durationCount && sameCounts(previous.counts, reading.counts)
    ) continue
    byName[name] = figures(previous, reading, context.seconds, activeHere?.count ?? 0, activeHere?.oldest ?? 0)
  }
  for (const [name, activeHere] of activeByName) {
    if (byName[name] === undefined) {
      byName[name] = figures(undefined, emptyName(), context.seconds, activeHere.count, activeHere.oldest)
    }
  }
  const overall = figures(
    before === undefined ? undefined : sumOf(before),
    sumOf(now),
    context.seconds,
    now.active.length,
    oldest
  )
  return {
    takenAt: context.takenAt,
    seconds: context.seconds,
    instance: context.instance,
    dbSystem: context.dbSystem,
    overall,
    byName,
    active: views,
    longRunning,
    pool: context.poolSize === undefined ? undefined : {
      size: context.poolSize,
      inTransactions: now.active.length,
      utilization: now.active.length / context.poolSize
    }
  }
}
