/**
 * Scripted monitor readings: cumulative figures of transaction names, as `TransactionMonitor`'s `source` returns
 * them (for names the library would refuse, and for figures no workload produces on demand).
 */
import { TransactionMetrics, type TransactionMonitor } from "../../src/index.js"

/** The upper bounds of the duration histogram's buckets. */
export const bounds = [...TransactionMetrics.durationBoundaries.values]

/** Every count at 0. */
export const zeroCounts = (): Record<TransactionMonitor.CountField, number> => ({
  started: 0,
  committed: 0,
  rolledBack: 0,
  failed: 0,
  deadlocks: 0,
  serializationFailures: 0,
  lockTimeouts: 0,
  timeouts: 0,
  retries: 0,
  savepoints: 0,
  hookFailures: 0,
  longRunning: 0,
  savepointBudgetExceeded: 0
})

/** `n` transactions of `seconds` each, all committed (cumulative). */
export const committedReading = (n: number, seconds: number): TransactionMonitor.NameReading => ({
  counts: { ...zeroCounts(), started: n, committed: n },
  failedByError: {},
  cumulative: bounds.map((bound) => seconds <= bound ? n : 0),
  durationCount: n,
  durationSum: n * seconds,
  durationMax: n === 0 ? 0 : seconds
})
