import { Effect, Layer } from "effect"
import { TransactionLayer, TransactionMonitor } from "../../src/index.js"

export const MonitorLive = TransactionMonitor.layer({
  interval: "10 seconds", // default
  capacity: 360, // snapshots kept: an hour (default)
  rules: TransactionMonitor.defaultRules({ "p99-duration": { thresholds: { warning: 0.2, critical: 2 } } }),
  silences: [{ rule: "long-running", transaction: "nightly-report" }],
  persist: TransactionMonitor.persist({ table: "tx_monitor", retention: "14 days" })
}).pipe(Layer.provideMerge(TransactionLayer))

export const status = Effect.gen(function*() {
  const monitor = yield* TransactionMonitor.TransactionMonitor
  const health = yield* monitor.health // { status, score, httpStatus, openAlerts, deductions }
  const alerts = yield* monitor.alerts({ level: "warning", status: "open" })
  const advice = yield* monitor.recommendations // highest impact first
  const csv = yield* monitor.report({ format: "csv", from: Date.now() - 3_600_000 })
  return { health, alerts, advice, csv }
})
