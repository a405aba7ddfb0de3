/**
 * The alert rules: figures aggregated over a trailing window of snapshots, threshold rules, the anomaly rule, and
 * the default set.
 */
import * as Duration from "effect/Duration"
import type {
  Alert,
  AlertLevel,
  AlertRule,
  AnomalyRuleOptions,
  Condition,
  CountField,
  DefaultRuleName,
  DefaultRulesOptions,
  RuleContext,
  ThresholdRuleOptions,
  Thresholds,
  WindowFigures
} from "../../TransactionMonitor.js"
import type { MonitorSnapshot } from "../../TransactionMonitor.js"
import { zeroCounts } from "../metrics.js"
import { addCounts, bounds, rates, subtractCounts, summarize } from "./snapshot.js"

/** @internal The name under which conditions and alerts about all transactions are kept. */
export const overallName = "*"

/** @internal The levels, lowest first. */
export const levelOrder: ReadonlyArray<AlertLevel> = ["info", "warning", "error", "critical"]

interface MutableWindow {
  counts: { -readonly [K in CountField]: number }
  failedByError: Record<string, number>
  buckets: Array<number>
  durationSum: number
  seconds: number
  snapshots: number
  /** `[takenAt, max]` of the window's snapshots, by decreasing max: the first is the window's maximum. */
  maxes: Array<readonly [number, number]>
}

/** The sums of one window over one history, moved along as the history grows by a snapshot at a time. */
interface WindowState {
  latest: MonitorSnapshot
  /** The snapshots summed, oldest first. */
  readonly snapshots: Array<MonitorSnapshot>
  readonly sums: Map<string, MutableWindow>
  result: ReadonlyMap<string, WindowFigures>
}

/** Per history array (the monitor's ring) and window length; a few lengths per history are kept. */
const states = new WeakMap<ReadonlyArray<MonitorSnapshot>, Map<number, WindowState>>()
const maxStates = 16

/**
 * @internal
 * The figures of every name (and of {@link overallName}) summed over the snapshots taken within `millis` before
 * the latest one (the latest included). When `history` is the array of the previous call grown by one snapshot (the
 * monitor's ring), the sums of that call are moved along: the new snapshot added, those that left the window (or
 * the array) taken out, so that a check reads 2 snapshots per window rather than all of the window's.
 */
export const aggregate = (
  history: ReadonlyArray<MonitorSnapshot>,
  millis: number
): ReadonlyMap<string, WindowFigures> => {
  const latest = history[history.length - 1]
  if (latest === undefined) return new Map()
  let byMillis = states.get(history)
  if (byMillis === undefined) states.set(history, byMillis = new Map())
  let state = byMillis.get(millis)
  if (state !== undefined && state.latest === latest) return state.result
  const since = latest.takenAt - millis
  if (state !== undefined && history.length >= 2 && state.latest === history[history.length - 2]) {
    state.snapshots.push(latest)
    addSnapshot(state.sums, latest, 1)
    const oldestKept = history[0]!.takenAt
    while (state.snapshots.length > 1) {
      const first = state.snapshots[0]!
      if (first.takenAt > since && first.takenAt >= oldestKept) break
      state.snapshots.shift()
      addSnapshot(state.sums, first, -1)
    }
    state.latest = latest
  } else {
    let start = history.length - 1
    while (start > 0 && history[start - 1]!.takenAt > since) start--
    const snapshots = history.slice(start)
    const sums = new Map<string, MutableWindow>()
    for (const snapshot of snapshots) addSnapshot(sums, snapshot, 1)
    byMillis.delete(millis)
    if (byMillis.size >= maxStates) byMillis.delete(byMillis.keys().next().value!)
    byMillis.set(millis, state = { latest, snapshots, sums, result: new Map() })
  }
  const result = new Map<string, WindowFigures>()
  for (const [name, window] of state.sums) {
    let count = 0
    for (const n of window.buckets) count += n
    const counts = zeroCounts()
    addCounts(counts, window.counts)
    result.set(name, {
      counts,
      failedByError: { ...window.failedByError },
      ...rates(counts),
      duration: summarize(window.buckets.slice(), count, window.durationSum, window.maxes[0]?.[1] ?? 0),
      seconds: window.seconds,
      snapshots: window.snapshots
    })
  }
  return state.result = result
}

