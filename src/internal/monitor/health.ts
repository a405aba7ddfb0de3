/**
 * The health score and status, and the recommendations, from the open alerts and the latest figures.
 */
import type {
  Alert,
  AlertLevel,
  AlertRule,
  Health,
  HealthDeduction,
  MonitorSnapshot,
  Recommendation,
  RuleContext
} from "../../TransactionMonitor.js"
import { levelOrder, overallName } from "./rules.js"

/** @internal Points an open alert takes off the score, by level (one rule counts once, at its highest level). */
export const alertPoints: Readonly<Record<AlertLevel, number>> = { info: 2, warning: 10, error: 25, critical: 50 }

/** @internal The score and status now. */
export const health = (
  open: ReadonlyArray<Alert>,
  latest: ReadonlyArray<MonitorSnapshot>,
  windowFailureRate: { readonly rate: number; readonly ended: number } | undefined,
  now: number
): Health => {
  const deductions: Array<HealthDeduction> = []
  const byRule = new Map<string, Alert>()
  for (const alert of open) {
    const seen = byRule.get(alert.rule)
    if (seen === undefined || levelOrder.indexOf(alert.level) > levelOrder.indexOf(seen.level)) {
      byRule.set(alert.rule, alert)
    }
  }
  for (const [rule, alert] of byRule) {
    deductions.push({ reason: `${alert.level} alert ${rule}: ${alert.message}`, points: alertPoints[alert.level] })
  }
  if (windowFailureRate !== undefined && windowFailureRate.ended >= 20 && windowFailureRate.rate > 0) {
    const points = Math.min(20, Math.round(windowFailureRate.rate * 100))
    if (points > 0) {
      deductions.push({
        reason: `failure rate ${(windowFailureRate.rate * 100).toFixed(1)} % over the last minute`,
        points
      })
    }
  }
  const pool = latest[latest.length - 1]?.pool
  if (pool !== undefined && pool.utilization >= 0.9) {
    deductions.push({
      reason: `${pool.inTransactions} of ${pool.size} pool connections held by transactions`,
      points: 5
    })
  }
  const score = Math.max(0, 100 - deductions.reduce((total, d) => total + d.points, 0))
  const counts = { info: 0, warning: 0, error: 0, critical: 0 }
  for (const alert of open) counts[alert.level]++
  const status = counts.critical > 0 || score < 50
    ? "unhealthy"
    : counts.error > 0 || counts.warning > 0 || score < 80
    ? "degraded"
    : "healthy"
  return {
    status,
    score,
    httpStatus: status === "unhealthy" ? 503 : 200,
    checkedAt: now,
    openAlerts: counts,
    deductions
  }
}

const titles: Record<string, string> = {
  "failure-rate": "Transactions are failing",
  "deadlock-rate": "Deadlocks",
  "serialization-failure-rate": "Serialization failures",
  "timeout-rate": "Transactions stopped by their timeout",
  "lock-timeout-rate": "Lock wait timeouts",
  "retries-per-commit": "Many retries per commit",
  "p99-duration": "Slow transactions",
  "long-running": "Long-running transactions",
  "pool-saturation": "Connection pool saturated",
  "hook-failures": "Failing hooks",
  "savepoint-budget": "Too many savepoints per transaction",
  anomaly: "A figure left its baseline"
}

/**
 * @internal
 * One recommendation per open alert, ranked by impact: the level's points, scaled by the share of the traffic the
 * alert's transaction name carries (an alert on all transactions counts in full).
 */
export const recommendations = (
  open: ReadonlyArray<Alert>,
  rules: ReadonlyArray<AlertRule>,
  context: RuleContext
): ReadonlyArray<Recommendation> => {
  const window = context.window(5 * 60_000)
  const total = window.get(overallName)?.counts.started ?? 0
  const out: Array<Recommendation> = []
  for (const alert of open) {
    const rule = rules.find((r) => r.name === alert.rule)
    const started = window.get(alert.transaction)?.counts.started ?? 0
    const share = alert.transaction === overallName || total === 0 ? 1 : Math.max(0.05, started / total)
    out.push({
      rule: alert.rule,
      transaction: alert.transaction,
      level: alert.level,
      title: titles[alert.rule] ?? rule?.description ?? alert.rule,
      advice: rule?.advice?.(alert, context) ?? alert.message,
      value: alert.value,
      threshold: alert.threshold,
      impact: Math.round(alertPoints[alert.level] * share * 100) / 100,
      alertId: alert.id
    })
  }
  return out.sort((a, b) => b.impact - a.impact || levelOrder.indexOf(b.level) - levelOrder.indexOf(a.level))
}
