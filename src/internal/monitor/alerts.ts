/**
 * The alert book: conditions held for their rule's `for` duration fire alerts keyed by rule and transaction name,
 * de-duplicated within a window, resolved when the condition clears, and kept in a bounded history.
 */
import * as Duration from "effect/Duration"
import type { Alert, AlertQuery, AlertRule, Condition, MonitorEvent } from "../../TransactionMonitor.js"
import { levelOrder } from "./rules.js"

interface Pending {
  readonly since: number
}

/** @internal When an alert last changed: when it resolved, or the last check it held at (its event id, its row's time). */
export const changedAt = (alert: Alert): number => alert.resolvedAt ?? alert.lastSeenAt

/** @internal The server-sent event an alert's change is: `resolved`, or `alert` (fired, reopened, level changed). */
export const eventName = (alert: Alert): "alert" | "resolved" => alert.status === "resolved" ? "resolved" : "alert"

/** @internal */
export const alertKey = (rule: string, transaction: string, figure?: string | undefined): string =>
  figure === undefined ? `${rule}|${transaction}` : `${rule}|${transaction}|${figure}`

/** @internal */
export class AlertBook {
  /** Every alert kept, oldest first; at most `capacity`, open ones never dropped. */
  private readonly alerts: Array<Alert> = []
  private readonly open = new Map<string, Alert>()
  /** The latest alert of each key, open or resolved: a new firing within the window reopens it. */
  private readonly latestByKey = new Map<string, Alert>()
  private readonly pending = new Map<string, Pending>()
  private readonly silenced = new Set<string>()
  private sequence = 0

  constructor(
    private readonly instance: string,
    private readonly capacity: number,
    private readonly dedupMillis: number
  ) {}

  /** Restores alerts loaded from the database (oldest first). */
  restore(alerts: ReadonlyArray<Alert>): void {
    for (const alert of alerts) {
      this.alerts.push(alert)
      this.latestByKey.set(alert.key, alert)
      if (alert.status === "open") this.open.set(alert.key, alert)
      const n = Number(alert.id.slice(alert.id.lastIndexOf("-") + 1))
      if (Number.isSafeInteger(n) && n > this.sequence) this.sequence = n
    }
    this.trim()
  }

  silence(rule: string, transaction: string | undefined): void {
    this.silenced.add(transaction === undefined ? rule : alertKey(rule, transaction))
  }

  unsilence(rule: string, transaction: string | undefined): void {
    this.silenced.delete(transaction === undefined ? rule : alertKey(rule, transaction))
  }

  isSilenced(rule: string, transaction: string): boolean {
    return this.silenced.size > 0 && (this.silenced.has(rule) || this.silenced.has(alertKey(rule, transaction)))
  }