/** Adds a snapshot to the sums (`sign` 1; snapshots are added oldest first) or takes it out (-1, oldest first). */
const addSnapshot = (sums: Map<string, MutableWindow>, snapshot: MonitorSnapshot, sign: 1 | -1) => {
  add(sums, overallName, snapshot.overall, snapshot, sign)
  for (const name in snapshot.byName) add(sums, name, snapshot.byName[name]!, snapshot, sign)
}

const add = (
  sums: Map<string, MutableWindow>,
  name: string,
  figures: MonitorSnapshot["overall"],
  snapshot: MonitorSnapshot,
  sign: 1 | -1
) => {
  let window = sums.get(name)
  if (window === undefined) {
    window = {
      counts: zeroCounts(),
      failedByError: {},
      buckets: bounds.map(() => 0),
      durationSum: 0,
      seconds: 0,
      snapshots: 0,
      maxes: []
    }
    sums.set(name, window)
  }
  if (sign === 1) addCounts(window.counts, figures.interval)
  else subtractCounts(window.counts, figures.interval)
  for (const error in figures.failedByError) {
    const n = sign === 1
      ? (window.failedByError[error] ?? 0) + figures.failedByError[error]!
      : window.failedByError[error]! - figures.failedByError[error]!
    if (n === 0) delete window.failedByError[error]
    else window.failedByError[error] = n
  }
  const buckets = figures.duration.buckets
  if (sign === 1) { for (let i = 0; i < buckets.length; i++) window.buckets[i]! += buckets[i]! }
  else for (let i = 0; i < buckets.length; i++) window.buckets[i]! -= buckets[i]!
  if (sign === 1) {
    window.durationSum += figures.duration.average * figures.duration.count
    window.seconds += snapshot.seconds
  } else {
    window.durationSum -= figures.duration.average * figures.duration.count
    window.seconds -= snapshot.seconds
  }
  window.snapshots += sign
  const maxes = window.maxes
  if (sign === 1) {
    const max = figures.duration.max
    while (maxes.length > 0 && maxes[maxes.length - 1]![1] <= max) maxes.pop()
    maxes.push([snapshot.takenAt, max])
  } else {
    if (maxes.length > 0 && maxes[0]![0] === snapshot.takenAt) maxes.shift()
    if (window.snapshots === 0) sums.delete(name)
  }
}

/** @internal The highest level whose threshold `value` reaches (`above`) or falls to (`below`). */
export const levelOf = (
  thresholds: Thresholds,
  value: number,
  direction: "above" | "below" = "above"
): { readonly level: AlertLevel; readonly threshold: number } | undefined => {
  for (let i = levelOrder.length - 1; i >= 0; i--) {
    const level = levelOrder[i]!
    const threshold = thresholds[level]
    if (threshold === undefined) continue
    if (direction === "above" ? value >= threshold : value <= threshold) return { level, threshold }
  }
  return undefined
}

const formatValue = (value: number, unit: ThresholdRuleOptions["unit"]): string =>
  unit === "ratio"
    ? `${(value * 100).toFixed(1)} %`
    : unit === "seconds"
    ? `${value >= 10 ? value.toFixed(0) : value.toPrecision(3)} s`
    : unit === "perMinute"
    ? `${value.toFixed(1)}/min`
    : `${Number.isInteger(value) ? value : value.toFixed(2)}`

/** @internal */
export const thresholdRule = (options: ThresholdRuleOptions): AlertRule => {
  const windowMillis = Duration.toMillis(options.window ?? Duration.minutes(1))
  const scope = options.scope ?? "both"
  const minVolume = options.minVolume ?? 0
  const rule: AlertRule = {
    name: options.name,
    description: options.description,
    for: Duration.decode(options.for ?? Duration.seconds(30)),
    advice: options.advice,
    evaluate: (history, context) => {
      const windows = context.window(windowMillis)
      const conditions: Array<Condition> = []
      for (const [name, figures] of windows) {
        if (name === overallName ? scope === "name" : scope === "overall") continue
        if (options.volume !== undefined && options.volume(figures) < minVolume) continue
        const value = options.measure(figures, name, history, context)
        if (value === undefined || !Number.isFinite(value)) continue
        const found = levelOf(options.thresholds, value)
        if (found === undefined) continue
        conditions.push({
          transaction: name,
          level: found.level,
          value,
          threshold: found.threshold,
          message: `${options.label} ${formatValue(value, options.unit)} (${found.level} at ${
            formatValue(found.threshold, options.unit)
          })${name === overallName ? "" : ` for "${name}"`}`
        })
      }
      return conditions
    }
  }
  return rule
}

