/**
 * The monitor's logic with scripted readings under the TestClock: percentiles, rule `for` durations, escalation,
 * de-duplication, resolution, silences, the alert history's bound, the health score, recommendations, the anomaly
 * rule, trends, the ring buffer and events. (Real workloads on each database: test/suites/MonitorSuite.ts.)
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Fiber, Layer, Stream, TestClock } from "effect"
import { TransactionLayer, type TransactionManager, TransactionMonitor } from "../src/index.js"
import { bounds, zeroCounts } from "./utils/readings.js"

/** A name's cumulative figures, built up by `add`. */
class Script {
  readonly names = new Map<string, {
    counts: Record<TransactionMonitor.CountField, number>
    failedByError: Record<string, number>
    cumulative: Array<number>
    durationCount: number
    durationSum: number
    durationMax: number
  }>()
  active: Array<TransactionManager.ActiveTransaction> = []

  /** Adds `n` transactions of `name`: `failed` of them failed with `error`, each lasting `seconds`. */
  add(
    name: string,
    n: number,
    options: {
      readonly failed?: number
      readonly error?: string
      readonly seconds?: number
      readonly extra?: Partial<Record<TransactionMonitor.CountField, number>>
    } = {}
  ): this {
    let entry = this.names.get(name)
    if (entry === undefined) {
      entry = {
        counts: zeroCounts(),
        failedByError: {},
        cumulative: bounds.map(() => 0),
        durationCount: 0,
        durationSum: 0,
        durationMax: 0
      }
      this.names.set(name, entry)
    }
    const failed = options.failed ?? 0
    const seconds = options.seconds ?? 0.001
    entry.counts.started += n
    entry.counts.committed += n - failed
    entry.counts.rolledBack += failed
    entry.counts.failed += failed
    if (failed > 0) {
      const error = options.error ?? "Boom"
      entry.failedByError[error] = (entry.failedByError[error] ?? 0) + failed
      if (error === "DeadlockDetected") entry.counts.deadlocks += failed
    }
    for (const [field, value] of Object.entries(options.extra ?? {})) {
      entry.counts[field as TransactionMonitor.CountField] += value
    }
    bounds.forEach((bound, i) => {
      if (seconds <= bound) entry.cumulative[i]! += n
    })
    entry.durationCount += n
    entry.durationSum += n * seconds
    entry.durationMax = Math.max(entry.durationMax, seconds)
    return this
  }

  readonly source: Effect.Effect<TransactionMonitor.MonitorReading> = Effect.sync(() => ({
    names: new Map([...this.names].map(([name, e]) => [name, structuredClone(e)])),
    active: this.active
  }))
}

const Sqlite = TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })))

/** A monitor over a script whose fiber never fires by itself: the test takes each snapshot after moving the clock. */
const scripted = (config: Omit<TransactionMonitor.TransactionMonitorConfig, "source"> = {}) =>
  Effect.gen(function*() {
    const script = new Script()
    const monitor = yield* TransactionMonitor.make({ interval: "1 day", ...config, source: script.source })
    /** Moves the clock by 10 s (or `seconds`) and takes a snapshot. */
    const tick = (seconds = 10) => Effect.zipRight(TestClock.adjust(Duration.seconds(seconds)), monitor.takeSnapshot)
    return { script, monitor, tick }
  }).pipe(Effect.provide(Sqlite))

const failureRule = (options: { readonly for?: Duration.DurationInput } = {}) =>
  TransactionMonitor.defaultRules({
    "failure-rate": { for: options.for ?? "1 minute", minVolume: 20 },
    anomaly: false
  }).filter((rule) => rule.name === "failure-rate")

