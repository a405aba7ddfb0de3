/**
 * The monitor against a real database, on every database: the figures of a scripted workload, running and
 * long-running transactions with the pool's share, the history kept in the database and loaded back (with its
 * alerts, several instances and the retention), reports, and the health and recommendations of a failing workload.
 * (The monitor's logic under scripted readings: test/Monitor.test.ts.)
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Deferred, Effect, Fiber, Layer } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionLayer,
  TransactionManager,
  TransactionMonitor,
  withRetry
} from "../../src/index.js"
import { uniqueTable } from "../utils/databases.js"
import type { Target } from "./TransactionSuite.js"
import { Boom, deadlock, makeTable } from "./TransactionSuite.js"

const countFields: ReadonlyArray<TransactionMonitor.CountField> = [
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

/** A rule whose condition always holds on all transactions, and fires at its first check. */
const always = TransactionMonitor.rule({
  name: "always",
  description: "Always holds",
  for: 0,
  evaluate: () => [{ transaction: TransactionMonitor.overall, level: "warning", value: 1, threshold: 1, message: "on" }]
})

/** The figures of a name in a snapshot, failing the test when the name is missing. */
const figuresOf = (snapshot: TransactionMonitor.MonitorSnapshot, name: string): TransactionMonitor.MonitorFigures => {
  const figures = snapshot.byName[name]
  assert.isDefined(figures, `expected "${name}" in the snapshot`)
  return figures!
}

