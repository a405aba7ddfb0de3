/**
 * The monitor: a fiber scoped to its layer takes a snapshot of the transaction metrics every `interval` into a ring
 * buffer, checks alert rules against the snapshots, and keeps the alerts; from them it derives a health score,
 * recommendations, trends and reports. Optionally it keeps its history in the application's database.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { TransactionLayer, TransactionMonitor } from "effect-sql-tx"
 *
 * const MonitorLive = TransactionMonitor.layer({
 *   interval: "10 seconds",
 *   persist: TransactionMonitor.persist({ table: "tx_monitor", retention: "14 days" })
 * }).pipe(Layer.provideMerge(TransactionLayer))
 *
 * const status = Effect.gen(function*() {
 *   const health = yield* TransactionMonitor.health
 *   yield* Effect.log(`${health.status} (${health.score}/100)`)
 * })
 * ```
 *
 * @since 0.1.0
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import { make as makeMonitor } from "./internal/monitor/monitor.js"
import * as Rules from "./internal/monitor/rules.js"
import type { InvalidTransactionOptions } from "./TransactionError.js"
import type { ActiveTransaction, TransactionManager } from "./TransactionManager.js"

/**
 * The counts a snapshot keeps, one per counter of `TransactionMetrics`.
 *
 * @since 0.1.0
 * @category models
 */
export type CountField =
  | "started"
  | "committed"
  | "rolledBack"
  | "failed"
  | "deadlocks"
  | "serializationFailures"
  | "lockTimeouts"
  | "timeouts"
  | "retries"
  | "savepoints"
  | "hookFailures"
  | "longRunning"
  | "savepointBudgetExceeded"

/**
 * The counters of a snapshot or a window, one per {@link CountField}.
 *
 * @since 0.1.0
 * @category models
 */
export type Counts = { readonly [K in CountField]: number }

/**
 * Durations in seconds of the transactions that ended in an interval (or a window). Percentiles are interpolated
 * within their histogram bucket and never exceed `max`; `max` is exact when it is a new all-time maximum, otherwise
 * the upper bound of its bucket capped at the all-time maximum.
 *
 * @since 0.1.0
 * @category models
 */
export interface DurationFigures {
  readonly count: number
  readonly average: number
  readonly p50: number
  readonly p95: number
  readonly p99: number
  readonly max: number
  /** How many ended in each bucket of `TransactionMetrics.durationBoundaries` (not cumulative). */
  readonly buckets: ReadonlyArray<number>
}

/**
 * The figures of one transaction name (or of all) in a snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorFigures {
  /** What happened in the snapshot's interval. */
  readonly interval: Counts
  /** Since the process started (Effect's metrics are process-wide). */
  readonly totals: Counts
  /** The interval's counts per second. */
  readonly perSecond: Counts
  /** Failures of the interval by error tag. */
  readonly failedByError: Readonly<Record<string, number>>
  /** Committed / ended (committed + rolled back) in the interval; 0 when none ended. */
  readonly successRate: number
  /** Failed / ended in the interval; 0 when none ended. */
  readonly failureRate: number
  readonly duration: DurationFigures
  /** Transactions running at the snapshot. */
  readonly active: number
  /** The age in seconds of the oldest one running, 0 when none. */
  readonly oldestAge: number
}

/**
 * A running transaction as a snapshot lists it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ActiveView {
  readonly id: string
  readonly name: string
  readonly depth: number
  readonly attempt: number
  /** Epoch milliseconds. */
  readonly startedAt: number
  /** Seconds. */
  readonly age: number
  /** The server's id of its connection (PostgreSQL backend pid, MySQL connection id). */
  readonly connectionId: number | undefined
  /** Older than the manager's `longRunningThreshold`. */
  readonly longRunning: boolean
}

