/**
 * The monitor service: the snapshot fiber, the ring buffer, rule checks, events, and the derived views.
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as PubSub from "effect/PubSub"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as Os from "node:os"
import type { InvalidTransactionOptions } from "../../TransactionError.js"
import { TransactionManager } from "../../TransactionManager.js"
import type {
  AlertRule,
  Condition,
  HistoryQuery,
  MonitorEvent,
  MonitorReport,
  MonitorSnapshot,
  ReportOptions,
  RuleContext,
  TransactionMonitor,
  TransactionMonitorConfig,
  Trend,
  TrendOptions
} from "../../TransactionMonitor.js"
import * as Options from "../options.js"
import { AlertBook } from "./alerts.js"
import * as Health from "./health.js"
import * as Persistence from "./persistence.js"
import * as Report from "./report.js"
import { aggregate, defaultRules, overallName } from "./rules.js"
import { diff, readMetrics } from "./snapshot.js"
import * as Trends from "./trends.js"

const tableName = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** Validates a configuration. */
const validateConfig = (config: TransactionMonitorConfig) =>
  Either.gen(function*() {
    const interval = (yield* Options.positiveDuration("interval", config.interval)) ?? Duration.seconds(10)
    const capacity = yield* Options.positiveInteger("capacity", config.capacity, 360)
    const dedupWindow = (yield* Options.positiveDuration("dedupWindow", config.dedupWindow)) ??
      Duration.minutes(5)
    const alertHistory = yield* Options.positiveInteger("alertHistory", config.alertHistory, 1000)
    const poolSize = config.poolSize === undefined
      ? undefined
      : yield* Options.positiveInteger("poolSize", config.poolSize, 1)
    if (config.persist !== undefined) {
      if (!tableName.test(config.persist.table)) {
        return yield* Options.invalid(
          "persist.table",
          config.persist.table,
          "expected a plain SQL identifier (letters, digits, _; at most 63)"
        )
      }
      yield* Options.positiveDuration("persist.retention", config.persist.retention)
    }
    if (config.instance !== undefined && (config.instance.length === 0 || config.instance.length > 100)) {
      return yield* Options.invalid("instance", config.instance, "expected 1 to 100 characters")
    }
    const names = new Set<string>()
    for (const rule of config.rules ?? []) {
      if (names.has(rule.name)) return yield* Options.invalid("rules", rule.name, "two rules have this name")
      names.add(rule.name)
    }
    return { interval, capacity, dedupWindow, alertHistory, poolSize }
  })

const hour = 3_600_000
const day = 24 * hour