const median = (values: Array<number>): number => {
  values.sort((a, b) => a - b)
  const middle = values.length >> 1
  return values.length % 2 === 1 ? values[middle]! : (values[middle - 1]! + values[middle]!) / 2
}

/**
 * @internal
 * The anomaly rule: the latest interval's figure against the median of the `baseline` snapshots before the `for`
 * window, in units of the median absolute deviation (× 1.4826, the normal-consistent scale, floored at 10 % of
 * the median so that a perfectly flat baseline does not fire on noise).
 */
export const anomalyRule = (options: AnomalyRuleOptions = {}): AlertRule => {
  const k = options.deviations ?? 4
  const baselineLength = options.baseline ?? 60
  const minBaseline = options.minBaseline ?? 30
  const minVolume = options.minVolume ?? 10
  const forDuration = Duration.decode(options.for ?? Duration.seconds(30))
  const figures: ReadonlyArray<AnomalyFigure> = [
    { key: "p99", label: "p99 duration", direction: "above", read: (f) => f.duration.p99, unit: "seconds" },
    { key: "failureRate", label: "failure rate", direction: "above", read: (f) => f.failureRate, unit: "ratio" },
    { key: "throughput", label: "throughput", direction: "below", read: (f) => f.perSecond.committed, unit: "count" }
  ]
  const chosen = options.figures === undefined
    ? figures
    : figures.filter((figure) => options.figures!.includes(figure.key))
  return {
    name: options.name ?? "anomaly",
    description: `A figure (${
      chosen.map((f) => f.label).join(", ")
    }) more than ${k} robust deviations from its trailing baseline`,
    for: forDuration,
    advice: (alert) =>
      `${alert.message}. Nothing crossed a fixed threshold: compare with the deploys, traffic and database load of ` +
      "the same time; a lasting change becomes the new baseline after the baseline window.",
    evaluate: (history) => {
      const latest = history[history.length - 1]
      if (latest === undefined) return []
      const cutoff = latest.takenAt - Duration.toMillis(forDuration)
      let end = history.length - 1
      while (end > 0 && history[end - 1]!.takenAt > cutoff) end--
      const start = Math.max(0, end - baselineLength)
      if (end - start < minBaseline) return []
      const names = options.perName === true ? [overallName, ...Object.keys(latest.byName)] : [overallName]
      const conditions: Array<Condition> = []
      for (const name of names) {
        const read = (s: MonitorSnapshot) => name === overallName ? s.overall : s.byName[name]
        const volumes: Array<number> = []
        for (let i = start; i < end; i++) volumes.push(read(history[i]!)?.interval.started ?? 0)
        if (median(volumes) < minVolume) continue
        const current = read(latest)
        if (current === undefined) continue
        for (const figure of chosen) {
          if (figure.direction === "above" && current.interval.started < minVolume) continue
          const values: Array<number> = []
          for (let i = start; i < end; i++) {
            const f = read(history[i]!)
            values.push(f === undefined ? 0 : figure.read(f))
          }
          const center = median(values)
          const mad = median(values.map((v) => Math.abs(v - center)))
          const scale = Math.max(1.4826 * mad, 0.1 * Math.abs(center), figure.unit === "ratio" ? 0.01 : 1e-9)
          const value = figure.read(current)
          const score = (value - center) / scale
          if (figure.direction === "above" ? score <= k : score >= -k) continue
          conditions.push({
            transaction: name,
            level: Math.abs(score) > 2 * k ? "error" : "warning",
            value,
            threshold: center + (figure.direction === "above" ? k : -k) * scale,
            message: `${figure.label} ${formatValue(value, figure.unit)} against a baseline of ${
              formatValue(center, figure.unit)
            } (${Math.abs(score).toFixed(1)} deviations ${figure.direction === "above" ? "above" : "below"})${
              name === overallName ? "" : ` for "${name}"`
            }`,
            figure: figure.key
          })
        }
      }
      return conditions
    }
  }
}

interface AnomalyFigure {
  readonly key: "p99" | "failureRate" | "throughput"
  readonly label: string
  readonly direction: "above" | "below"
  readonly read: (figures: MonitorSnapshot["overall"]) => number
  readonly unit: ThresholdRuleOptions["unit"]
}

const ended = (f: WindowFigures) => f.counts.committed + f.counts.rolledBack