/**
 * One snapshot: the figures of the interval since the previous one, overall and per transaction name. Plain data
 * (numbers and strings), as JSON carries it.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorSnapshot {
  /** Epoch milliseconds, by the monitor's `Clock`. */
  readonly takenAt: number
  /** The length of the interval, in seconds. */
  readonly seconds: number
  readonly instance: string
  readonly dbSystem: string
  readonly overall: MonitorFigures
  /** The names with something new in the interval or running now; quiet names are left out. */
  readonly byName: Readonly<Record<string, MonitorFigures>>
  /** The running transactions, oldest first (at most 100 listed; `overall.active` counts them all). */
  readonly active: ReadonlyArray<ActiveView>
  /** How many running transactions are older than the manager's `longRunningThreshold`. */
  readonly longRunning: number
  /** The pool's size and the share of it held by transactions, when the client tells its size. */
  readonly pool: { readonly size: number; readonly inTransactions: number; readonly utilization: number } | undefined
}

/**
 * The cumulative figures of one name, as a source reads them.
 *
 * @since 0.1.0
 * @category models
 */
export interface NameReading {
  readonly counts: Counts
  readonly failedByError: Readonly<Record<string, number>>
  /** Cumulative counts per bucket of `TransactionMetrics.durationBoundaries` (the last: all of them). */
  readonly cumulative: ReadonlyArray<number>
  readonly durationCount: number
  readonly durationSum: number
  readonly durationMax: number
}

/**
 * What a source reads: cumulative figures per transaction name, and the running transactions. The monitor turns
 * two consecutive readings into a snapshot.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorReading {
  readonly names: ReadonlyMap<string, NameReading>
  readonly active: ReadonlyArray<ActiveTransaction>
}

/**
 * How serious an alert is, from the lowest: `info`, `warning`, `error`, `critical`.
 *
 * @since 0.1.0
 * @category models
 */
export type AlertLevel = "info" | "warning" | "error" | "critical"

/**
 * The levels, lowest first.
 *
 * @since 0.1.0
 * @category models
 */
export const levels: ReadonlyArray<AlertLevel> = Rules.levelOrder

/**
 * The name under which figures, conditions and alerts about all transactions are kept.
 *
 * @since 0.1.0
 * @category models
 */
export const overall: "*" = "*"

/**
 * What a rule found in one evaluation, for one transaction name (or {@link overall}).
 *
 * @since 0.1.0
 * @category models
 */
export interface Condition {
  readonly transaction: string
  readonly level: AlertLevel
  readonly value: number
  readonly threshold: number
  readonly message: string
  /** Distinguishes several conditions of one rule on one name (the anomaly rule's figures). */
  readonly figure?: string | undefined
}

/**
 * Figures summed over the snapshots of a trailing window.
 *
 * @since 0.1.0
 * @category models
 */
export interface WindowFigures {
  readonly counts: Counts
  readonly failedByError: Readonly<Record<string, number>>
  readonly successRate: number
  readonly failureRate: number
  readonly duration: DurationFigures
  /** The seconds the window's snapshots cover. */
  readonly seconds: number
  readonly snapshots: number
}

/**
 * What a rule sees besides the history.
 *
 * @since 0.1.0
 * @category models
 */
export interface RuleContext {
  /** The figures of every name (and of `"*"`) over the snapshots of the last `millis` (memoized per check). */
  readonly window: (millis: number) => ReadonlyMap<string, WindowFigures>
  readonly latest: MonitorSnapshot | undefined
  readonly longRunningThreshold: Duration.Duration
}

/**
 * An alert rule: a function of the snapshot history (oldest first, the latest last) that returns the conditions
 * holding now. A condition fires an alert once it has held for `for`.
 *
 * @since 0.1.0
 * @category models
 */
export interface AlertRule {
  readonly name: string
  readonly description: string
  readonly for: Duration.Duration
  readonly evaluate: (history: ReadonlyArray<MonitorSnapshot>, context: RuleContext) => ReadonlyArray<Condition>
  /** The advice of the recommendation an open alert of this rule yields. */
  readonly advice?: ((alert: Alert, context: RuleContext) => string) | undefined
}

/**
 * An alert: one per rule and transaction name (its `key`), updated rather than repeated.
 *
 * @since 0.1.0
 * @category models
 */