export const suite = (target: Target) => {
  const live = TransactionLayer.pipe(Layer.provideMerge(target.layer()))
  // The pool size the test layers configure (databases.ts); SQLite has one connection.
  const poolSize = target.name === "sqlite" ? 1 : 8

  describe(`${target.name}: monitor`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("snapshot figures of a real workload", () =>
        Effect.gen(function*() {
          const name = uniqueTable(`snap_${target.name}`)
          const t = yield* makeTable("mon_snap")
          const monitor = yield* TransactionMonitor.make({ interval: "1 hour" })
          const tx = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Transaction.atomic(effect, { name }).pipe(Effect.either)
          // 12 commits
          for (let i = 1; i <= 12; i++) yield* tx(t.insert(i))
          // 3 typed failures: two tagged, one plain value (recorded as "failure")
          yield* tx(Effect.zipRight(t.insert(100), Effect.fail(new Boom())))
          yield* tx(Effect.fail(new Boom()))
          yield* tx(Effect.fail("plain"))
          // 1 commit with 2 nested blocks (2 savepoints)
          yield* tx(Effect.gen(function*() {
            yield* t.insert(200).pipe(Transaction.atomic())
            yield* t.insert(201).pipe(Transaction.atomic())
          }))
          // a deadlock, retried once then committed: 2 attempts, 1 retry
          let attempts = 0
          yield* Effect.suspend((): Effect.Effect<unknown, unknown> =>
            ++attempts < 2 ? Effect.fail(deadlock) : t.insert(300)
          ).pipe(
            Transaction.atomic({ name }),
            withRetry(RetryPolicy.exponential({ base: "1 millis" }))
          )
          assert.strictEqual(attempts, 2)

          const snapshot = yield* monitor.takeSnapshot
          assert.strictEqual(snapshot.instance, monitor.instance)
          assert.strictEqual(snapshot.dbSystem, target.name === "pg" ? "postgresql" : target.name)
          assert.isAbove(snapshot.seconds, 0)
          const figures = figuresOf(snapshot, name)
          assert.deepStrictEqual(figures.interval, {
            started: 12 + 3 + 1 + 2,
            committed: 12 + 1 + 1,
            rolledBack: 3 + 1,
            failed: 3 + 1,
            deadlocks: 1,
            serializationFailures: 0,
            lockTimeouts: 0,
            timeouts: 0,
            retries: 1,
            savepoints: 2,
            hookFailures: 0,
            longRunning: 0,
            savepointBudgetExceeded: 0
          })
          // The name is new to this test: its totals are the interval's.
          assert.deepStrictEqual(figures.totals, figures.interval)
          assert.deepStrictEqual(figures.failedByError, { Boom: 2, failure: 1, DeadlockDetected: 1 })
          assert.strictEqual(figures.successRate, 14 / 18)
          assert.strictEqual(figures.failureRate, 4 / 18)
          assert.closeTo(figures.perSecond.started, 18 / snapshot.seconds, 1e-9)
          assert.strictEqual(figures.duration.count, 18)
          assert.strictEqual(figures.duration.buckets.reduce((a, b) => a + b, 0), 18)
          assert.isAbove(figures.duration.average, 0)
          assert.isAbove(figures.duration.p50, 0)
          assert.isAtMost(figures.duration.p50, figures.duration.p95)
          assert.isAtMost(figures.duration.p95, figures.duration.p99)
          assert.isAtMost(figures.duration.p99, figures.duration.max)
          assert.isAtMost(figures.duration.average, figures.duration.max)
          assert.strictEqual(figures.active, 0)
          assert.strictEqual(figures.oldestAge, 0)
          // The overall figures include this name's (and whatever else ran on this database system meanwhile).
          for (const field of countFields) {
            assert.isAtLeast(snapshot.overall.totals[field], snapshot.overall.interval[field], field)
            assert.isAtLeast(snapshot.overall.interval[field], figures.interval[field], field)
          }
          assert.isAtLeast(snapshot.overall.duration.count, 18)
          assert.strictEqual(snapshot.active.filter((a) => a.name === name).length, 0)
          assert.deepStrictEqual(yield* monitor.latest, snapshot)

          // Nothing new for the name: the next snapshot leaves it out, the ring keeps both.
          const quiet = yield* monitor.takeSnapshot
          assert.isFalse(name in quiet.byName)
          assert.isAtLeast(quiet.takenAt, snapshot.takenAt)
          assert.deepStrictEqual(
            (yield* monitor.history()).map((s) => s.takenAt),
            [snapshot.takenAt, quiet.takenAt]
          )
        }))

      it.scoped("history kept in the database and loaded back", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const table = uniqueTable("mon_hist")
          yield* Effect.acquireRelease(
            Effect.void,
            () => Effect.ignore(sql.unsafe(`DROP TABLE IF EXISTS ${table}`))
          )
          const persist = TransactionMonitor.persist({ table, retention: "14 days" })
          const instance = `${table}-a`
          const other = `${table}-c`
          const name = uniqueTable(`hist_${target.name}`)
          const t = yield* makeTable("mon_hist_rows")
          const tx = (effect: Effect.Effect<unknown, unknown, TransactionManager.TransactionManager>) =>
            Transaction.atomic(effect, { name }).pipe(Effect.either)

          // Monitor A: two snapshots with transactions before each, and an alert that fires at the first.
          const a = yield* Effect.scoped(Effect.gen(function*() {
            const monitor = yield* TransactionMonitor.make({ interval: "1 hour", instance, persist, rules: [always] })
            yield* tx(t.insert(1))
            yield* tx(Effect.fail(new Boom()))
            const first = yield* monitor.takeSnapshot
            yield* tx(t.insert(2))
            const second = yield* monitor.takeSnapshot
            return { snapshots: [first, second], alerts: yield* monitor.alerts() }
          }))
          assert.strictEqual(figuresOf(a.snapshots[0]!, name).interval.started, 2)
          assert.strictEqual(figuresOf(a.snapshots[1]!, name).interval.committed, 1)
          assert.strictEqual(a.alerts.length, 1)
          const fired = a.alerts[0]!
          assert.strictEqual(fired.status, "open")
          assert.strictEqual(fired.firstFiredAt, a.snapshots[0]!.takenAt)

          // Monitor C, another instance, writes to the same table.
          const c = yield* Effect.scoped(Effect.gen(function*() {
            const monitor = yield* TransactionMonitor.make({ interval: "1 hour", instance: other, persist, rules: [] })
            yield* tx(t.insert(3))
            return yield* monitor.takeSnapshot
          }))
          assert.strictEqual(figuresOf(c, name).interval.committed, 1)

          // Monitor B, the same instance as A, restarted: A's history and alerts are loaded back.
          const b = yield* TransactionMonitor.make({ interval: "1 hour", instance, persist, rules: [always] })
          const history = yield* b.history()
          assert.deepStrictEqual(history.map((s) => s.takenAt), a.snapshots.map((s) => s.takenAt))
          assert.deepStrictEqual(history.map((s) => s.byName[name]), a.snapshots.map((s) => s.byName[name]))
          assert.deepStrictEqual(history, a.snapshots)
          assert.deepStrictEqual(yield* b.latest, a.snapshots[1])
          const restored = yield* b.alerts({ status: "open" })
          assert.strictEqual(restored.length, 1)
          assert.strictEqual(restored[0]!.id, fired.id)
          assert.strictEqual(restored[0]!.key, fired.key)
          assert.strictEqual(restored[0]!.rule, "always")
          assert.strictEqual(restored[0]!.level, "warning")
          assert.strictEqual(restored[0]!.instance, instance)
          assert.strictEqual(restored[0]!.firstFiredAt, fired.firstFiredAt)

          // Every instance's rows with "*", one other instance's by its name.
          const all = yield* b.history({ instance: "*" })
          assert.deepStrictEqual(
            all.map((s) => [s.instance, s.takenAt]),
            [...a.snapshots, c].map((s) => [s.instance, s.takenAt]).sort((x, y) => Number(x[1]) - Number(y[1]))
          )
          assert.deepStrictEqual(all.find((s) => s.instance === other), c)
          assert.deepStrictEqual(yield* b.history({ instance: other }), [c])

          // The restored alert goes on (the rule still holds): no second alert, the same id.
          const next = yield* b.takeSnapshot
          const alerts = yield* b.alerts()
          assert.deepStrictEqual(alerts.map((alert) => [alert.id, alert.status, alert.count]), [[fired.id, "open", 1]])
          assert.deepStrictEqual(
            (yield* b.history()).map((s) => s.takenAt),
            [...a.snapshots, next].map((s) => s.takenAt)
          )

          // Retention: rows older than 14 days are deleted when a monitor starts; younger ones stay.
          const day = 24 * 3_600_000
          const old = `${table}-old`
          const kept = `${table}-kept`
          const now = Date.now()
          yield* sql`INSERT INTO ${sql(table)} ${
            sql.insert([
              { instance: old, taken_at: now - 20 * day, kind: "snapshot", item: "*", payload: "{}" },
              { instance: kept, taken_at: now - 10 * day, kind: "snapshot", item: "*", payload: "{}" }
            ])
          }`
          const countOf = (instance: string) =>
            Effect.map(
              sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM ${sql(table)} WHERE instance = ${instance}`,
              (rows) => Number(rows[0]!.n)
            )
          assert.deepStrictEqual([yield* countOf(old), yield* countOf(kept)], [1, 1])
          yield* Effect.scoped(TransactionMonitor.make({ interval: "1 hour", instance: `${table}-d`, persist }))
          assert.deepStrictEqual([yield* countOf(old), yield* countOf(kept)], [0, 1])
          // A's two snapshots (the overall row and one per name each) are still there.
          assert.isAtLeast(yield* countOf(instance), 4)
        }))

      it.scoped("report: CSV parsed back equals the JSON report", () =>
        Effect.gen(function*() {
          const name = uniqueTable(`report_${target.name}`)
          const t = yield* makeTable("mon_report")
          const monitor = yield* TransactionMonitor.make({ interval: "1 hour", rules: [] })
          const tx = (effect: Effect.Effect<unknown, unknown, TransactionManager.TransactionManager>) =>
            Transaction.atomic(effect, { name }).pipe(Effect.either)
          for (let i = 1; i <= 5; i++) yield* tx(t.insert(i))
          yield* tx(Effect.fail(new Boom()))
          yield* monitor.takeSnapshot
          for (let i = 6; i <= 8; i++) yield* tx(t.insert(i))
          yield* tx(Effect.fail("plain"))
          yield* tx(t.insert(9).pipe(Transaction.atomic()))
          yield* monitor.takeSnapshot

          const csv = yield* monitor.report({ format: "csv" })
          const json = JSON.parse(yield* monitor.report({ format: "json" })) as TransactionMonitor.MonitorReport
          assert.strictEqual(json.snapshots.length, 2)
          assert.strictEqual(json.instance, monitor.instance)
          assert.deepStrictEqual(json.snapshots.map((s) => s.byName[name]?.interval.started), [6, 5])
          assert.isTrue(
            csv.startsWith(
              "taken_at,instance,db_system,transaction,seconds,started,committed,rolled_back,failed,deadlocks,"
            ),
            csv.slice(0, 200)
          )
          const rows = parse(csv, { columns: true }) as Array<Record<string, string>>
          const expected = json.snapshots.flatMap((s) =>
            [[TransactionMonitor.overall, s.overall] as const, ...Object.entries(s.byName)].map(
              ([transaction, figures]) => ({ snapshot: s, transaction, figures })
            )
          )
          assert.strictEqual(rows.length, expected.length)
          assert.isAtLeast(rows.length, 4)
          for (const { figures, snapshot, transaction } of expected) {
            const takenAt = new Date(snapshot.takenAt).toISOString()
            const found = rows.filter((row) => row.taken_at === takenAt && row.transaction === transaction)
            assert.strictEqual(found.length, 1, `${takenAt} ${transaction}`)
            const row = found[0]!
            assert.strictEqual(row.instance, snapshot.instance)
            assert.strictEqual(row.db_system, snapshot.dbSystem)
            const numbers: Record<string, number> = {
              seconds: snapshot.seconds,
              committed_per_second: figures.perSecond.committed,
              success_rate: figures.successRate,
              failure_rate: figures.failureRate,
              duration_count: figures.duration.count,
              duration_average: figures.duration.average,
              duration_p50: figures.duration.p50,
              duration_p95: figures.duration.p95,
              duration_p99: figures.duration.p99,
              duration_max: figures.duration.max,
              active: figures.active,
              oldest_age: figures.oldestAge
            }
            for (const field of countFields) {
              numbers[field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = figures.interval[field]
            }
            for (const column in numbers) {
              assert.isDefined(row[column], column)
              assert.strictEqual(Number(row[column]), numbers[column], `${transaction} ${column}`)
            }
          }
          // The name's rows hold the workload's figures.
          const mine = rows.filter((row) => row.transaction === name)
          assert.deepStrictEqual(mine.map((row) => [row.started, row.committed, row.failed, row.savepoints]), [
            ["6", "5", "1", "0"],
            ["5", "4", "1", "1"]
          ])
        }))

      it.scoped("health and recommendations of a failing workload", () =>
        Effect.gen(function*() {
          const name = uniqueTable(`health_${target.name}`)
          const t = yield* makeTable("mon_health")
          const rules = TransactionMonitor.defaultRules({ "failure-rate": { for: "1 millis", minVolume: 5 } })
            .filter((rule) => rule.name === "failure-rate")
          const monitor = yield* TransactionMonitor.make({ interval: "1 hour", rules })
          assert.strictEqual((yield* monitor.health).status, "healthy")
          const tx = (effect: Effect.Effect<unknown, unknown, TransactionManager.TransactionManager>) =>
            Transaction.atomic(effect, { name }).pipe(Effect.either)
          // 10 transactions, 5 failed: 3 Boom, 2 plain failures.
          for (let i = 1; i <= 5; i++) yield* tx(t.insert(i))
          for (let i = 0; i < 3; i++) yield* tx(Effect.fail(new Boom()))
          for (let i = 0; i < 2; i++) yield* tx(Effect.fail("plain"))

          // First check: the condition holds, but not yet for `for`.
          const first = yield* monitor.takeSnapshot
          assert.strictEqual(figuresOf(first, name).failureRate, 0.5)
          assert.deepStrictEqual(yield* monitor.alerts({ transaction: name }), [])
          yield* Effect.sleep("20 millis")
          // Second check, ≥ `for` later, the window still holding the failures: it fires.
          yield* monitor.takeSnapshot
          const alerts = yield* monitor.alerts({ transaction: name })
          assert.strictEqual(alerts.length, 1)
          const alert = alerts[0]!
          assert.strictEqual(alert.rule, "failure-rate")
          assert.strictEqual(alert.status, "open")
          assert.strictEqual(alert.level, "critical") // 50 % ≥ the critical threshold (25 %)
          assert.strictEqual(alert.value, 0.5)
          assert.strictEqual(alert.threshold, 0.25)

          const health = yield* monitor.health
          assert.strictEqual(health.status, "unhealthy")
          assert.strictEqual(health.httpStatus, 503)
          assert.isAtMost(health.score, 50)
          assert.isAtLeast(health.openAlerts.critical, 1)
          assert.isTrue(
            health.deductions.some((d) => d.reason.includes("failure-rate") && d.points === 50),
            JSON.stringify(health.deductions)
          )

          const recommendations = yield* monitor.recommendations
          const mine = recommendations.filter((r) => r.rule === "failure-rate" && r.transaction === name)
          assert.strictEqual(mine.length, 1)
          const recommendation = mine[0]!
          assert.strictEqual(recommendation.level, "critical")
          assert.strictEqual(recommendation.alertId, alert.id)
          assert.strictEqual(recommendation.title, "Transactions are failing")
          assert.include(recommendation.advice, "most frequent errors: Boom ×3, failure ×2")
          assert.isAbove(recommendation.impact, 0)
          assert.isAtMost(recommendation.impact, 50)
        }))
    })
  })

  describe(`${target.name}: monitor, running transactions`, () => {
    const manager = TransactionManager.layer({ longRunningThreshold: "200 millis" }).pipe(
      Layer.provideMerge(target.layer())
    )
    layer(manager, { excludeTestServices: true })((it) => {
      it.scoped("active transactions and long-running", () =>
        Effect.gen(function*() {
          const name = uniqueTable(`active_${target.name}`)
          const manager = yield* TransactionManager.TransactionManager
          const monitor = yield* TransactionMonitor.make({ interval: "1 hour", rules: [] })
          const inside = yield* Deferred.make<void>()
          const done = yield* Deferred.make<void>()
          const fiber = yield* Deferred.succeed(inside, undefined).pipe(
            Effect.zipRight(Deferred.await(done)),
            Transaction.atomic(),
            Transaction.atomic({ name }),
            Effect.fork
          )
          yield* Deferred.await(inside)
          yield* Effect.sleep("400 millis")
          // The manager's watcher has flagged it by now, or this check does: counted once either way.
          yield* TransactionManager.checkLongRunning(manager)

          const snapshot = yield* monitor.takeSnapshot
          const listed = snapshot.active.filter((a) => a.name === name)
          assert.strictEqual(listed.length, 1)
          const view = listed[0]!
          assert.strictEqual(view.depth, 1)
          assert.strictEqual(view.attempt, 1)
          assert.isTrue(view.longRunning)
          assert.isAtLeast(view.age, 0.2)
          if (target.name === "sqlite") assert.isUndefined(view.connectionId)
          else assert.isNumber(view.connectionId)
          assert.isAtLeast(snapshot.overall.active, 1)
          assert.isAtLeast(snapshot.longRunning, 1)
          const figures = figuresOf(snapshot, name)
          assert.strictEqual(figures.active, 1)
          assert.isAtLeast(figures.oldestAge, 0.2)
          assert.strictEqual(figures.oldestAge, view.age)
          assert.strictEqual(figures.interval.started, 1)
          assert.strictEqual(figures.interval.committed, 0)
          assert.strictEqual(figures.interval.longRunning, 1)
          assert.isDefined(snapshot.pool)
          assert.strictEqual(snapshot.pool!.size, poolSize)
          assert.isAtLeast(snapshot.pool!.inTransactions, 1)
          assert.strictEqual(snapshot.pool!.utilization, snapshot.pool!.inTransactions / poolSize)

          yield* Deferred.succeed(done, undefined)
          yield* Fiber.join(fiber)
          const after = yield* monitor.takeSnapshot
          assert.strictEqual(after.active.filter((a) => a.name === name).length, 0)
          const ended = figuresOf(after, name)
          assert.strictEqual(ended.active, 0)
          assert.strictEqual(ended.oldestAge, 0)
          assert.strictEqual(ended.interval.started, 0)
          assert.strictEqual(ended.interval.committed, 1)
          assert.strictEqual(ended.duration.count, 1)
          assert.isAtLeast(ended.duration.max, 0.4)
        }))
    })
  })
}
