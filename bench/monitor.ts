/**
 * The monitor's cost: what a snapshot and a rule check take, and the memory its history holds. `npm run bench`
 * runs it with the SQLite scenarios (`--only monitor` for it alone); `npx tsx bench/monitor.ts [--quick]` runs it
 * by itself (after `npm run build`).
 *
 * The budget of the issue: with 50 transaction names (and 360 snapshots of them, the default ring) and 1000 alerts in
 * the history, a snapshot under 1 ms and a rule check under 0.5 ms; memory bounded by the ring sizes.
 *
 * Two monitors over one SQLite database in memory watch the same workload, their snapshots taken by hand (their
 * `interval` is an hour) on a clock of their own that moves 10 s per snapshot, as at the default interval: `plain`
 * with the default rules, `alerting` with a rule more, which fires and resolves an alert per name every 4 snapshots
 * (a new alert each time) so that its alert history stays full at 1000. Between two snapshots each of the 50 names
 * runs one transaction (1 in 25 fails), so that every snapshot carries the 50 names.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Clock, Data, Effect, Layer, ManagedRuntime } from "effect"
import * as Url from "node:url"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import type * as Library from "../src/index.js"
import type * as Rules from "../src/internal/monitor/rules.js"
import type * as Snapshot from "../src/internal/monitor/snapshot.js"

/** The library as it ships (see bench/index.ts), and two internal modules, to time a rule check by itself. */
const load = <A>(path: string): Promise<A> =>
  import(new URL(`../dist/${path}`, import.meta.url).href).catch((error: unknown) => {
    throw new Error(`the compiled library is missing: run \`npm run build\` first (${String(error)})`)
  })
const { Transaction, TransactionLayer, TransactionManager, TransactionMonitor } = await load<typeof Library>(
  "index.js"
)
const { aggregate } = await load<typeof Rules>("internal/monitor/rules.js")
const { diff, readMetrics } = await load<typeof Snapshot>("internal/monitor/snapshot.js")

type MonitorSnapshot = Library.TransactionMonitor.MonitorSnapshot
type RuleContext = Library.TransactionMonitor.RuleContext
type WindowFigures = Library.TransactionMonitor.WindowFigures

class Boom extends Data.TaggedError("Boom") {}

const intervalMillis = 10_000
const capacity = 360

const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)
const quantile = (values: ReadonlyArray<number>, q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  const at = (sorted.length - 1) * q
  const low = Math.floor(at)
  return sorted[low]! + (sorted[Math.ceil(at)]! - sorted[low]!) * (at - low)
}
const ms = (value: number) => Number(value.toFixed(3))
const mb = (bytes: number) => Number((bytes / 1024 / 1024).toFixed(1))

/** `global.gc`, exposed at run time when node was started without `--expose-gc`. */
const gc: ((options?: { readonly type?: "major" | "minor" }) => void) | undefined = (() => {
  if (typeof globalThis.gc === "function") {
    return globalThis.gc as (options?: { readonly type?: "major" | "minor" }) => void
  }
  try {
    V8.setFlagsFromString("--expose-gc")
    return Vm.runInNewContext("gc")
  } catch {
    return undefined
  }
})()
const heapUsed = () => {
  gc?.()
  gc?.()
  return process.memoryUsage().heapUsed
}

/** The monitors' clock: `now` moves only when the bench moves it. */
let now = Date.now()
const realClock = Clock.make()
const clock: Clock.Clock = {
  [Clock.ClockTypeId]: Clock.ClockTypeId,
  unsafeCurrentTimeMillis: () => now,
  currentTimeMillis: Effect.sync(() => now),
  unsafeCurrentTimeNanos: () => BigInt(now) * 1_000_000n,
  currentTimeNanos: Effect.sync(() => BigInt(now) * 1_000_000n),
  sleep: (duration) => realClock.sleep(duration)
}

const names = Array.from({ length: 50 }, (_, i) => `monitor-bench-${String(i).padStart(2, "0")}`)

