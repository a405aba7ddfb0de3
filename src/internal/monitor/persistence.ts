/**
 * The monitor's history in the application's own database: one table, made if missing, with a row per snapshot
 * and transaction name and a row per alert event, written through the manager's `SqlClient` outside any
 * transaction of the application, trimmed to the retention, read back at start.
 *
 * The SQL is the subset PostgreSQL, MySQL/MariaDB and SQLite share (`CREATE TABLE IF NOT EXISTS`, `BIGINT`,
 * `VARCHAR`, `TEXT`, a composite primary key), so nothing here depends on the database.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { Alert, MonitorFigures, MonitorSnapshot } from "../../TransactionMonitor.js"
import { withoutTransaction } from "../context.js"
import { changedAt } from "./alerts.js"
import { overallName } from "./rules.js"

/** @internal */
export interface Store {
  readonly table: string
  readonly retentionMillis: number
  readonly sql: SqlClient.SqlClient
  readonly instance: string
}

interface Row {
  readonly instance: string
  readonly taken_at: number | string | bigint
  readonly kind: string
  readonly item: string
  readonly payload: string
}

/** Identifiers and keys are bounded so that the primary key fits every database's index limit. */
const itemLength = 200

/** Runs the statements with no transaction of the caller's in context: they take pooled connections. */
const outside = <A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
  Effect.mapInputContext(effect, withoutTransaction)

/** @internal Creates the table if missing (twice at most: instances starting together may race on it). */
export const ensureTable = (store: Store): Effect.Effect<void, SqlError> => {
  const { sql } = store
  const create = sql`CREATE TABLE IF NOT EXISTS ${sql(store.table)} (
    instance VARCHAR(200) NOT NULL,
    taken_at BIGINT NOT NULL,
    kind VARCHAR(16) NOT NULL,
    item VARCHAR(200) NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (instance, taken_at, kind, item)
  )`
  return outside(Effect.asVoid(Effect.retry(create, { times: 1 })))
}

/** @internal Writes a snapshot and the alerts changed with it, in one statement. */
export const write = (
  store: Store,
  snapshot: MonitorSnapshot | undefined,
  alerts: ReadonlyArray<Alert>
): Effect.Effect<void, SqlError> => {
  const rows: Array<Row> = []
  if (snapshot !== undefined) {
    const { byName, ...rest } = snapshot
    rows.push({
      instance: store.instance,
      taken_at: snapshot.takenAt,
      kind: "snapshot",
      item: overallName,
      payload: JSON.stringify(rest)
    })
    for (const name in byName) {
      rows.push({
        instance: store.instance,
        taken_at: snapshot.takenAt,
        kind: "snapshot",
        // A name longer than the key's column keeps its full text in the payload; its key is made unique.
        item: name.length <= itemLength ? name : `${name.slice(0, itemLength - 12)}~${hash(name)}`,
        payload: JSON.stringify({ name, figures: byName[name] })
      })
    }
  }
  for (const alert of alerts) {
    rows.push({
      instance: store.instance,
      taken_at: changedAt(alert),
      kind: "alert",
      item: alert.id.slice(0, itemLength),
      payload: JSON.stringify(alert)
    })
  }
  if (rows.length === 0) return Effect.void
  const { sql } = store
  return outside(Effect.asVoid(sql`INSERT INTO ${sql(store.table)} ${sql.insert(rows as any)}`))
}

/** @internal Deletes the rows (of every instance) older than the retention. */
export const purge = (store: Store, now: number): Effect.Effect<void, SqlError> => {
  const { sql } = store
  return outside(Effect.asVoid(sql`DELETE FROM ${sql(store.table)} WHERE taken_at < ${now - store.retentionMillis}`))
}

/**
 * @internal
 * The snapshots taken between `from` and `to` (inclusive, epoch milliseconds), oldest first, of this instance or
 * of the one named (`"*"`: every instance).
 */
export const loadSnapshots = (
  store: Store,
  from: number,
  to: number,
  instance: string = store.instance
): Effect.Effect<Array<MonitorSnapshot>, SqlError> => {
  const { sql } = store
  const query = instance === "*"
    ? sql<Row>`SELECT instance, taken_at, kind, item, payload FROM ${sql(store.table)}
        WHERE kind = 'snapshot' AND taken_at >= ${from} AND taken_at <= ${to} ORDER BY taken_at, instance`
    : sql<Row>`SELECT instance, taken_at, kind, item, payload FROM ${sql(store.table)}
        WHERE instance = ${instance} AND kind = 'snapshot' AND taken_at >= ${from} AND taken_at <= ${to}
        ORDER BY taken_at`
  return outside(Effect.map(query, (rows) => {
    // Grouped by (instance, time) without relying on the order of the rows of one snapshot: collations differ.
    const groups = new Map<string, { snapshot?: MonitorSnapshot; byName: Record<string, MonitorFigures> }>()
    for (const row of rows) {
      const group = `${row.instance}\u0000${Number(row.taken_at)}`
      let found = groups.get(group)
      if (found === undefined) groups.set(group, found = { byName: {} })
      if (row.item === overallName) {
        found.snapshot = { ...JSON.parse(row.payload), byName: found.byName }
      } else {
        const { figures, name } = JSON.parse(row.payload) as { name: string; figures: MonitorFigures }
        found.byName[name] = figures
      }
    }
    const snapshots: Array<MonitorSnapshot> = []
    for (const group of groups.values()) if (group.snapshot !== undefined) snapshots.push(group.snapshot)
    return snapshots
  }))
}

/** @internal The latest state of the last `limit` alerts of this instance, oldest first. */
export const loadAlerts = (store: Store, since: number, limit: number): Effect.Effect<Array<Alert>, SqlError> => {
  const { sql } = store
  return outside(Effect.map(
    sql<Row>`SELECT instance, taken_at, kind, item, payload FROM ${sql(store.table)}
      WHERE instance = ${store.instance} AND kind = 'alert' AND taken_at >= ${since} ORDER BY taken_at`,
    (rows) => {
      const latest = new Map<string, Alert>()
      for (const row of rows) {
        latest.delete(row.item)
        latest.set(row.item, JSON.parse(row.payload))
      }
      return [...latest.values()].sort((a, b) => a.firstFiredAt - b.firstFiredAt).slice(-limit)
    }
  ))
}

/** A short, stable hash (FNV-1a, base 36) to keep over-long names distinct in the key. */
const hash = (text: string): string => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0).toString(36)
}
