/**
 * What the page receives: the state (latest snapshot, health, alerts, recommendations) as JSON, and the event
 * stream in the server-sent events format.
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import type { Alert, Health, MonitorSnapshot, Recommendation, TransactionMonitor } from "../../TransactionMonitor.js"
import { changedAt, eventName } from "../monitor/alerts.js"

/** @internal What a snapshot event and `/api/snapshot` carry. */
export interface DashboardState {
  readonly snapshot: MonitorSnapshot | undefined
  readonly health: Health
  /** Open alerts and the latest resolved ones (at most 50 in all), newest first. */
  readonly alerts: ReadonlyArray<Alert>
  readonly recommendations: ReadonlyArray<Recommendation>
  readonly interval: number
}

const recentAlerts = 50

/** @internal */
export const state = (monitor: TransactionMonitor, snapshot?: MonitorSnapshot): Effect.Effect<DashboardState> =>
  Effect.gen(function*() {
    const open = yield* monitor.alerts({ status: "open" })
    const resolved = yield* monitor.alerts({ status: "resolved", limit: Math.max(0, recentAlerts - open.length) })
    return {
      snapshot: snapshot ?? (yield* monitor.latest),
      health: yield* monitor.health,
      alerts: [...open, ...resolved],
      recommendations: (yield* monitor.recommendations).slice(0, 10),
      interval: Duration.toMillis(monitor.interval) / 1000
    }
  })

const encoder = new TextEncoder()

/** @internal One event in the server-sent events format (`data` is JSON: no newline inside). */
export const encode = (event: string, id: number | undefined, data: unknown): Uint8Array =>
  encoder.encode(`event: ${event}\n${id === undefined ? "" : `id: ${id}\n`}data: ${JSON.stringify(data)}\n\n`)

const encodeAlert = (alert: Alert): Uint8Array => encode(eventName(alert), changedAt(alert), alert)

/**
 * The snapshot events already encoded: every open stream receives the same snapshot object, so the state is made
 * and encoded once per snapshot, not once per client (50 streams: 50 × 0.4 ms per snapshot otherwise).
 */
const encoded = new WeakMap<MonitorSnapshot, Uint8Array>()

const encodedSnapshot = (monitor: TransactionMonitor, snapshot: MonitorSnapshot): Effect.Effect<Uint8Array> =>
  Effect.suspend(() => {
    const found = encoded.get(snapshot)
    if (found !== undefined) return Effect.succeed(found)
    return Effect.map(state(monitor, snapshot), (current) => {
      const bytes = encode("snapshot", snapshot.takenAt, current)
      encoded.set(snapshot, bytes)
      return bytes
    })
  })

/**
 * @internal
 * The event stream of one client: `retry:`, then (after a reconnection with `Last-Event-ID`) the snapshots and
 * alert changes it missed, then live events — a `snapshot` event (the whole state) per snapshot, `alert` and
 * `resolved` events as they happen — with a keep-alive comment every `keepAliveSeconds`. Event ids are the
 * snapshot's time (epoch milliseconds); the subscription is made before the missed events are read, so none falls
 * in between.
 */
export const stream = (
  monitor: TransactionMonitor,
  options: { readonly since: number | undefined; readonly keepAliveSeconds: number }
): Stream.Stream<Uint8Array> =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const subscription = yield* monitor.subscribe
    const head: Array<Uint8Array> = [encoder.encode("retry: 3000\n\n")]
    let lastSent = options.since ?? -1
    if (options.since !== undefined) {
      const missed = (yield* Effect.orElseSucceed(monitor.history({ from: options.since + 1 }), () => []))
        .slice(-100)
      // Seen at or after `since`: changed then.
      const changed = yield* monitor.alerts({ since: options.since })
      for (const snapshot of missed) {
        head.push(encode("snapshot", snapshot.takenAt, yield* state(monitor, snapshot)))
        lastSent = snapshot.takenAt
      }
      for (const alert of [...changed].reverse()) head.push(encodeAlert(alert))
    } else {
      const current = yield* state(monitor)
      head.push(encode("snapshot", current.snapshot?.takenAt, current))
      if (current.snapshot !== undefined) lastSent = current.snapshot.takenAt
    }
    const live = Stream.fromQueue(subscription).pipe(
      Stream.mapEffect((event): Effect.Effect<Uint8Array | undefined> => {
        if (event._tag === "Snapshot") {
          if (event.snapshot.takenAt <= lastSent) return Effect.succeed(undefined)
          lastSent = event.snapshot.takenAt
          return encodedSnapshot(monitor, event.snapshot)
        }
        return Effect.succeed(encodeAlert(event.alert))
      }),
      Stream.filter((chunk): chunk is Uint8Array => chunk !== undefined)
    )
    const keepAlive = Stream.repeatEffectWithSchedule(
      Effect.succeed(encoder.encode(": keep-alive\n\n")),
      Schedule.spaced(`${options.keepAliveSeconds} seconds`)
    ).pipe(Stream.drop(1))
    return Stream.concat(Stream.fromIterable(head), Stream.merge(live, keepAlive, { haltStrategy: "left" }))
  }))