/**
 * A name's condition holds for 2 snapshots out of 4 (names out of phase): 12 or 13 alerts fire, 12 or 13 are
 * updated and 12 or 13 resolve at each check. The figure (the cycle) makes each firing a new alert rather than the
 * reopening of the previous one (the de-duplication window is 5 minutes).
 */
const flapping = TransactionMonitor.rule({
  name: "bench-flapping",
  description: "Fires and resolves an alert per name every 4 snapshots",
  for: "0 millis",
  evaluate: (history) => {
    const latest = history[history.length - 1]
    if (latest === undefined) return []
    const step = Math.round(latest.takenAt / intervalMillis)
    return names.flatMap((name, i) =>
      ((step + i) >> 1) % 2 === 0
        ? [{
          transaction: name,
          level: "warning" as const,
          value: 1,
          threshold: 1,
          message: "flapping",
          figure: `${(step + i) >> 2}`
        }]
        : []
    )
  }
})

/**
 * Runs the monitor bench; `quick` takes fewer timed snapshots and checks. Returns the figures (milliseconds, MB).
 */
export const monitorBench = async (options: { readonly quick?: boolean } = {}) => {
  const iterations = options.quick === true ? 60 : 400
  const memorySnapshots = options.quick === true ? 1000 : 2000
  const runtime = ManagedRuntime.make(
    TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })))
  )
  const program = Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const manager = yield* TransactionManager.TransactionManager
    let round = 0
    /** One transaction per name, 1 in 25 failing. */
    const workload = Effect.suspend(() => {
      round++
      return Effect.forEach(
        names,
        (name, i) => {
          const body: Effect.Effect<unknown, unknown> = (i + round) % 25 === 0 ? Effect.fail(new Boom()) : sql`SELECT 1`
          return Effect.ignore(Transaction.atomic(body, { name }))
        },
        { discard: true }
      )
    })
    const make = (config: Library.TransactionMonitor.TransactionMonitorConfig) =>
      Effect.withClock(TransactionMonitor.make({ interval: "1 hour", ...config }), clock)
    const alertingRules = [...TransactionMonitor.defaultRules(), flapping]
    /** A round of transactions, then a snapshot by each monitor, 10 s later. */
    const step = (monitors: ReadonlyArray<Library.TransactionMonitor.TransactionMonitor>) =>
      Effect.gen(function*() {
        yield* workload
        now += intervalMillis
        for (const monitor of monitors) yield* monitor.takeSnapshot
      })
    for (let i = 0; i < 20; i++) yield* workload

    const timings = yield* Effect.scoped(Effect.gen(function*() {
      const plain = yield* make({})
      const alerting = yield* make({ rules: alertingRules })
      // A full ring of 360 snapshots of the 50 names.
      for (let i = 0; i < capacity; i++) yield* step([plain, alerting])
      const state = {
        names: Object.keys((yield* plain.latest)!.byName).length,
        ring: (yield* plain.history()).length,
        alerts: (yield* alerting.alerts()).length,
        openAlerts: (yield* alerting.alerts({ status: "open" })).length
      }

      // The default rules' check as the monitor makes it: a context whose windows are summed once per length (as
      // src/internal/monitor/monitor.ts's `contextOf`), then every rule's `evaluate`.
      const rules = TransactionMonitor.defaultRules()
      const contextOf = (history: ReadonlyArray<MonitorSnapshot>): RuleContext => {
        const windows = new Map<number, ReadonlyMap<string, WindowFigures>>()
        return {
          window: (millis) => {
            let found = windows.get(millis)
            if (found === undefined) windows.set(millis, found = aggregate(history, millis))
            return found
          },
          latest: history[history.length - 1],
          longRunningThreshold: manager.longRunningThreshold
        }
      }
      let conditions = 0
      let checks = 0
      const checkRules = (history: ReadonlyArray<MonitorSnapshot>) => {
        const context = contextOf(history)
        for (const rule of rules) conditions += rule.evaluate(history, context).length
        checks++
      }

      // (a) Right after each round of transactions, in rotating order: a whole snapshot (read, diff, rule check, alert
      // book, publish) without and with 1000 alerts, and a rule check over a ring of 360 snapshots of 50 names; then
      // the parts of a snapshot apart: the registry read, the diff. The bench keeps that ring as a monitor keeps its
      // own: one array, grown by the snapshot of the bench's read and diff, its oldest dropped. Every other 3 rounds,
      // each is timed after a minor GC, so that the garbage of the transactions is not collected in the timed section
      // (a scavenge of this heap takes milliseconds); the other rounds, as it falls.
      const parts = ["snapshot", "snapshotWithAlerts", "rules", "read", "diff"] as const
      const empty = () =>
        Object.fromEntries(parts.map((part) => [part, [] as Array<number>])) as Record<
          typeof parts[number],
          Array<number>
        >
      const samples = { collected: empty(), asItFalls: empty() }
      let into = samples.collected
      const timed = <A, E, R>(part: typeof parts[number], effect: Effect.Effect<A, E, R>) =>
        Effect.suspend(() => {
          if (into === samples.collected) gc?.({ type: "minor" })
          const start = performance.now()
          return Effect.map(effect, (a) => {
            into[part].push(performance.now() - start)
            return a
          })
        })
      const ring = [...(yield* plain.history())]
      const tasks = [
        timed("snapshot", plain.takeSnapshot),
        timed("snapshotWithAlerts", alerting.takeSnapshot),
        timed("rules", Effect.sync(() => checkRules(ring)))
      ]
      const source = readMetrics(manager.dialect.dbSystem, manager.active)
      let previous = yield* source
      for (let i = 0; i < iterations; i++) {
        into = gc !== undefined && Math.floor(i / tasks.length) % 2 === 0 ? samples.collected : samples.asItFalls
        yield* workload
        now += intervalMillis
        for (let k = 0; k < tasks.length; k++) yield* tasks[(i + k) % tasks.length]!
        const reading = yield* timed("read", source)
        const snapshot = yield* timed(
          "diff",
          Effect.sync(() =>
            diff(previous, reading, {
              takenAt: now,
              seconds: intervalMillis / 1000,
              instance: "bench",
              dbSystem: manager.dialect.dbSystem,
              longRunningMillis: 5000,
              poolSize: undefined
            })
          )
        )
        previous = reading
        ring.push(snapshot)
        if (ring.length > capacity) ring.splice(0, ring.length - capacity)
      }

      // (b) In a loop (hot caches): the rule check, rule by rule, and the window sums, each over a copy of the ring (a
      // new array: the sums are made from scratch).
      const hotSamples: Array<number> = []
      const perRule = new Map<string, Array<number>>(rules.map((rule) => [rule.name, []]))
      const windowSamples = new Map<number, Array<number>>([[1, []], [60_000, []], [300_000, []]])
      for (let i = 0; i < Math.max(iterations, 200); i++) {
        let history = [...ring]
        const start = performance.now()
        checkRules(history)
        hotSamples.push(performance.now() - start)
        // Each rule alone, with the windows it needs already summed (as when rules before it asked for them).
        history = [...ring]
        const context = contextOf(history)
        for (const rule of rules) rule.evaluate(history, context)
        for (const rule of rules) {
          const ruleStart = performance.now()
          rule.evaluate(history, context)
          perRule.get(rule.name)!.push(performance.now() - ruleStart)
        }
        for (const [millis, values] of windowSamples) {
          history = [...ring]
          const windowStart = performance.now()
          aggregate(history, millis)
          values.push(performance.now() - windowStart)
        }
      }

      const figuresOf = (samples: Record<typeof parts[number], Array<number>>) => ({
        snapshotMs: ms(median(samples.snapshot)),
        snapshotP90Ms: ms(quantile(samples.snapshot, 0.9)),
        snapshotWithAlertsMs: ms(median(samples.snapshotWithAlerts)),
        snapshotWithAlertsP90Ms: ms(quantile(samples.snapshotWithAlerts, 0.9)),
        rulesCheckMs: ms(median(samples.rules)),
        rulesCheckP90Ms: ms(quantile(samples.rules, 0.9)),
        readMs: ms(median(samples.read)),
        diffMs: ms(median(samples.diff))
      })
      return {
        names: state.names,
        ringSnapshots: state.ring,
        alertsInHistory: state.alerts,
        openAlerts: state.openAlerts,
        iterations,
        ...figuresOf(gc === undefined ? samples.asItFalls : samples.collected),
        rulesCheckHotMs: ms(median(hotSamples)),
        conditionsPerCheck: Number((conditions / checks).toFixed(1)),
        perRuleMs: Object.fromEntries([...perRule].map(([name, values]) => [name, ms(median(values))])),
        windowMs: Object.fromEntries(
          [...windowSamples].map(([millis, values]) => [`${millis} ms`, ms(median(values))])
        ),
        asItFalls: gc === undefined ? undefined : figuresOf(samples.asItFalls)
      }
    }))

    // Memory: a new monitor as the alerting one (capacity 360, alert history 1000), the others gone, takes
    // `memorySnapshots` snapshots.
    const memory = yield* Effect.scoped(Effect.gen(function*() {
      const heap: Record<string, number> = { before: mb(heapUsed()) }
      const monitor = yield* make({ rules: alertingRules })
      let taken = 0
      for (const mark of [400, memorySnapshots]) {
        while (taken < mark) {
          yield* step([monitor])
          taken++
        }
        heap[`after ${mark} snapshots`] = mb(heapUsed())
      }
      const history = yield* monitor.history()
      return {
        heapMB: heap,
        gc: gc !== undefined,
        kept: {
          ring: history.length,
          alerts: (yield* monitor.alerts()).length,
          ringJsonMB: mb(JSON.stringify(history).length)
        }
      }
    }))
    return { ...timings, ...memory }
  })
  try {
    return await runtime.runPromise(Effect.scoped(program))
  } finally {
    await runtime.dispose()
  }
}