export interface Alert {
  readonly id: string
  /** `rule|transaction` (and `|figure` for the anomaly rule). */
  readonly key: string
  readonly rule: string
  readonly transaction: string
  readonly figure: string | undefined
  /** The level now (a rule may escalate or step down while the alert is open). */
  readonly level: AlertLevel
  /** The highest level it reached. */
  readonly peakLevel: AlertLevel
  readonly status: "open" | "resolved"
  readonly message: string
  readonly value: number
  readonly threshold: number
  /** How many times it fired: a firing within the de-duplication window after it resolved reopens it. */
  readonly count: number
  readonly firstFiredAt: number
  readonly lastFiredAt: number
  /** The last check at which its condition held. */
  readonly lastSeenAt: number
  readonly resolvedAt: number | undefined
  readonly instance: string
}

/**
 * What the monitor publishes: every snapshot, and alerts as they fire, change level and resolve.
 *
 * @since 0.1.0
 * @category models
 */
export type MonitorEvent =
  | { readonly _tag: "Snapshot"; readonly snapshot: MonitorSnapshot }
  | { readonly _tag: "AlertFired"; readonly alert: Alert }
  | { readonly _tag: "AlertUpdated"; readonly alert: Alert; readonly previousLevel: AlertLevel }
  | { readonly _tag: "AlertResolved"; readonly alert: Alert }

/**
 * A filter over the alert history, newest first.
 *
 * @since 0.1.0
 * @category models
 */
export interface AlertQuery {
  /** At least this level (by the alert's peak level). */
  readonly level?: AlertLevel | undefined
  readonly rule?: string | undefined
  readonly transaction?: string | undefined
  readonly status?: "open" | "resolved" | undefined
  /** Seen at or after (epoch milliseconds). */
  readonly since?: number | undefined
  /** First fired at or before (epoch milliseconds). */
  readonly until?: number | undefined
  readonly limit?: number | undefined
}

/**
 * The time range (and the instance) of the monitor's `history`.
 *
 * @since 0.1.0
 * @category models
 */
export interface HistoryQuery {
  /** Epoch milliseconds (inclusive); default: the oldest kept. */
  readonly from?: number | undefined
  /** Epoch milliseconds (inclusive); default: now. */
  readonly to?: number | undefined
  /** With persistence: another instance's history, or `"*"` for every instance's. Default: this one. */
  readonly instance?: string | undefined
}

/**
 * The verdict of {@link Health}, which says when each applies.
 *
 * @since 0.1.0
 * @category models
 */
export type HealthStatus = "healthy" | "degraded" | "unhealthy"

/**
 * Points taken off the health score, and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthDeduction {
  readonly reason: string
  readonly points: number
}

/**
 * The health now. The score starts at 100 and loses, capped per condition: per rule with open alerts, the points
 * of its highest open level (info 2, warning 10, error 25, critical 50); the failure rate of the last minute in
 * percent, at most 20 (with at least 20 transactions ended); 5 when transactions hold 90 % of the pool or more.
 * The status is `unhealthy` with a critical alert open or a score under 50, `degraded` with a warning or error
 * alert open or a score under 80, `healthy` otherwise.
 *
 * @since 0.1.0
 * @category models
 */
export interface Health {
  readonly status: HealthStatus
  readonly score: number
  /** 503 when unhealthy, 200 otherwise: what `GET /health` answers. */
  readonly httpStatus: 200 | 503
  readonly checkedAt: number
  readonly openAlerts: Readonly<Record<AlertLevel, number>>
  readonly deductions: ReadonlyArray<HealthDeduction>
}

/**
 * Advice for an open alert, with the figures that triggered it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recommendation {
  readonly rule: string
  readonly transaction: string
  readonly level: AlertLevel
  readonly title: string
  readonly advice: string
  readonly value: number
  readonly threshold: number
  /** The alert level's health points × the share of the last 5 minutes' transactions the name began. */
  readonly impact: number
  readonly alertId: string
}

/**
 * The figures whose direction a {@link Trend} follows.
 *
 * @since 0.1.0
 * @category models
 */