describe("TransactionMonitor", () => {
  it.scoped("percentiles are interpolated within their bucket and never exceed the maximum observed", () =>
    Effect.gen(function*() {
      const { script, tick } = yield* scripted()
      yield* tick()
      // 95 fast ones and 5 of 1.04 s: the 1.04 s bucket's upper bound is 2.048 s, which the maximum caps.
      script.add("x", 95, { seconds: 0.001 }).add("x", 5, { seconds: 1.04 })
      const snapshot = yield* tick()
      const d = snapshot.byName["x"]!.duration
      assert.strictEqual(d.count, 100)
      assert.strictEqual(d.max, 1.04)
      assert.isAtMost(d.p99, 1.04)
      assert.isAbove(d.p99, 1.024)
      assert.isAtMost(d.p50, 0.001)
      assert.isAbove(d.p50, 0.0005)
      // With no new maximum in the interval, the interval's max is its bucket's bound capped at the all-time max.
      script.add("x", 10, { seconds: 0.003 })
      const next = yield* tick()
      assert.strictEqual(next.byName["x"]!.duration.max, 0.004)
      assert.isAtMost(next.byName["x"]!.duration.p99, 0.004)
    }))

  it.scoped("counts are per interval, totals cumulative, rates per second; quiet names are left out", () =>
    Effect.gen(function*() {
      const { script, tick } = yield* scripted()
      script.add("a", 10, { failed: 2, error: "DeadlockDetected" }).add("b", 4)
      yield* tick()
      script.add("a", 30, { failed: 3, error: "Boom" })
      const snapshot = yield* tick(10)
      const a = snapshot.byName["a"]!
      assert.strictEqual(a.interval.started, 30)
      assert.strictEqual(a.interval.failed, 3)
      assert.strictEqual(a.totals.started, 40)
      assert.strictEqual(a.totals.deadlocks, 2)
      assert.strictEqual(a.interval.deadlocks, 0)
      assert.strictEqual(a.perSecond.started, 3)
      assert.deepStrictEqual(a.failedByError, { Boom: 3 })
      assert.strictEqual(a.failureRate, 0.1)
      assert.strictEqual(a.successRate, 0.9)
      assert.strictEqual(snapshot.overall.interval.started, 30)
      assert.isUndefined(snapshot.byName["b"])
      assert.strictEqual(snapshot.seconds, 10)
    }))

  it.scoped("a condition fires only after holding for its `for` duration, escalates, and resolves by itself", () =>
    Effect.gen(function*() {
      const { monitor, script, tick } = yield* scripted({ rules: failureRule() })
      yield* tick()
      // 6 % failures: warning (5 %). Held from t = 10 s; fires at t = 70 s, not before.
      for (let t = 0; t < 6; t++) {
        script.add("pay", 100, { failed: 6 })
        yield* tick()
        assert.lengthOf(yield* monitor.alerts(), 0, `no alert after ${(t + 1) * 10} s`)
      }
      script.add("pay", 100, { failed: 6 })
      yield* tick()
      const fired = yield* monitor.alerts({ status: "open" })
      assert.deepStrictEqual(fired.map((a) => [a.key, a.level, a.count]).sort(), [
        ["failure-rate|*", "warning", 1],
        ["failure-rate|pay", "warning", 1]
      ])
      const id = fired.find((a) => a.transaction === "pay")!.id
      // 40 % failures: critical (25 %), the same alert.
      for (let t = 0; t < 6; t++) {
        script.add("pay", 100, { failed: 40 })
        yield* tick()
      }
      const escalated = (yield* monitor.alerts({ transaction: "pay" }))[0]!
      assert.strictEqual(escalated.id, id)
      assert.strictEqual(escalated.level, "critical")
      assert.strictEqual(escalated.peakLevel, "critical")
      assert.strictEqual(escalated.count, 1)
      assert.lengthOf(yield* monitor.alerts({ transaction: "pay" }), 1)
      // No failures: once the 1-minute window holds none, the alert resolves.
      for (let t = 0; t < 7; t++) {
        script.add("pay", 100)
        yield* tick()
      }
      const resolved = (yield* monitor.alerts({ transaction: "pay" }))[0]!
      assert.strictEqual(resolved.status, "resolved")
      assert.isDefined(resolved.resolvedAt)
      assert.lengthOf(yield* monitor.alerts({ status: "open" }), 0)
    }))

  it.scoped("a rule firing again within the de-duplication window reopens its alert; after it, a new one", () =>
    Effect.gen(function*() {
      const holds = { now: true }
      const flapping = TransactionMonitor.rule({
        name: "flap",
        description: "scripted",
        for: "10 seconds",
        evaluate: () =>
          holds.now ? [{ transaction: "x", level: "error", value: 1, threshold: 1, message: "flapping" }] : []
      })
      const { monitor, tick } = yield* scripted({ rules: [flapping], dedupWindow: "5 minutes" })
      yield* tick()
      yield* tick()
      const first = (yield* monitor.alerts())[0]!
      assert.strictEqual(first.status, "open")
      holds.now = false
      yield* tick()
      holds.now = true
      yield* tick()
      yield* tick()
      const again = yield* monitor.alerts()
      assert.lengthOf(again, 1)
      assert.strictEqual(again[0]!.id, first.id)
      assert.strictEqual(again[0]!.count, 2)
      assert.strictEqual(again[0]!.status, "open")
      holds.now = false
      yield* tick()
      yield* tick(6 * 60)
      holds.now = true
      yield* tick()
      yield* tick()
      const later = yield* monitor.alerts()
      assert.lengthOf(later, 2)
      assert.notStrictEqual(later[0]!.id, first.id)
      assert.strictEqual(later[0]!.count, 1)
    }))

  it.scoped("the alert history keeps the last `alertHistory` alerts, never dropping an open one; filters", () =>
    Effect.gen(function*() {
      let round = 0
      // Each round fires a new name's alert (warning, or critical every third) and clears the previous one.
      const rotating = TransactionMonitor.rule({
        name: "rotate",
        description: "scripted",
        for: "1 millis",
        evaluate: () => [{
          transaction: `n${round}`,
          level: round % 3 === 0 ? "critical" : "warning",
          value: round,
          threshold: 0,
          message: `round ${round}`
        }]
      })
      const { monitor, tick } = yield* scripted({ rules: [rotating], alertHistory: 5 })
      for (round = 0; round < 12; round++) {
        yield* tick()
        yield* tick()
      }
      const all = yield* monitor.alerts()
      assert.lengthOf(all, 5)
      assert.deepStrictEqual(all.map((a) => a.transaction), ["n11", "n10", "n9", "n8", "n7"])
      assert.strictEqual(all[0]!.status, "open")
      assert.deepStrictEqual((yield* monitor.alerts({ level: "critical" })).map((a) => a.transaction), ["n9"])
      assert.deepStrictEqual((yield* monitor.alerts({ transaction: "n8" })).map((a) => a.value), [8])
      assert.lengthOf(yield* monitor.alerts({ rule: "other" }), 0)
      assert.lengthOf(yield* monitor.alerts({ limit: 2 }), 2)
      const latest = (yield* monitor.latest)!.takenAt
      assert.deepStrictEqual((yield* monitor.alerts({ since: latest })).map((a) => a.transaction), ["n11"])
    }))

  it.scoped("a silenced rule raises nothing for its name, and its open alert resolves", () =>
    Effect.gen(function*() {
      const always = TransactionMonitor.rule({
        name: "always",
        description: "scripted",
        for: "1 millis",
        evaluate: () =>
          ["a", "b"].map((transaction) => ({ transaction, level: "warning", value: 1, threshold: 1, message: "!" }))
      })
      const { monitor, tick } = yield* scripted({ rules: [always], silences: [{ rule: "always", transaction: "b" }] })
      yield* tick()
      yield* tick()
      assert.deepStrictEqual((yield* monitor.alerts({ status: "open" })).map((a) => a.transaction), ["a"])
      yield* monitor.silence("always", "a")
      yield* tick()
      assert.lengthOf(yield* monitor.alerts({ status: "open" }), 0)
      yield* monitor.unsilence("always", "b")
      yield* tick()
      yield* tick()
      assert.deepStrictEqual((yield* monitor.alerts({ status: "open" })).map((a) => a.transaction), ["b"])
    }))

  it.scoped("health: the score formula, the status and the HTTP status", () =>
    Effect.gen(function*() {
      const level = { now: undefined as TransactionMonitor.AlertLevel | undefined }
      const scriptedRule = TransactionMonitor.rule({
        name: "scripted",
        description: "scripted",
        for: "1 millis",
        evaluate: () =>
          level.now === undefined
            ? []
            : [{ transaction: "x", level: level.now, value: 1, threshold: 1, message: "m" }, {
              transaction: "y",
              level: "info",
              value: 1,
              threshold: 1,
              message: "m"
            }]
      })
      const { monitor, script, tick } = yield* scripted({ rules: [scriptedRule] })
      yield* tick()
      const calm = yield* monitor.health
      assert.deepStrictEqual([calm.status, calm.score, calm.httpStatus], ["healthy", 100, 200])
      // 10 % failures over the last minute (≥ 20 ended): 10 points.
      script.add("x", 100, { failed: 10 })
      yield* tick()
      const failing = yield* monitor.health
      assert.deepStrictEqual([failing.status, failing.score], ["healthy", 90])
      level.now = "warning"
      yield* tick()
      yield* tick()
      // A warning alert (one rule counts once, at its highest level: 10) and the failure rate (10): 80, degraded.
      const warned = yield* monitor.health
      assert.deepStrictEqual([warned.status, warned.score, warned.httpStatus], ["degraded", 80, 200])
      assert.deepStrictEqual(warned.openAlerts, { info: 1, warning: 1, error: 0, critical: 0 })
      level.now = "critical"
      yield* tick()
      const critical = yield* monitor.health
      assert.deepStrictEqual([critical.status, critical.score, critical.httpStatus], ["unhealthy", 40, 503])
      assert.isTrue(critical.deductions.some((d) => d.points === 50 && d.reason.includes("scripted")))
      const fromAccessor = yield* Effect.provideService(
        TransactionMonitor.health,
        TransactionMonitor.TransactionMonitor,
        monitor
      )
      assert.strictEqual(fromAccessor.score, 40)
    }))

  it.scoped("recommendations: advice with the figures and the names involved, ranked by impact", () =>
    Effect.gen(function*() {
      const rules = TransactionMonitor.defaultRules({
        "deadlock-rate": { for: "10 seconds" },
        "long-running": { for: "10 seconds" },
        anomaly: false
      })
      const { monitor, script, tick } = yield* scripted({ rules })
      yield* tick()
      // "transfer": 30 deadlocks a minute (critical at 20); "report": one transaction running for 40 s (error).
      const now = yield* Clock.currentTimeMillis
      script.active = [{
        id: "7",
        name: "report",
        depth: 0,
        startedAt: new Date(now - 30_000),
        attempt: 1,
        connectionId: 4242,
        flagged: true
      }]
      for (let t = 0; t < 3; t++) {
        script.add("transfer", 50, { failed: 5, error: "DeadlockDetected" })
        script.active = script.active.map((a) => ({ ...a, startedAt: new Date(a.startedAt.getTime() - 10_000) }))
        yield* tick()
      }
      const recommendations = yield* monitor.recommendations
      const deadlock = recommendations.find((r) => r.rule === "deadlock-rate" && r.transaction === "transfer")!
      assert.include(deadlock.advice, "one order")
      assert.include(deadlock.advice, "\"transfer\" (15)")
      assert.strictEqual(deadlock.level, "critical")
      assert.strictEqual(deadlock.value, 30)
      const longRunning = recommendations.find((r) => r.rule === "long-running" && r.transaction === "report")!
      assert.include(longRunning.advice, "#7")
      assert.include(longRunning.advice, "server connection 4242")
      assert.include(longRunning.advice, "timeout")
      // Ranked: each impact at least the next one's.
      for (let i = 1; i < recommendations.length; i++) {
        assert.isAtLeast(recommendations[i - 1]!.impact, recommendations[i]!.impact)
      }
      assert.strictEqual(recommendations[0]!.level, "critical")
    }))

  it.scoped("the anomaly rule fires when p99 leaves its baseline, and stays quiet at low volume", () =>
    Effect.gen(function*() {
      const run = (volume: number) =>
        Effect.gen(function*() {
          const { monitor, script, tick } = yield* scripted({
            rules: [TransactionMonitor.anomalyRule({ figures: ["p99"], minVolume: 10 })]
          })
          yield* tick()
          for (let t = 0; t < 40; t++) {
            script.add("q", volume, { seconds: t % 2 === 0 ? 0.01 : 0.012 })
            yield* tick()
          }
          assert.lengthOf(yield* monitor.alerts(), 0, "steady baseline")
          for (let t = 0; t < 5; t++) {
            script.add("q", volume, { seconds: 1.5 })
            yield* tick()
          }
          return yield* monitor.alerts()
        })
      const busy = yield* run(50)
      assert.lengthOf(busy, 1)
      assert.strictEqual(busy[0]!.rule, "anomaly")
      assert.strictEqual(busy[0]!.figure, "p99")
      assert.include(busy[0]!.message, "deviations above")
      assert.lengthOf(yield* run(3), 0)
    }))

  it.scoped("trends compare the latest snapshots with the ones before", () =>
    Effect.gen(function*() {
      // An hour and the compared window: the default capacity (360) holds an hour, no more.
      const { monitor, script, tick } = yield* scripted({ rules: [], capacity: 400 })
      yield* tick()
      for (let t = 0; t < 6; t++) {
        script.add("t", 100)
        yield* tick()
      }
      for (let t = 0; t < 6; t++) {
        script.add("t", 300)
        yield* tick()
      }
      const trends = yield* monitor.trends({ points: 6, transaction: "t" })
      const throughput = trends.find((t) => t.figure === "throughput")!
      assert.strictEqual(throughput.current, 30)
      assert.strictEqual(throughput.previous, 10)
      assert.strictEqual(throughput.direction, "rising")
      assert.isUndefined(throughput.hourAgo)
      assert.strictEqual(trends.find((t) => t.figure === "failureRate")!.direction, "flat")
      // An hour later the same window of an hour ago is in the ring: flat against it.
      for (let t = 0; t < 360; t++) {
        script.add("t", 300)
        yield* tick()
      }
      const later = (yield* monitor.trends({ points: 6, transaction: "t" })).find((t) => t.figure === "throughput")!
      assert.strictEqual(later.direction, "flat")
      assert.strictEqual(later.hourAgo, 30)
      assert.strictEqual(later.changeFromHourAgo, 0)
    }))

  it.scoped("the ring buffer keeps `capacity` snapshots; the scheduled fiber takes one every interval", () =>
    Effect.gen(function*() {
      const script = new Script()
      const monitor = yield* TransactionMonitor.make({ interval: "10 seconds", capacity: 5, source: script.source })
        .pipe(Effect.provide(Sqlite))
      assert.isUndefined(yield* monitor.latest)
      for (let t = 0; t < 12; t++) {
        script.add("r", 1)
        yield* TestClock.adjust("10 seconds")
      }
      const history = yield* monitor.history()
      assert.lengthOf(history, 5)
      assert.strictEqual(history[4]!.takenAt - history[0]!.takenAt, 40_000)
      assert.strictEqual(history[4]!.overall.interval.started, 1)
    }))

  it.scoped("events: snapshots, fired and resolved alerts", () =>
    Effect.gen(function*() {
      const holds = { now: true }
      const once = TransactionMonitor.rule({
        name: "once",
        description: "scripted",
        for: "1 millis",
        evaluate: () => holds.now ? [{ transaction: "e", level: "info", value: 1, threshold: 1, message: "!" }] : []
      })
      const { monitor, tick } = yield* scripted({ rules: [once] })
      const collected = yield* monitor.events.pipe(Stream.take(6), Stream.runCollect, Effect.fork)
      yield* Effect.yieldNow()
      yield* Effect.sleep(0)
      yield* tick()
      yield* tick()
      holds.now = false
      yield* tick()
      yield* tick()
      const events = Chunk.toReadonlyArray(yield* Fiber.join(collected)).map((e) => e._tag)
      assert.deepStrictEqual(events, ["Snapshot", "Snapshot", "AlertFired", "Snapshot", "AlertResolved", "Snapshot"])
    }))

  it.scoped("a rule that throws is logged and keeps its alerts open; the monitor goes on", () =>
    Effect.gen(function*() {
      const mode = { now: "fire" as "fire" | "throw" }
      const fragile = TransactionMonitor.rule({
        name: "fragile",
        description: "scripted",
        for: "1 millis",
        evaluate: () => {
          if (mode.now === "throw") throw new Error("bug in a rule")
          return [{ transaction: "f", level: "error", value: 1, threshold: 1, message: "!" }]
        }
      })
      const { monitor, tick } = yield* scripted({ rules: [fragile] })
      yield* tick()
      yield* tick()
      mode.now = "throw"
      yield* tick()
      const alerts = yield* monitor.alerts()
      assert.deepStrictEqual(alerts.map((a) => [a.status, a.count]), [["open", 1]])
    }))

  it.effect("invalid configurations are typed errors", () =>
    Effect.gen(function*() {
      const fails = (config: TransactionMonitor.TransactionMonitorConfig) =>
        TransactionMonitor.make(config).pipe(Effect.scoped, Effect.flip, Effect.provide(Sqlite), Effect.orDie)
      const interval = yield* fails({ interval: -1 })
      assert.deepStrictEqual([interval._tag, interval.option], ["InvalidTransactionOptions", "interval"])
      assert.strictEqual((yield* fails({ capacity: 0 })).option, "capacity")
      const table = yield* fails({ persist: TransactionMonitor.persist({ table: "x; DROP TABLE y" }) })
      assert.strictEqual(table.option, "persist.table")
      const twice = yield* fails({
        rules: [...TransactionMonitor.defaultRules(), ...TransactionMonitor.defaultRules()]
      })
      assert.strictEqual(twice.option, "rules")
    }))
})
