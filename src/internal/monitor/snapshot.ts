/**
 * Readings of the metrics (cumulative, as Effect's registry keeps them) and the snapshots made of two consecutive
 * readings: the counts of the interval, the totals, rates per second, and the durations of the interval.
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
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

/** @internal */
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
 * The metrics of one database system (series tagged with its `db_system`) from Effect's metric registry, per
 * transaction name, with the manager's active transactions.
 */
export const readMetrics = (
  dbSystem: string,
  active: Effect.Effect<ReadonlyArray<ActiveTransaction>>
): Effect.Effect<MonitorReading> =>
  Effect.zipWith(Metric.snapshot, active, (pairs, transactions) => {
    const names = new Map<string, MutableNameReading>()
    for (const pair of pairs) {
      const key = pair.metricKey
      const metric = key.name
      const field = TransactionMetrics.countersByName[metric]
      if (field === undefined && metric !== "transaction_duration_seconds") continue
      let name: string | undefined
      let system: string | undefined
      let error: string | undefined
      for (const tag of key.tags) {
        if (tag.key === "transaction") name = tag.value
        else if (tag.key === "db_system") system = tag.value
        else if (tag.key === "error") error = tag.value
      }
      if (name === undefined || system !== dbSystem) continue
      let reading = names.get(name)
      if (reading === undefined) names.set(name, reading = emptyName())
      const state = pair.metricState
      if (field !== undefined && MetricState.isCounterState(state)) {
        const count = Number(state.count)
        reading.counts[field] += count
        if (field === "failed") {
          reading.failedByError[error ?? "unknown"] = (reading.failedByError[error ?? "unknown"] ?? 0) + count
        }
      } else if (MetricState.isHistogramState(state)) {
        let i = 0
        for (const [, upTo] of state.buckets) reading.cumulative[i++]! += upTo
        reading.durationCount += state.count
        reading.durationSum += state.sum
        if (state.count > 0 && state.max > reading.durationMax) reading.durationMax = state.max
      }
    }
    return { names, active: transactions }
  })

const subtract = (now: Counts, before: Counts | undefined): { -readonly [K in CountField]: number } => {
  const out = zeroCounts()
  for (const field of countFields) out[field] = now[field] - (before?.[field] ?? 0)
  return out
}

const durationFigures = (
  before: NameReading | undefined,
  now: NameReading
): DurationFigures => {
  const count = now.durationCount - (before?.durationCount ?? 0)
  const buckets = now.cumulative.map((upTo, i) =>
    upTo - (i === 0 ? 0 : now.cumulative[i - 1]!) -
    (before === undefined ? 0 : before.cumulative[i]! - (i === 0 ? 0 : before.cumulative[i - 1]!))
  )
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
  if (seconds > 0) { for (const field of countFields) perSecond[field] = interval[field] / seconds }
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

const sumReadings = (readings: Iterable<NameReading>): NameReading => {
  const total = emptyName()
  for (const reading of readings) {
    for (const field of countFields) total.counts[field] += reading.counts[field]
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
      previous.counts.started === reading.counts.started && previous.durationCount === reading.durationCount &&
      countFields.every((field) => previous.counts[field] === reading.counts[field])
    ) continue
    byName[name] = figures(previous, reading, context.seconds, activeHere?.count ?? 0, activeHere?.oldest ?? 0)
  }
  for (const [name, activeHere] of activeByName) {
    if (byName[name] === undefined) {
      byName[name] = figures(undefined, emptyName(), context.seconds, activeHere.count, activeHere.oldest)
    }
  }
  const overall = figures(
    before === undefined ? undefined : sumReadings(before.names.values()),
    sumReadings(now.names.values()),
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
