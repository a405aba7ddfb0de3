/**
 * Memory does not grow with the number of distinct transaction names: names past the manager's
 * `maxTransactionNames` share the series `"other"`. Measured on the heap after a full collection (`global.gc`, which
 * vitest.config.ts exposes to the test processes with `--expose-gc`). Without the bound, each new name keeps about
 * 14 to 17 KB for ever (Effect's metric registry and the recorders): 10,000 names are about 140 MB.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, it } from "@effect/vitest"
import { Effect, Layer, Logger, LogLevel, Metric } from "effect"
import { Transaction, TransactionManager, TransactionMetrics } from "../src/index.js"

const gc = (globalThis as { readonly gc?: () => void }).gc

const heapAfterGc = (): number => {
  // Twice: the first collection may leave what finalization and weak maps release for the second.
  gc!()
  gc!()
  return process.memoryUsage().heapUsed
}

const live = TransactionManager.layer().pipe(
  Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" }))
)

const warmUp = 5_000
const total = 100_000
const chunk = 10_000
/** Far below the 140 MB that each chunk of 10,000 new names would keep without the bound. */
const bound = 8 * 1024 * 1024

it.live("100,000 transactions with unique names leave the heap and the metric registry where they were", () =>
  Effect.gen(function*() {
    assert.isFunction(gc, "global.gc is missing: run the test processes with --expose-gc (vitest.config.ts)")
    const manager = yield* TransactionManager.TransactionManager
    let n = 0
    // An order id in the name, the mistake the bound is for.
    const transactions = (count: number) => {
      const end = n + count
      return Effect.whileLoop({
        while: () => n < end,
        body: () => Transaction.atomic(Effect.void, { name: `order-${++n}` }),
        step: () => {}
      })
    }
    // Past the bound (200 names) and through the JIT before the baseline.
    yield* transactions(warmUp)
    const series = Metric.unsafeSnapshot().length
    const baseline = heapAfterGc()
    const growth: Array<number> = []
    while (n < warmUp + total) {
      yield* transactions(chunk)
      growth.push(heapAfterGc() - baseline)
      // Fail at the first chunk that grew past the bound rather than after gigabytes.
      assert.isBelow(growth.at(-1)!, bound, `heap growth after ${n - warmUp} transactions (MB): ${format(growth)}`)
    }
    assert.strictEqual(n, warmUp + total)
    assert.strictEqual(Metric.unsafeSnapshot().length, series, "no metric series was added")
    assert.strictEqual(manager.registry.size, 0, "the registry of active transactions is empty again")
    const snapshot = yield* TransactionMetrics.snapshot
    assert.strictEqual(Object.keys(snapshot.byName).length, manager.maxTransactionNames + 1)
    assert.strictEqual(snapshot.byName["other"]!.started, warmUp + total - manager.maxTransactionNames)
    assert.strictEqual(snapshot.overall.committed, warmUp + total)
  }).pipe(
    Effect.provide(live),
    // The expected warning about the bound.
    Logger.withMinimumLogLevel(LogLevel.Error)
  ))

const format = (bytes: ReadonlyArray<number>): string => bytes.map((b) => (b / 1024 / 1024).toFixed(1)).join(", ")
