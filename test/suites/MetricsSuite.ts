/**
 * Metrics, the registry of active transactions, spans and the Prometheus endpoint, after a scripted workload whose
 * every count is known, on every database.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, TestClock } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionLayer,
  TransactionManager,
  TransactionMetrics,
  withRetry
} from "../../src/index.js"
import * as Prometheus from "../../src/Prometheus.js"
import { recordingTracer } from "../utils/tracer.js"
import type { Target } from "./TransactionSuite.js"
import { Boom, deadlock, makeTable } from "./TransactionSuite.js"

export const suite = (target: Target) => {
  const live = TransactionLayer.pipe(
    Layer.provideMerge(target.layer()),
    Layer.merge(Prometheus.layer)
  )

  describe(`${target.name}: metrics`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("after a scripted workload every counter, the histogram and the gauge hold the expected values", () =>
        Effect.gen(function*() {
          const name = `scripted_${target.name}_${Date.now().toString(36)}`
          const t = yield* makeTable("metrics")
          const tx = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Transaction.atomic(effect, { name }).pipe(Effect.either)
          // 3 commits, one of them with 2 nested blocks (2 savepoints) and a manual savepoint
          yield* tx(t.insert(1))
          yield* tx(t.insert(2))
          yield* tx(Effect.gen(function*() {
            yield* t.insert(3).pipe(Transaction.atomic())
            yield* t.insert(4).pipe(Transaction.atomic())
            yield* Transaction.savepoint()
          }))
          // 2 typed failures, 1 defect, 1 rollback-only (rolled back, not failed)
          yield* tx(Effect.fail(new Boom()))
          yield* tx(Effect.fail(new Boom()))
          yield* Effect.exit(Transaction.atomic(Effect.dieMessage("x"), { name }))
          yield* tx(Transaction.setRollbackOnly)
          // a deadlock, retried twice then committed: 3 attempts, 2 retries
          let attempts = 0
          yield* Effect.suspend(() => ++attempts < 3 ? Effect.fail(deadlock) : Effect.void).pipe(
            Transaction.atomic({ name }),
            withRetry(RetryPolicy.exponential({ base: "1 millis" }))
          )
          // a timeout
          yield* Transaction.atomic(Effect.never, { name, timeout: "50 millis" }).pipe(Effect.either)
          const snapshot = yield* TransactionMetrics.snapshot
          const figures = snapshot.byName[name]!
          assert.strictEqual(figures.started, 3 + 4 + 3 + 1)
          assert.strictEqual(figures.committed, 3 + 1)
          assert.strictEqual(figures.rolledBack, 4 + 2 + 1)
          assert.strictEqual(figures.failed, 3 + 2 + 1)
          assert.deepStrictEqual(figures.failedByError, {
            Boom: 2,
            defect: 1,
            DeadlockDetected: 2,
            TransactionTimeout: 1
          })
          assert.strictEqual(figures.deadlocks, 2)
          assert.strictEqual(figures.retries, 2)
          assert.strictEqual(figures.timeouts, 1)
          assert.strictEqual(figures.savepoints, 3)
          assert.strictEqual(figures.serializationFailures, 0)
          assert.strictEqual(figures.lockTimeouts, 0)
          assert.strictEqual(figures.active, 0)
          assert.strictEqual(figures.duration.count, 11)
          assert.isAbove(figures.duration.average, 0)
          assert.isAtLeast(figures.duration.p99, figures.duration.p50)
          assert.isAtLeast(figures.duration.max, 0.05) // the timed-out transaction ran ≥ 50 ms
          assert.closeTo(figures.successRate, 4 / 11, 1e-9)
          assert.closeTo(figures.failureRate, 6 / 11, 1e-9)

          // The same counters, scraped in the Prometheus text format.
          const prometheus = yield* Prometheus.Prometheus
          const text = yield* prometheus.scrape
          const sample = (metric: string, labels: string) => {
            const line = text.split("\n").find((l) =>
              l.startsWith(metric) && l.includes(`transaction="${name}"`) && l.includes(labels)
            )
            return line === undefined ? undefined : Number(line.split(" ").at(-1))
          }
          assert.strictEqual(sample("transactions_started_total", ""), 11)
          assert.strictEqual(sample("transactions_committed_total", ""), 4)
          assert.strictEqual(sample("transactions_failed_total", `error="Boom"`), 2)
          assert.strictEqual(sample("transaction_retries_total", `error="DeadlockDetected"`), 2)
          assert.strictEqual(sample("transaction_duration_seconds_count", `outcome="committed"`), 4)
          assert.include(text, `db_system="${target.name === "pg" ? "postgresql" : target.name}"`)
        }))

      it.scoped("the registry lists running transactions, with their depth and connection id", () =>
        Effect.gen(function*() {
          const manager = yield* TransactionManager.TransactionManager
          const inside = yield* Deferred.make<void>()
          const done = yield* Deferred.make<void>()
          const fiber = yield* Effect.gen(function*() {
            yield* Deferred.succeed(inside, undefined)
            yield* Deferred.await(done)
          }).pipe(Transaction.atomic(), Transaction.atomic({ name: "registered" }), Effect.fork)
          yield* Deferred.await(inside)
          const active = (yield* manager.active).filter((a) => a.name === "registered")
          assert.strictEqual(active.length, 1)
          assert.strictEqual(active[0]!.depth, 1)
          assert.strictEqual(active[0]!.attempt, 1)
          assert.strictEqual(active[0]!.connectionId === undefined, target.name === "sqlite")
          yield* Deferred.succeed(done, undefined)
          yield* Fiber.join(fiber)
          assert.strictEqual((yield* manager.active).filter((a) => a.name === "registered").length, 0)
        }))
    })
  })

  describe(`${target.name}: tracing`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("one span per attempt, with the transaction's attributes, savepoint and end events, statements inside", () =>
        Effect.gen(function*() {
          const { spans, tracer } = recordingTracer()
          const t = yield* makeTable("traced")
          let attempts = 0
          yield* Effect.gen(function*() {
            yield* t.insert(1).pipe(Transaction.atomic())
            if (++attempts === 1) return yield* Effect.fail(deadlock)
          }).pipe(
            Transaction.atomic({ name: "traced", isolation: "serializable" }),
            withRetry(RetryPolicy.exponential({ base: "1 millis" })),
            Effect.withTracer(tracer)
          )
          const transactions = spans.filter((s) => s.name === "effect_sql_tx.transaction")
          assert.strictEqual(transactions.length, 2)
          const [first, second] = transactions
          assert.strictEqual(first!.attributes.get("db.transaction.name"), "traced")
          assert.strictEqual(first!.attributes.get("db.transaction.isolation"), "serializable")
          assert.strictEqual(first!.attributes.get("db.transaction.read_only"), false)
          assert.strictEqual(first!.attributes.get("db.system"), target.name === "pg" ? "postgresql" : target.name)
          assert.deepStrictEqual(
            [first!.attributes.get("db.transaction.attempt"), second!.attributes.get("db.transaction.attempt")],
            [1, 2]
          )
          assert.deepStrictEqual(
            [first!.attributes.get("db.transaction.outcome"), second!.attributes.get("db.transaction.outcome")],
            ["rolled_back", "committed"]
          )
          assert.deepStrictEqual(first!.events, ["db.transaction.savepoint", "db.transaction.rollback"])
          assert.deepStrictEqual(second!.events, ["db.transaction.savepoint", "db.transaction.commit"])
          assert.isTrue(first!.exit !== undefined && first!.exit._tag === "Failure")
          assert.strictEqual(second!.attributes.get("db.transaction.savepoints"), 1)
          // The statements of the body are children of the transaction's span.
          const statements = spans.filter((s) => s.name === "sql.execute")
          assert.isAbove(statements.length, 0)
          assert.isTrue(statements.every((s) => s.parentName === "effect_sql_tx.transaction"))
        }))
    })
  })

  describe(`${target.name}: long-running transactions`, () => {
    layer(TransactionLayer.pipe(Layer.provideMerge(target.layer())))((it) => {
      it.scoped("a transaction older than the threshold is reported once, and counted", () =>
        Effect.gen(function*() {
          const manager = yield* TransactionManager.make({ longRunningThreshold: "1 second" })
          const inside = yield* Deferred.make<void>()
          const done = yield* Deferred.make<void>()
          const fiber = yield* Deferred.succeed(inside, undefined).pipe(
            Effect.zipRight(Deferred.await(done)),
            Transaction.atomic({ name: "slow_one" }),
            Effect.provideService(TransactionManager.TransactionManager, manager),
            Effect.fork
          )
          yield* Deferred.await(inside)
          assert.strictEqual((yield* TransactionManager.checkLongRunning(manager)).length, 0)
          yield* TestClock.adjust("2 seconds")
          const reported = yield* TransactionManager.checkLongRunning(manager)
          assert.deepStrictEqual(reported.map((r) => r.name), ["slow_one"])
          assert.strictEqual((yield* TransactionManager.checkLongRunning(manager)).length, 0)
          yield* Deferred.succeed(done, undefined)
          yield* Fiber.join(fiber)
          const figures = (yield* TransactionMetrics.snapshot).byName["slow_one"]
          assert.strictEqual(figures?.longRunning, 1)
          assert.isTrue(Option.isNone(yield* Transaction.current))
        }))
    })
  })
}
