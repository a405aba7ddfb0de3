/**
 * Reports: the monitor's snapshots, alerts, health, recommendations and trends over a time range, as JSON or as
 * CSV (one row per snapshot and transaction name, written by `csv-stringify`).
 */
import * as Effect from "effect/Effect"
import type { MonitorReport, MonitorSnapshot } from "../../TransactionMonitor.js"
import { overallName } from "./rules.js"
import { countFields } from "./snapshot.js"

/** @internal The CSV columns, in order. */
export const csvColumns: ReadonlyArray<string> = [
  "taken_at",
  "instance",
  "db_system",
  "transaction",
  "seconds",
  ...countFields.map((field) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)),
  "committed_per_second",
  "success_rate",
  "failure_rate",
  "duration_count",
  "duration_average",
  "duration_p50",
  "duration_p95",
  "duration_p99",
  "duration_max",
  "active",
  "oldest_age"
]

/** @internal The CSV rows of a snapshot: all transactions (`"*"`) first, then each name in it. */
export const csvRows = (snapshot: MonitorSnapshot): Array<Array<string | number>> => {
  const rows: Array<Array<string | number>> = []
  const row = (name: string, f: MonitorSnapshot["overall"]) =>
    rows.push([
      new Date(snapshot.takenAt).toISOString(),
      snapshot.instance,
      snapshot.dbSystem,
      name,
      snapshot.seconds,
      ...countFields.map((field) => f.interval[field]),
      f.perSecond.committed,
      f.successRate,
      f.failureRate,
      f.duration.count,
      f.duration.average,
      f.duration.p50,
      f.duration.p95,
      f.duration.p99,
      f.duration.max,
      f.active,
      f.oldestAge
    ])
  row(overallName, snapshot.overall)
  for (const name of Object.keys(snapshot.byName).sort()) row(name, snapshot.byName[name]!)
  return rows
}

/** @internal The report as CSV text, with a header row. */
export const toCsv = (report: MonitorReport): Effect.Effect<string> =>
  Effect.map(
    // Loaded on first use: applications that never export CSV do not load it.
    Effect.promise(() => import("csv-stringify/sync")),
    ({ stringify }) =>
      stringify(report.snapshots.flatMap(csvRows), { header: true, columns: csvColumns as Array<string> })
  )