/** What `monitorBench` measures. */
export type MonitorBenchFigures = Awaited<ReturnType<typeof monitorBench>>

/** Prints the figures `monitorBench` returned. */
export const printMonitorBench = (figures: MonitorBenchFigures): void => {
  console.log(
    `\nmonitor: snapshot (${figures.names} names, ${figures.ringSnapshots} in the ring) ${figures.snapshotMs} ms ` +
      `median (p90 ${figures.snapshotP90Ms}), rules check ${figures.rulesCheckMs} ms ` +
      `(p90 ${figures.rulesCheckP90Ms}, from scratch in a loop ${figures.rulesCheckHotMs}), with ` +
      `${figures.alertsInHistory} alerts ` +
      `${figures.snapshotWithAlertsMs} ms (p90 ${figures.snapshotWithAlertsP90Ms}); budget: snapshot < 1 ms, rules ` +
      "< 0.5 ms"
  )
  const falls = figures.asItFalls
  if (falls !== undefined) {
    console.log(
      `monitor: those were timed after a minor GC; as it falls (the transactions' garbage collected in them): ` +
        `snapshot ${falls.snapshotMs} ms (p90 ${falls.snapshotP90Ms}), rules ${falls.rulesCheckMs} ms (p90 ` +
        `${falls.rulesCheckP90Ms}), with alerts ${falls.snapshotWithAlertsMs} ms (p90 ${falls.snapshotWithAlertsP90Ms})`
    )
  }
  console.log(
    `monitor: parts of a snapshot: registry read ${figures.readMs} ms, diff ${figures.diffMs} ms, window sums`,
    figures.windowMs,
    "rule by rule (windows summed)",
    figures.perRuleMs
  )
  console.log(
    `monitor: heap used (MB${figures.gc ? ", after gc" : ", no gc"})`,
    figures.heapMB,
    `kept: ${figures.kept.ring} snapshots (${figures.kept.ringJsonMB} MB as JSON), ${figures.kept.alerts} alerts`
  )
}

if (process.argv[1] !== undefined && import.meta.url === Url.pathToFileURL(process.argv[1]).href) {
  printMonitorBench(await monitorBench({ quick: process.argv.includes("--quick") }))
}