export type TrendFigure = "throughput" | "failureRate" | "p99" | "active" | "retriesPerSecond"

/**
 * A figure's direction: the mean of the latest `points` snapshots against the `points` before them (changes are
 * relative to the larger of the two means; under 10 % is flat), and against the same window an hour and a day
 * earlier when the history (or the database) holds it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Trend {
  readonly transaction: string
  readonly figure: TrendFigure
  readonly current: number
  readonly previous: number | undefined
  readonly change: number | undefined
  readonly direction: "rising" | "falling" | "flat"
  readonly hourAgo: number | undefined
  readonly changeFromHourAgo: number | undefined
  readonly dayAgo: number | undefined
  readonly changeFromDayAgo: number | undefined
}

/**
 * The options of the monitor's `trends`.
 *
 * @since 0.1.0
 * @category models
 */
export interface TrendOptions {
  /** Snapshots per compared window. Default 6 (a minute at the default interval). */
  readonly points?: number | undefined
  /** One name (or `"*"`); default: all transactions and every name of the latest snapshot. */
  readonly transaction?: string | undefined
}

/**
 * The time range and format of the monitor's `report`.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReportOptions {
  /** Epoch milliseconds or a `Date`; default: the oldest snapshot kept. */
  readonly from?: number | Date | undefined
  /** Default: now. */
  readonly to?: number | Date | undefined
  readonly format: "json" | "csv"
}

/**
 * What a report holds (its JSON form).
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorReport {
  readonly instance: string
  readonly generatedAt: number
  readonly from: number
  readonly to: number
  readonly health: Health
  readonly recommendations: ReadonlyArray<Recommendation>
  readonly trends: ReadonlyArray<Trend>
  readonly alerts: ReadonlyArray<Alert>
  readonly snapshots: ReadonlyArray<MonitorSnapshot>
}

/**
 * Where the history is kept: see {@link persist}.
 *
 * @since 0.1.0
 * @category models
 */
export interface MonitorPersistence {
  readonly table: string
  readonly retention: Duration.Duration
}

/**
 * The options of {@link layer} and {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionMonitorConfig {
  /** How often a snapshot is taken. Default 10 seconds. */
  readonly interval?: Duration.DurationInput | undefined
  /** How many snapshots the ring buffer keeps. Default 360 (an hour at the default interval). */
  readonly capacity?: number | undefined
  /** The rules checked after each snapshot. Default {@link defaultRules}`()`. */
  readonly rules?: ReadonlyArray<AlertRule> | undefined
  /** A rule firing again within this long after its alert resolved reopens that alert. Default 5 minutes. */
  readonly dedupWindow?: Duration.DurationInput | undefined
  /** How many alerts the history keeps (open ones are never dropped). Default 1000. */
  readonly alertHistory?: number | undefined
  /** Rules silenced from the start, for every name or for one. */
  readonly silences?: ReadonlyArray<{ readonly rule: string; readonly transaction?: string | undefined }> | undefined
  /** The pool size to measure saturation against. Default: what the client's configuration says. */
  readonly poolSize?: number | undefined
  /** This process's name in persisted rows and alert ids. Default: the host name. */
  readonly instance?: string | undefined
  /** Keep the history in the application's database: {@link persist}. */
  readonly persist?: MonitorPersistence | undefined
  /**
   * Where the figures come from. Default: Effect's metric registry (the series of the manager's database system)
   * and the manager's registry of running transactions. Tests and replays give their own.
   */
  readonly source?: Effect.Effect<MonitorReading> | undefined
}

/**
 * The monitor service: the snapshot history, alerts, health, recommendations, trends, reports, silences and a
 * stream of its events.
 *
 * @since 0.1.0
 * @category models
 */