/** @internal The rules a monitor checks unless told otherwise, with their documented defaults. */
export const defaultRules = (options: DefaultRulesOptions = {}): ReadonlyArray<AlertRule> => {
  const made: Array<AlertRule> = []
  const define = (name: DefaultRuleName, base: Omit<ThresholdRuleOptions, "name">) => {
    const override = options[name]
    if (override === false) return
    made.push(thresholdRule({
      ...base,
      name,
      thresholds: override?.thresholds ?? base.thresholds,
      for: override?.for ?? base.for,
      window: override?.window ?? base.window,
      minVolume: override?.minVolume ?? base.minVolume
    }))
  }
  define("failure-rate", {
    description: "Share of the transactions ended in the window that failed",
    label: "failure rate",
    unit: "ratio",
    thresholds: { warning: 0.05, error: 0.1, critical: 0.25 },
    for: "1 minute",
    window: "1 minute",
    minVolume: 20,
    volume: ended,
    measure: (f) => f.failureRate,
    advice: (alert, context) => {
      const errors = Object.entries(context.window(60_000).get(alert.transaction)?.failedByError ?? {})
        .sort(([, a], [, b]) => b - a).slice(0, 3).map(([error, n]) => `${error} ×${n}`).join(", ")
      return `${alert.message}; most frequent errors: ${errors || "n/a"}. Retryable errors (deadlocks, ` +
        "serialization failures) call for withRetry; the others for a look at the failing code path."
    }
  })
  define("deadlock-rate", {
    description: "Transactions ended by a deadlock, per minute",
    label: "deadlocks",
    unit: "perMinute",
    thresholds: { warning: 1, error: 5, critical: 20 },
    for: "1 minute",
    window: "1 minute",
    measure: (f) => f.seconds === 0 ? 0 : f.counts.deadlocks * 60 / f.seconds,
    advice: (alert, context) =>
      `${alert.message}. Lock rows in one order in every transaction (e.g. by primary key: SELECT … ORDER BY id ` +
      `FOR UPDATE), keep transactions short, and retry with withRetry. Names involved: ${
        involved(context, "deadlocks")
      }.`
  })
  /** A rule on the share of the transactions begun in the last minute that ended with `field`. */
  const shareOfStarted = (
    name: DefaultRuleName,
    field: CountField,
    what: string,
    thresholds: Thresholds,
    advice: (alert: Alert, context: RuleContext) => string
  ) =>
    define(name, {
      description: `Share of the transactions begun in the window ${what}`,
      label: name.replace(/-rate$/, "s").replace(/-/g, " "),
      unit: "ratio",
      thresholds,
      for: "1 minute",
      window: "1 minute",
      minVolume: 20,
      volume: (f) => f.counts.started,
      measure: (f) => f.counts[field] / f.counts.started,
      advice
    })
  shareOfStarted(
    "serialization-failure-rate",
    "serializationFailures",
    "ended by a serialization failure",
    { warning: 0.05, error: 0.1, critical: 0.25 },
    (alert, context) =>
      `${alert.message}. Wrap the transaction in withRetry (serialization failures are meant to be retried), ` +
      `make it shorter, or use a lower isolation level where the invariant allows. Names involved: ${
        involved(context, "serializationFailures")
      }.`
  )
  shareOfStarted(
    "timeout-rate",
    "timeouts",
    "stopped by their timeout",
    { warning: 0.01, error: 0.05, critical: 0.2 },
    (alert) =>
      `${alert.message}. Look for slow statements (missing indexes, lock waits) in these transactions, or raise ` +
      "their timeout if the work is legitimately long."
  )
  shareOfStarted(
    "lock-timeout-rate",
    "lockTimeouts",
    "ended by a lock wait timeout",
    { warning: 0.01, error: 0.05, critical: 0.2 },
    (alert, context) =>
      `${alert.message}. Another transaction holds the rows too long: index the columns of the WHERE clauses ` +
      "(an unindexed UPDATE locks whole ranges), shorten the holders, and set lockTimeout so waiters fail fast " +
      `and retry. Names involved: ${involved(context, "lockTimeouts")}.`
  )
  define("retries-per-commit", {
    description: "Retries by withRetry per committed transaction in the window",
    label: "retries per commit",
    unit: "count",
    thresholds: { warning: 0.5, error: 1, critical: 3 },
    for: "1 minute",
    window: "1 minute",
    minVolume: 10,
    volume: (f) => f.counts.retries + f.counts.committed,
    measure: (f) => f.counts.retries / Math.max(1, f.counts.committed),
    advice: (alert) =>
      `${alert.message}. Each retry re-runs the whole transaction: reduce contention (shorter transactions, one ` +
      "lock order, fewer hot rows) rather than raising the retry budget."
  })
  define("p99-duration", {
    description: "99th percentile of the durations of the transactions ended in the window",
    label: "p99 duration",
    unit: "seconds",
    thresholds: { warning: 1, error: 5, critical: 15 },
    for: "1 minute",
    window: "1 minute",
    minVolume: 20,
    volume: (f) => f.duration.count,
    measure: (f) => f.duration.p99,
    advice: (alert) =>
      `${alert.message}. Keep network calls and slow work out of the transaction (afterCommit hooks), look for ` +
      "lock waits and slow statements, and set a timeout so that a stuck transaction is stopped on the server."
  })
  define("long-running", {
    description: "Age of the oldest transaction running now",
    label: "oldest running transaction",
    unit: "seconds",
    thresholds: { warning: 5, error: 30, critical: 120 },
    for: "10 seconds",
    window: "1 millis",
    measure: (_, name, history) => {
      const latest = history[history.length - 1]!
      return name === overallName ? latest.overall.oldestAge : latest.byName[name]?.oldestAge
    },
    advice: (alert, context) =>
      `${alert.message}${
        context.latest === undefined ? "" : oldestIds(context.latest, alert.transaction)
      }. A long transaction holds its locks and its snapshot (PostgreSQL's vacuum waits for it): split it, move ` +
      "slow work after the commit, and give it a timeout."
  })
  define("pool-saturation", {
    description: "Share of the connection pool held by transactions",
    label: "pool held by transactions",
    unit: "ratio",
    thresholds: { warning: 0.8, critical: 1 },
    for: "30 seconds",
    window: "1 millis",
    scope: "overall",
    measure: (_, __, history) => history[history.length - 1]!.pool?.utilization,
    advice: (alert, context) =>
      `${alert.message} (${context.latest?.pool?.inTransactions ?? "?"} of ${
        context.latest?.pool?.size ?? "?"
      } connections). Transactions wait for connections: raise the pool size towards the concurrency the ` +
      "database sustains, lower the application's concurrency, or shorten the transactions; set acquireTimeout so " +
      "that waiters fail with ConnectionUnavailable instead of queueing."
  })
  define("hook-failures", {
    description: "Hooks that failed or died in the window",
    label: "hook failures",
    unit: "count",
    thresholds: { warning: 1, error: 10 },
    for: "10 seconds",
    window: "5 minutes",
    measure: (f) => f.counts.hookFailures,
    advice: (alert) =>
      `${alert.message}. A failed afterCommit hook leaves its side effect undone although the transaction ` +
      "committed: make hooks retry on their own or enqueue the work durably (an outbox table written in the " +
      "transaction)."
  })
  define("savepoint-budget", {
    description: "PostgreSQL transactions with more savepoints than the backend's subtransaction cache (64)",
    label: "transactions past the savepoint budget",
    unit: "count",
    thresholds: { warning: 1 },
    for: "10 seconds",
    window: "5 minutes",
    measure: (f) => f.counts.savepointBudgetExceeded,
    advice: (alert) =>
      `${alert.message}. Past 64 savepoints a PostgreSQL transaction overflows its subtransaction cache, which ` +
      "slows every session on the server: use fewer nested blocks per transaction (batch the rows, or validate " +
      "before writing instead of a savepoint per row)."
  })
  if (options.anomaly !== false) made.push(anomalyRule(options.anomaly ?? {}))
  return made
}

const involved = (context: RuleContext, field: CountField): string => {
  const names = [...context.window(5 * 60_000)]
    .filter(([name, f]) => name !== overallName && f.counts[field] > 0)
    .sort(([, a], [, b]) => b.counts[field] - a.counts[field])
    .slice(0, 5)
    .map(([name, f]) => `"${name}" (${f.counts[field]})`)
  return names.length === 0 ? "n/a" : names.join(", ")
}

const oldestIds = (latest: MonitorSnapshot, transaction: string): string => {
  const listed = latest.active.filter((entry) =>
    entry.longRunning && (transaction === overallName || entry.name === transaction)
  )
    .slice(0, 3)
    .map((entry) =>
      `"${entry.name}" #${entry.id} (${entry.age.toFixed(0)} s${
        entry.connectionId === undefined ? "" : `, server connection ${entry.connectionId}`
      })`
    )
  return listed.length === 0 ? "" : `: ${listed.join(", ")}`
}