/** @internal */
export const make = (
  config: TransactionMonitorConfig
): Effect.Effect<TransactionMonitor, InvalidTransactionOptions, TransactionManager | Scope.Scope> =>
  Effect.gen(function*() {
    const { alertHistory, capacity, dedupWindow, interval, poolSize: givenPoolSize } = yield* validateConfig(config)
    const manager = yield* TransactionManager
    const clock = yield* Effect.clock
    const instance = config.instance ?? Os.hostname().slice(0, 100)
    const dbSystem = manager.dialect.dbSystem
    const poolSize = givenPoolSize ?? manager.dialect.poolSize(manager.sql)
    const source = config.source ?? readMetrics(dbSystem, manager.active)
    const rules: ReadonlyArray<AlertRule> = config.rules ?? defaultRules()
    const book = new AlertBook(instance, alertHistory, Duration.toMillis(dedupWindow))
    for (const silence of config.silences ?? []) book.silence(silence.rule, silence.transaction)
    const intervalMillis = Duration.toMillis(interval)
    const longRunningMillis = Duration.toMillis(manager.longRunningThreshold)
    const ring: Array<MonitorSnapshot> = []
    const events = yield* Effect.acquireRelease(PubSub.sliding<MonitorEvent>(1024), PubSub.shutdown)
    const lock = yield* Effect.makeSemaphore(1)
    const store: Persistence.Store | undefined = config.persist === undefined ? undefined : {
      table: config.persist.table,
      retentionMillis: Duration.toMillis(config.persist.retention),
      sql: manager.sql,
      instance
    }
    let lastPurge = 0
    const logged = (what: string) => (effect: Effect.Effect<void, SqlError>) =>
      Effect.catchAllCause(
        effect,
        (cause) =>
          Effect.logWarning(`effect-sql-tx: the monitor could not ${what}`, cause).pipe(
            Effect.annotateLogs({ table: store?.table ?? "" })
          )
      )

    if (store !== undefined) {
      const now = clock.unsafeCurrentTimeMillis()
      lastPurge = now
      yield* logged("load its history")(Effect.gen(function*() {
        yield* Persistence.ensureTable(store)
        yield* Persistence.purge(store, now)
        const loaded = yield* Persistence.loadSnapshots(store, now - capacity * intervalMillis, now)
        ring.push(...loaded.slice(-capacity))
        book.restore(yield* Persistence.loadAlerts(store, now - store.retentionMillis, alertHistory))
      }))
    }

    let previous = yield* source
    let previousAt = clock.unsafeCurrentTimeMillis()

    /** The rule context of the ring now (`aggregate` keeps each window's figures until the ring grows). */
    const contextOf = (history: ReadonlyArray<MonitorSnapshot>): RuleContext => ({
      window: (millis) => aggregate(history, millis),
      latest: history[history.length - 1],
      longRunningThreshold: manager.longRunningThreshold
    })

    const check = (now: number): Effect.Effect<Array<MonitorEvent>> =>
      Effect.suspend(() => {
        const context = contextOf(ring)
        const results: Array<readonly [AlertRule, ReadonlyArray<Condition>]> = []
        const failures: Array<readonly [string, unknown]> = []
        for (const rule of rules) {
          try {
            results.push([rule, rule.evaluate(ring, context)])
          } catch (error) {
            // A rule that throws says nothing this time: its open alerts stay open rather than resolve.
            failures.push([rule.name, error])
            results.push([rule, book.openAlerts().filter((alert) => alert.rule === rule.name)])
          }
        }
        const fired = book.observe(now, results)
        return Effect.as(
          Effect.forEach(failures, ([name, error]) =>
            Effect.logWarning(`effect-sql-tx: the monitor's rule "${name}" threw`, error), { discard: true }),
          fired
        )
      })

    const takeSnapshot: Effect.Effect<MonitorSnapshot> = lock.withPermits(1)(Effect.gen(function*() {
      const reading = yield* source
      // Strictly increasing times: a snapshot's time is its key (event ids, the table's primary key).
      const now = Math.max(clock.unsafeCurrentTimeMillis(), (ring[ring.length - 1]?.takenAt ?? -Infinity) + 1)
      const snapshot = diff(previous, reading, {
        takenAt: now,
        seconds: Math.max(0, (now - previousAt) / 1000),
        instance,
        dbSystem,
        longRunningMillis,
        poolSize
      })
      previous = reading
      previousAt = now
      ring.push(snapshot)
      if (ring.length > capacity) ring.splice(0, ring.length - capacity)
      const fired = yield* check(now)
      yield* PubSub.publish(events, { _tag: "Snapshot", snapshot })
      yield* PubSub.publishAll(events, fired)
      if (store !== undefined) {
        yield* logged("write its history")(
          Persistence.write(store, snapshot, fired.flatMap((event) => event._tag === "Snapshot" ? [] : [event.alert]))
        )
        if (now - lastPurge >= hour) {
          lastPurge = now
          yield* logged("delete old history")(Persistence.purge(store, now))
        }
      }
      return snapshot
    }))

    yield* Effect.forkScoped(
      Effect.sleep(interval).pipe(
        Effect.zipRight(Effect.forever(
          Effect.zipRight(
            takeSnapshot.pipe(
              Effect.catchAllDefect((defect) => Effect.logError("effect-sql-tx: the monitor's snapshot died", defect))
            ),
            Effect.sleep(interval)
          )
        ))
      )
    )

    const history = (query: HistoryQuery = {}): Effect.Effect<ReadonlyArray<MonitorSnapshot>, SqlError> =>
      Effect.suspend(() => {
        // The latest snapshot may be dated a little after now (snapshot times strictly increase).
        const to = query.to ?? Math.max(clock.unsafeCurrentTimeMillis(), ring[ring.length - 1]?.takenAt ?? -Infinity)
        const from = query.from ?? 0
        const oldest = ring[0]?.takenAt ?? Infinity
        const otherInstance = query.instance !== undefined && query.instance !== instance
        if (store !== undefined && (otherInstance || (query.from !== undefined && from < oldest))) {
          return Persistence.loadSnapshots(store, from, to, query.instance ?? instance)
        }
        return Effect.succeed(ring.filter((s) => s.takenAt >= from && s.takenAt <= to))
      })

    const windowFailure = (context: RuleContext) => {
      const window = context.window(60_000).get(overallName)
      return window === undefined
        ? undefined
        : { rate: window.failureRate, ended: window.counts.committed + window.counts.rolledBack }
    }

    const health = Effect.sync(() =>
      Health.health(book.openAlerts(), ring, windowFailure(contextOf(ring)), clock.unsafeCurrentTimeMillis())
    )

    const recommendations = Effect.sync(() => Health.recommendations(book.openAlerts(), rules, contextOf(ring)))

    const trends = (options: TrendOptions = {}): Effect.Effect<ReadonlyArray<Trend>, SqlError> =>
      Effect.gen(function*() {
        const points = Math.max(1, Math.floor(options.points ?? 6))
        const latest = ring[ring.length - 1]
        if (latest === undefined) return []
        const names = options.transaction !== undefined
          ? [options.transaction]
          : [overallName, ...Object.keys(latest.byName).sort()]
        // The same span as the compared snapshots, an hour (a day) earlier.
        const span = latest.takenAt - ring[Math.max(0, ring.length - points)]!.takenAt
        const earlier = (ago: number) => {
          const to = latest.takenAt - ago
          return history({ from: to - span, to })
        }
        const hourAgo = yield* earlier(hour)
        const dayAgo = yield* earlier(day)
        return names.flatMap((name) => Trends.trends(ring, name, points, { hour: hourAgo, day: dayAgo }))
      })

    const reportData = (
      options: Omit<ReportOptions, "format"> = {}
    ): Effect.Effect<MonitorReport, SqlError> =>
      Effect.gen(function*() {
        const now = clock.unsafeCurrentTimeMillis()
        const from = options.from === undefined ? (ring[0]?.takenAt ?? now) : Number(options.from)
        const to = options.to === undefined ? Math.max(now, ring[ring.length - 1]?.takenAt ?? now) : Number(options.to)
        return {
          instance,
          generatedAt: now,
          from,
          to,
          health: yield* health,
          recommendations: yield* recommendations,
          trends: yield* trends(),
          alerts: book.query({ since: from, until: to }),
          snapshots: yield* history({ from, to })
        }
      })

    const monitor: TransactionMonitor = {
      instance,
      interval,
      latest: Effect.sync(() => ring[ring.length - 1]),
      takeSnapshot,
      history,
      alerts: (query) => Effect.sync(() => book.query(query)),
      health,
      recommendations,
      trends,
      reportData,
      report: (options) =>
        Effect.flatMap(
          reportData(options),
          (data): Effect.Effect<string> =>
            options.format === "csv" ? Report.toCsv(data) : Effect.succeed(JSON.stringify(data))
        ),
      silence: (rule, transaction) => Effect.sync(() => book.silence(rule, transaction)),
      unsilence: (rule, transaction) => Effect.sync(() => book.unsilence(rule, transaction)),
      events: Stream.fromPubSub(events),
      subscribe: PubSub.subscribe(events)
    }
    return monitor
  })
