import { Effect } from "effect"
import { TransactionMetrics } from "../../src/index.js"

// The library's metrics, read back: overall and per transaction name, with rates and percentiles.
export const report = Effect.gen(function*() {
  const snapshot = yield* TransactionMetrics.snapshot
  const { committed, failed, retries, successRate, duration } = snapshot.overall
  yield* Effect.log(`committed ${committed}, failed ${failed}, retried ${retries}, success ${successRate}`)
  yield* Effect.log(`p50 ${duration.p50} s, p99 ${duration.p99} s`)
  // One entry per outermost transaction name (and per independent transaction): the savepoints and timeouts of
  // a nested block are counted under the name of the transaction it runs in.
  for (const [name, figures] of Object.entries(snapshot.byName)) {
    yield* Effect.log(`${name}: ${figures.committed} committed, deadlocks ${figures.deadlocks}`)
  }
})