export interface TransactionMonitor {
  readonly instance: string
  readonly interval: Duration.Duration
  /** The latest snapshot, if one was taken. */
  readonly latest: Effect.Effect<MonitorSnapshot | undefined>
  /** Takes a snapshot now (as the schedule does: rules are checked, events published, the row written). */
  readonly takeSnapshot: Effect.Effect<MonitorSnapshot>
  /** The snapshots of a time range, oldest first: from the ring buffer, or the database when it reaches further. */
  readonly history: (query?: HistoryQuery) => Effect.Effect<ReadonlyArray<MonitorSnapshot>, SqlError>
  /** The alert history (the last `alertHistory`), newest first. */
  readonly alerts: (query?: AlertQuery) => Effect.Effect<ReadonlyArray<Alert>>
  readonly health: Effect.Effect<Health>
  /** One per open alert, highest impact first. */
  readonly recommendations: Effect.Effect<ReadonlyArray<Recommendation>>
  readonly trends: (options?: TrendOptions) => Effect.Effect<ReadonlyArray<Trend>, SqlError>
  /** The report as data. */
  readonly reportData: (options?: Omit<ReportOptions, "format">) => Effect.Effect<MonitorReport, SqlError>
  /** The report as JSON or CSV text. */
  readonly report: (options: ReportOptions) => Effect.Effect<string, SqlError>
  /** Silences a rule, for one transaction name or for all: its conditions are ignored, its open alerts resolve. */
  readonly silence: (rule: string, transaction?: string) => Effect.Effect<void>
  readonly unsilence: (rule: string, transaction?: string) => Effect.Effect<void>
  /** The events from now on (a subscriber that falls 1024 events behind loses the oldest). */
  readonly events: Stream.Stream<MonitorEvent>
  /** Subscribes now, in the caller's scope: no event published after this returns is missed. */
  readonly subscribe: Effect.Effect<Queue.Dequeue<MonitorEvent>, never, Scope.Scope>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const TransactionMonitor: Context.Tag<TransactionMonitor, TransactionMonitor> = Context.GenericTag<
  TransactionMonitor
>("effect-sql-tx/TransactionMonitor")

/**
 * Keeps the monitor's history (snapshots and alerts) in a table of the application's database, through the
 * manager's `SqlClient` and outside the application's transactions: the table is created if missing (PostgreSQL,
 * MySQL/MariaDB, SQLite), rows older than `retention` are deleted (at start and hourly), and the recent history is
 * loaded back at start, so that a restart keeps the trends. Several instances may share the table (an `instance`
 * column; see the monitor's `instance`). Persistence failures are logged and never stop the monitor.
 *
 * @example
 * ```ts
 * import { TransactionMonitor } from "effect-sql-tx"
 *
 * const MonitorLive = TransactionMonitor.layer({
 *   persist: TransactionMonitor.persist({ table: "tx_monitor", retention: "7 days" })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const persist = (
  options: { readonly table?: string | undefined; readonly retention?: Duration.DurationInput | undefined } = {}
): MonitorPersistence => ({
  table: options.table ?? "effect_sql_tx_monitor",
  retention: Duration.decode(options.retention ?? Duration.days(14))
})

/**
 * Builds a monitor for the `TransactionManager` in context; its snapshot fiber lives as long as the scope. Fails
 * with `InvalidTransactionOptions` for an invalid configuration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  config: TransactionMonitorConfig = {}
): Effect.Effect<TransactionMonitor, InvalidTransactionOptions, TransactionManager | Scope.Scope> => makeMonitor(config)

/**
 * The monitor as a layer.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { TransactionLayer, TransactionMonitor } from "effect-sql-tx"
 *
 * const MonitorLive = TransactionMonitor.layer({ interval: "5 seconds" }).pipe(Layer.provideMerge(TransactionLayer))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  config: TransactionMonitorConfig = {}
): Layer.Layer<TransactionMonitor, InvalidTransactionOptions, TransactionManager> =>
  Layer.scoped(TransactionMonitor, make(config))

/**
 * A threshold rule: a figure measured over a trailing `window` of snapshots for every name (and overall),
 * compared with up to four thresholds (the highest reached gives the level).
 *
 * @since 0.1.0
 * @category models
 */
export interface ThresholdRuleOptions {
  readonly name: string
  readonly description: string
  /** The figure's name in messages. */
  readonly label: string
  readonly unit: "ratio" | "seconds" | "perMinute" | "count"
  readonly thresholds: Thresholds
  /** How long the condition must hold before it fires. Default 30 seconds. */
  readonly for?: Duration.DurationInput | undefined
  /** The trailing window the figures are summed over. Default 1 minute. */
  readonly window?: Duration.DurationInput | undefined
  /** `"overall"`, `"name"` (each transaction name) or `"both"` (default). */
  readonly scope?: "overall" | "name" | "both" | undefined
  /** Below this `volume`, the rule says nothing (quiet periods do not fire). */
  readonly minVolume?: number | undefined
  readonly volume?: ((figures: WindowFigures) => number) | undefined
  readonly measure: (
    figures: WindowFigures,
    name: string,
    history: ReadonlyArray<MonitorSnapshot>,
    context: RuleContext
  ) => number | undefined
  readonly advice?: ((alert: Alert, context: RuleContext) => string) | undefined
}

/**
 * The value of a figure from which each level fires (the highest level reached wins); a level left out never fires.
 *
 * @since 0.1.0
 * @category models
 */
export type Thresholds = { readonly [K in AlertLevel]?: number | undefined }

/**
 * A rule of your own on one figure of a trailing window, for every transaction name and overall (see
 * {@link ThresholdRuleOptions}); `measure` returns `undefined` when there is nothing to measure.
 *
 * @example
 * ```ts
 * import { TransactionMonitor } from "effect-sql-tx"
 *
 * // Deeply nested transactions: more than 20 savepoints per transaction warns, more than 100 is an error.
 * const savepointHeavy = TransactionMonitor.thresholdRule({
 *   name: "savepoint-heavy",
 *   description: "Savepoints per transaction",
 *   label: "savepoints per transaction",
 *   unit: "count",
 *   thresholds: { warning: 20, error: 100 },
 *   measure: (figures) => figures.counts.started === 0 ? undefined : figures.counts.savepoints / figures.counts.started
 * })
 *
 * const MonitorLive = TransactionMonitor.layer({ rules: [...TransactionMonitor.defaultRules(), savepointHeavy] })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const thresholdRule: (options: ThresholdRuleOptions) => AlertRule = Rules.thresholdRule

/**
 * The options of {@link anomalyRule}.
 *
 * @since 0.1.0
 * @category models
 */
export interface AnomalyRuleOptions {
  /** Default `"anomaly"`. */
  readonly name?: string | undefined
  /** How many robust deviations from the baseline fire (twice as many: `error`). Default 4. */
  readonly deviations?: number | undefined
  /** How many snapshots before the `for` window make the baseline. Default 60. */
  readonly baseline?: number | undefined
  /** Fewer baseline snapshots than this: the rule says nothing. Default 30. */
  readonly minBaseline?: number | undefined
  /** The median transactions begun per baseline snapshot (and, for p99 and failure rate, in the latest one) below
   * which the rule says nothing. Default 10. */
  readonly minVolume?: number | undefined
  /** Default 30 seconds. */
  readonly for?: Duration.DurationInput | undefined
  /** Default all three. */
  readonly figures?: ReadonlyArray<"p99" | "failureRate" | "throughput"> | undefined
  /** Check each transaction name too (default: all transactions only). */
  readonly perName?: boolean | undefined
}

/**
 * The anomaly rule, which needs no threshold: it fires when the latest interval's p99 duration or failure rate
 * rises, or its throughput falls, more than `deviations` robust deviations away from the figure's own trailing
 * baseline. The baseline is the median of the `baseline` snapshots before the `for` window; a deviation is the
 * median absolute deviation × 1.4826 (the standard deviation for normal data, unmoved by outliers), floored at
 * 10 % of the median. It stays quiet until the baseline has `minBaseline` snapshots and while the baseline's median
 * volume is under `minVolume` transactions per snapshot.
 *
 * @since 0.1.0
 * @category constructors
 */
export const anomalyRule: (options?: AnomalyRuleOptions) => AlertRule = Rules.anomalyRule

/**
 * A rule from a function of the snapshot history.
 *
 * @example
 * ```ts
 * import { TransactionMonitor } from "effect-sql-tx"
 *
 * // Fires when no "checkout" committed in the latest snapshot while others did.
 * const checkoutStalled = TransactionMonitor.rule({
 *   name: "checkout-stalled",
 *   description: "No checkout committed",
 *   for: "1 minute",
 *   evaluate: (history) => {
 *     const latest = history[history.length - 1]
 *     return latest !== undefined && latest.overall.interval.committed > 0 &&
 *         (latest.byName["checkout"]?.interval.committed ?? 0) === 0
 *       ? [{ transaction: "checkout", level: "error", value: 0, threshold: 1, message: "no checkout committed" }]
 *       : []
 *   }
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const rule = (options: {
  readonly name: string
  readonly description: string
  readonly for?: Duration.DurationInput | undefined
  readonly evaluate: AlertRule["evaluate"]
  readonly advice?: AlertRule["advice"]
}): AlertRule => ({
  name: options.name,
  description: options.description,
  for: Duration.decode(options.for ?? Duration.seconds(30)),
  evaluate: options.evaluate,
  advice: options.advice
})

/**
 * The names of the default rules.
 *
 * @since 0.1.0
 * @category models
 */
export type DefaultRuleName =
  | "failure-rate"
  | "deadlock-rate"
  | "serialization-failure-rate"
  | "timeout-rate"
  | "lock-timeout-rate"
  | "retries-per-commit"
  | "p99-duration"
  | "long-running"
  | "pool-saturation"
  | "hook-failures"
  | "savepoint-budget"

/**
 * Overrides of the default rules: `false` drops one; otherwise its thresholds, `for`, window or minimum volume.
 *
 * @since 0.1.0
 * @category models
 */
export type DefaultRulesOptions =
  & {
    readonly [K in DefaultRuleName]?:
      | false
      | {
        readonly thresholds?: Thresholds | undefined
        readonly for?: Duration.DurationInput | undefined
        readonly window?: Duration.DurationInput | undefined
        readonly minVolume?: number | undefined
      }
      | undefined
  }
  & { readonly anomaly?: false | AnomalyRuleOptions | undefined }

/**
 * The default rules (thresholds, `for`, window; the README lists them): failure rate, deadlock rate,
 * serialization-failure rate, timeout rate, lock-timeout rate, retries per commit, p99 duration, long-running
 * transactions, pool saturation, hook failures, savepoint budget, and the anomaly rule.
 *
 * @example
 * ```ts
 * import { TransactionMonitor } from "effect-sql-tx"
 *
 * const rules = TransactionMonitor.defaultRules({
 *   "p99-duration": { thresholds: { warning: 0.2, critical: 2 } },
 *   "savepoint-budget": false
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const defaultRules: (options?: DefaultRulesOptions) => ReadonlyArray<AlertRule> = Rules.defaultRules

/**
 * The health of the monitor in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const health: Effect.Effect<Health, never, TransactionMonitor> = Effect.flatMap(
  TransactionMonitor,
  (monitor) => monitor.health
)

/**
 * The latest snapshot of the monitor in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const latest: Effect.Effect<MonitorSnapshot | undefined, never, TransactionMonitor> = Effect.flatMap(
  TransactionMonitor,
  (monitor) => monitor.latest
)

/**
 * The recommendations of the monitor in context, highest impact first.
 *
 * @since 0.1.0
 * @category accessors
 */
export const recommendations: Effect.Effect<ReadonlyArray<Recommendation>, never, TransactionMonitor> = Effect
  .flatMap(TransactionMonitor, (monitor) => monitor.recommendations)

/**
 * A report of the monitor in context.
 *
 * @since 0.1.0
 * @category accessors
 */
export const report = (options: ReportOptions): Effect.Effect<string, SqlError, TransactionMonitor> =>
  Effect.flatMap(TransactionMonitor, (monitor) => monitor.report(options))
