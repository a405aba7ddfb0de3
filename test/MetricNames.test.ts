/**
 * The bound on the transaction names that get metric series of their own (`maxTransactionNames`): later names
 * share the series `"other"`, in the snapshot and the Prometheus scrape, and the first refused name is logged once.
 * The bound counts the names of a database system over the whole process (Effect's metric registry is
 * process-wide): this file runs in a process of its own (vitest isolates test files), where it alone records
 * SQLite names.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionError,
  TransactionManager,
  TransactionMetrics,
  withRetry
} from "../src/index.js"
import * as Prometheus from "../src/Prometheus.js"
import { deadlock } from "./suites/TransactionSuite.js"
import * as Databases from "./utils/databases.js"

interface Logged {
  readonly level: LogLevel.LogLevel
  readonly message: string
  readonly annotations: Record<string, unknown>
}

describe("maxTransactionNames", () => {
  it.live("names past the bound share the series \"other\"; the first refused name is logged once", () => {
    const logged: Array<Logged> = []
    const testLogger = Logger.make<unknown, void>(({ annotations, logLevel, message }) => {
      logged.push({
        level: logLevel,
        message: (Array.isArray(message) ? message : [message]).join(" "),
        annotations: Object.fromEntries(annotations)
      })
    })
    const live = TransactionManager.layer({ maxTransactionNames: 3, longRunningThreshold: "20 millis" }).pipe(
      Layer.provideMerge(Databases.sqlite()),
      Layer.merge(Prometheus.layer)
    )
    const tx = (name: string) => Transaction.atomic(Effect.void, { name })
    const warnings = () => logged.filter((l) => l.message.includes("maxTransactionNames"))
    return Effect.gen(function*() {
      for (const name of ["a", "b", "c", "d", "e"]) yield* tx(name)
      let snapshot = yield* TransactionMetrics.snapshot
      assert.deepStrictEqual(Object.keys(snapshot.byName).sort(), ["a", "b", "c", "other"])
      assert.strictEqual(snapshot.byName["other"]!.started, 2)
      assert.strictEqual(snapshot.byName["other"]!.committed, 2)
      assert.strictEqual(snapshot.byName["a"]!.started, 1)
      assert.strictEqual(snapshot.overall.started, 5)

      assert.strictEqual(warnings().length, 1)
      const [warning] = warnings()
      assert.deepStrictEqual(warning!.level, LogLevel.Warning)
      assert.include(warning!.message, "more than 3 transaction names on sqlite")
      assert.include(warning!.message, `"d"`)
      assert.strictEqual(warning!.annotations["maxTransactionNames"], 3)
      assert.strictEqual(warning!.annotations["transaction"], "d")

      // Known names keep their series; more new names, a failure, a retry and a long-running transaction all land
      // in "other", and nothing is logged again.
      yield* tx("a")
      yield* tx("f")
      yield* Effect.either(Transaction.atomic(Effect.fail("boom" as const), { name: "g" }))
      let attempts = 0
      yield* Effect.suspend(() => ++attempts < 2 ? Effect.fail(deadlock) : Effect.void).pipe(
        Transaction.atomic({ name: "h" }),
        withRetry(RetryPolicy.exponential({ base: "1 millis" }))
      )
      yield* Transaction.atomic(Effect.sleep("200 millis"), { name: "slow" })
      snapshot = yield* TransactionMetrics.snapshot
      assert.deepStrictEqual(Object.keys(snapshot.byName).sort(), ["a", "b", "c", "other"])
      assert.strictEqual(snapshot.byName["a"]!.started, 2)
      const other = snapshot.byName["other"]!
      assert.strictEqual(other.started, 2 + 1 + 1 + 2 + 1)
      assert.strictEqual(other.failed, 2)
      assert.deepStrictEqual(other.failedByError, { failure: 1, DeadlockDetected: 1 })
      assert.strictEqual(other.retries, 1)
      assert.strictEqual(other.longRunning, 1)
      assert.strictEqual(other.active, 0)
      assert.strictEqual(warnings().length, 1)

      const text = yield* Effect.flatMap(Prometheus.Prometheus, (p) => p.scrape)
      const started = text.split("\n").filter((l) => l.startsWith("transactions_started_total{"))
      assert.strictEqual(started.length, 4)
      assert.isTrue(started.some((l) => l.includes(`transaction="other"`) && l.endsWith(" 7")))
      assert.isTrue(started.some((l) => l.includes(`transaction="a"`) && l.endsWith(" 2")))
      for (const name of ["d", "e", "f", "g", "h", "slow"]) assert.notInclude(text, `transaction="${name}"`)
      const retries = text.split("\n").filter((l) => l.startsWith("transaction_retries_total{"))
      assert.strictEqual(retries.length, 1)
      assert.include(retries[0], `transaction="other"`)
      assert.include(retries[0], `error="DeadlockDetected"`)
    }).pipe(
      Effect.provide(live),
      Effect.provide(Logger.replace(Logger.defaultLogger, testLogger))
    )
  })

  it.effect("the bound is a whole number ≥ 1", () =>
    Effect.gen(function*() {
      for (const value of [0, -1, 1.5, Number.NaN, Infinity]) {
        const error = yield* TransactionManager.make({ maxTransactionNames: value }).pipe(
          Effect.provide(Databases.sqlite()),
          Effect.flip
        )
        assert.instanceOf(error, TransactionError.InvalidTransactionOptions, String(value))
        assert.strictEqual((error as TransactionError.InvalidTransactionOptions).option, "maxTransactionNames")
      }
    }))
})