  /**
   * Applies one evaluation of every rule at `now`: fires, updates (level or value) and resolves alerts. Returns the
   * events, in that order.
   */
  observe(now: number, results: ReadonlyArray<readonly [AlertRule, ReadonlyArray<Condition>]>): Array<MonitorEvent> {
    const events: Array<MonitorEvent> = []
    const seen = new Set<string>()
    for (const [rule, conditions] of results) {
      const forMillis = Duration.toMillis(rule.for)
      for (const condition of conditions) {
        if (this.isSilenced(rule.name, condition.transaction)) continue
        const key = alertKey(rule.name, condition.transaction, condition.figure)
        seen.add(key)
        const open = this.open.get(key)
        if (open !== undefined) {
          const updated: Alert = {
            ...open,
            level: condition.level,
            value: condition.value,
            threshold: condition.threshold,
            message: condition.message,
            lastSeenAt: now,
            peakLevel: higher(open.peakLevel, condition.level)
          }
          this.replace(open, updated)
          if (updated.level !== open.level) {
            events.push({ _tag: "AlertUpdated", alert: updated, previousLevel: open.level })
          }
          continue
        }
        let pending = this.pending.get(key)
        if (pending === undefined) this.pending.set(key, pending = { since: now })
        if (now - pending.since < forMillis) continue
        this.pending.delete(key)
        const previous = this.latestByKey.get(key)
        if (
          previous !== undefined && previous.resolvedAt !== undefined && now - previous.resolvedAt <= this.dedupMillis
        ) {
          const reopened: Alert = {
            ...previous,
            status: "open",
            level: condition.level,
            peakLevel: higher(previous.peakLevel, condition.level),
            value: condition.value,
            threshold: condition.threshold,
            message: condition.message,
            count: previous.count + 1,
            lastFiredAt: now,
            lastSeenAt: now,
            resolvedAt: undefined
          }
          this.replace(previous, reopened)
          this.open.set(key, reopened)
          events.push({ _tag: "AlertFired", alert: reopened })
          continue
        }
        const alert: Alert = {
          id: `${this.instance}-${++this.sequence}`,
          key,
          rule: rule.name,
          transaction: condition.transaction,
          figure: condition.figure,
          level: condition.level,
          peakLevel: condition.level,
          status: "open",
          message: condition.message,
          value: condition.value,
          threshold: condition.threshold,
          count: 1,
          firstFiredAt: now,
          lastFiredAt: now,
          lastSeenAt: now,
          resolvedAt: undefined,
          instance: this.instance
        }
        this.alerts.push(alert)
        this.open.set(key, alert)
        this.latestByKey.set(key, alert)
        events.push({ _tag: "AlertFired", alert })
      }
    }
    for (const key of this.pending.keys()) if (!seen.has(key)) this.pending.delete(key)
    for (const [key, open] of this.open) {
      if (seen.has(key)) continue
      const resolved: Alert = { ...open, status: "resolved", resolvedAt: now }
      this.replace(open, resolved)
      this.open.delete(key)
      events.push({ _tag: "AlertResolved", alert: resolved })
    }
    this.trim()
    return events
  }

  openAlerts(): ReadonlyArray<Alert> {
    return [...this.open.values()]
  }

  query(query: AlertQuery = {}): ReadonlyArray<Alert> {
    const out: Array<Alert> = []
    const minLevel = query.level === undefined ? 0 : levelOrder.indexOf(query.level)
    for (let i = this.alerts.length - 1; i >= 0; i--) {
      const alert = this.alerts[i]!
      if (levelOrder.indexOf(alert.peakLevel) < minLevel) continue
      if (query.rule !== undefined && alert.rule !== query.rule) continue
      if (query.transaction !== undefined && alert.transaction !== query.transaction) continue
      if (query.status !== undefined && alert.status !== query.status) continue
      if (query.since !== undefined && alert.lastSeenAt < query.since) continue
      if (query.until !== undefined && alert.firstFiredAt > query.until) continue
      out.push(alert)
      if (query.limit !== undefined && out.length >= query.limit) break
    }
    return out
  }

  get size(): number {
    return this.alerts.length
  }

  private replace(previous: Alert, next: Alert): void {
    // The latest alerts are the ones updated: search from the end.
    const index = this.alerts.lastIndexOf(previous)
    if (index >= 0) this.alerts[index] = next
    else this.alerts.push(next)
    if (this.open.get(previous.key) === previous) this.open.set(previous.key, next)
    if (this.latestByKey.get(previous.key) === previous) this.latestByKey.set(previous.key, next)
  }

  /** Drops the oldest resolved alerts past the capacity (open alerts are bounded by rules × names). */
  private trim(): void {
    let excess = this.alerts.length - this.capacity
    if (excess <= 0) return
    const kept: Array<Alert> = []
    for (const alert of this.alerts) {
      if (excess > 0 && alert.status === "resolved") {
        excess--
        if (this.latestByKey.get(alert.key) === alert) this.latestByKey.delete(alert.key)
        continue
      }
      kept.push(alert)
    }
    this.alerts.length = 0
    this.alerts.push(...kept)
  }
}

const higher = (a: Alert["level"], b: Alert["level"]): Alert["level"] =>
  levelOrder.indexOf(a) >= levelOrder.indexOf(b) ? a : b
