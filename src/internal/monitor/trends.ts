/**
 * Trends: per figure, the mean of the latest snapshots against the mean of the ones before, and against the same
 * window an hour and a day earlier when the history holds it.
 */
import type { MonitorFigures, MonitorSnapshot, Trend, TrendFigure } from "../../TransactionMonitor.js"
import { overallName } from "./rules.js"

/** @internal The figures trends are computed for. */
export const trendFigures: ReadonlyArray<readonly [TrendFigure, (f: MonitorFigures) => number]> = [
  ["throughput", (f) => f.perSecond.committed],
  ["failureRate", (f) => f.failureRate],
  ["p99", (f) => f.duration.p99],
  ["active", (f) => f.active],
  ["retriesPerSecond", (f) => f.perSecond.retries]
]

const mean = (values: ReadonlyArray<number>): number | undefined =>
  values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0) / values.length

/** A change smaller than this share of the larger mean is flat. */
const flatBelow = 0.1

/**
 * @internal
 * The trends of every figure for the name (`"*"`: all transactions) over `history` (oldest first), comparing the
 * last `points` snapshots with the `points` before them; `earlier(ms)` gives the snapshots of the same window
 * `ms` earlier (an hour, a day).
 */
export const trends = (
  history: ReadonlyArray<MonitorSnapshot>,
  name: string,
  points: number,
  earlier: { readonly hour: ReadonlyArray<MonitorSnapshot>; readonly day: ReadonlyArray<MonitorSnapshot> }
): ReadonlyArray<Trend> => {
  const read = (s: MonitorSnapshot) => name === overallName ? s.overall : s.byName[name]
  const values = (snapshots: ReadonlyArray<MonitorSnapshot>, figure: (f: MonitorFigures) => number) =>
    snapshots.map((s) => {
      const f = read(s)
      return f === undefined ? 0 : figure(f)
    })
  const recent = history.slice(-points)
  const before = history.slice(-2 * points, -points)
  return trendFigures.map(([figure, pick]) => {
    const current = mean(values(recent, pick)) ?? 0
    const previous = mean(values(before, pick))
    const change = previous === undefined ? undefined : relative(current, previous)
    const hourAgo = mean(values(earlier.hour, pick))
    const dayAgo = mean(values(earlier.day, pick))
    return {
      transaction: name,
      figure,
      current,
      previous,
      change,
      direction: change === undefined || Math.abs(change) < flatBelow
        ? "flat"
        : change > 0
        ? "rising"
        : "falling",
      hourAgo,
      changeFromHourAgo: hourAgo === undefined ? undefined : relative(current, hourAgo),
      dayAgo,
      changeFromDayAgo: dayAgo === undefined ? undefined : relative(current, dayAgo)
    }
  })
}

/** The change from `from` to `to` as a share of the larger of the two (0 when both are 0), in [-1, 1]. */
const relative = (to: number, from: number): number => {
  const scale = Math.max(Math.abs(to), Math.abs(from))
  return scale === 0 ? 0 : (to - from) / scale
}
