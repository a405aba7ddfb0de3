/**
 * The databases' own two-phase commit, one object per database: PostgreSQL `PREPARE TRANSACTION` /
 * `COMMIT PREPARED` / `ROLLBACK PREPARED` / `pg_prepared_xacts`, MySQL/MariaDB `XA START / END / PREPARE / COMMIT /
 * ROLLBACK / RECOVER`. The only code of the two-phase commit that knows a database.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import type { DialectName } from "../../Dialect.js"
import * as IsolationLevel from "../../IsolationLevel.js"
import { property } from "../dialect/common.js"

/** @internal A prepared transaction as the database lists it. */
export interface Prepared {
  readonly gid: string
  /** Seconds since it was prepared, where the database tells (PostgreSQL); `undefined` otherwise (XA). */
  readonly age: number | undefined
}

/** @internal Why the database refused a statement or a PREPARE in a two-phase transaction. */
export interface Forbidden {
  readonly code: string
  readonly reason: string
}

/** @internal */
export interface Protocol {
  readonly name: DialectName
  /** Starts the transaction branch `gid` on the connection, at the isolation level when given. */
  readonly begin: (gid: string, isolation: IsolationLevel.IsolationLevel | undefined) => string
  /** Prepares the branch: afterwards it survives the session (PostgreSQL: the session is free at once). */
  readonly prepare: (gid: string) => string
  /**
   * Rolls back a branch that was begun but not prepared, on its own connection: statements sent one by one, the
   * failures of all but the last ignored (MySQL: `XA END` fails for a branch already ended).
   */
  readonly rollbackActive: (gid: string) => ReadonlyArray<string>
  readonly commitPrepared: (gid: string) => string
  readonly rollbackPrepared: (gid: string) => string
  /** The prepared transactions whose global id starts with `prefix`, of the client's database (PostgreSQL). */
  readonly scan: (sql: SqlClient.SqlClient, prefix: string) => Effect.Effect<ReadonlyArray<Prepared>, SqlError>
  /** Whether a PREPARE's answer says the transaction had been aborted (PostgreSQL answers `ROLLBACK`). */
  readonly preparedAborted: (result: unknown) => boolean
  /** The gid is unknown: the branch was already committed or rolled back. */
  readonly isUnknownId: (cause: unknown) => boolean
  /** A statement that 2PC forbids, or a PREPARE refused because of one. */
  readonly forbidden: (cause: unknown) => Forbidden | undefined
  /** The database refuses prepared transactions altogether (PostgreSQL `max_prepared_transactions = 0`). */
  readonly disabled: (cause: unknown) => boolean
  /**
   * Whether a prepared branch stays attached to the session that prepared it (MariaDB: other sessions see it only
   * once that one disconnects): its connection must then finish it, or be closed.
   */
  readonly attached: boolean
}

/** A string literal of a gid: gids are made of `[A-Za-z0-9_.-]`, quotes are doubled all the same. */
const literal = (gid: string): string => `'${gid.replaceAll("'", "''")}'`

const errorCode = (cause: unknown): unknown => property(cause, "code")

/** @internal */
export const pg: Protocol = {
  name: "pg",
  begin: (_gid, isolation) =>
    isolation === undefined ? "BEGIN" : `BEGIN ISOLATION LEVEL ${IsolationLevel.toSql(isolation)}`,
  prepare: (gid) => `PREPARE TRANSACTION ${literal(gid)}`,
  rollbackActive: () => ["ROLLBACK"],
  commitPrepared: (gid) => `COMMIT PREPARED ${literal(gid)}`,
  rollbackPrepared: (gid) => `ROLLBACK PREPARED ${literal(gid)}`,
  scan: (sql, prefix) =>
    Effect.map(
      sql<{ gid: string; age: number | string }>`
        SELECT gid, EXTRACT(EPOCH FROM (now() - prepared))::float8 AS age FROM pg_prepared_xacts
        WHERE database = current_database() AND left(gid, ${prefix.length}) = ${prefix}`,
      (rows) => rows.map((row) => ({ gid: row.gid, age: Number(row.age) }))
    ),
  preparedAborted: (result) => property(result, "command") === "ROLLBACK",
  // 42704 undefined_object: "prepared transaction with identifier … does not exist".
  isUnknownId: (cause) => errorCode(cause) === "42704",
  forbidden: (cause) => {
    if (errorCode(cause) !== "0A000") return undefined
    const message = String(property(cause, "message") ?? "")
    if (/temporary/i.test(message)) {
      return { code: "0A000", reason: "a transaction that used temporary objects cannot be prepared" }
    }
    if (/LISTEN|NOTIFY/i.test(message)) {
      return { code: "0A000", reason: "a transaction that ran LISTEN, UNLISTEN or NOTIFY cannot be prepared" }
    }
    return { code: "0A000", reason: `PostgreSQL cannot prepare this transaction: ${message}` }
  },
  // 55000 object_not_in_prerequisite_state: "prepared transactions are disabled".
  disabled: (cause) =>
    errorCode(cause) === "55000" && /prepared transactions are disabled/i.test(String(property(cause, "message"))),
  attached: false
}

const errno = (cause: unknown): unknown => property(cause, "errno")

const utf8 = new TextDecoder()

/** MySQL/MariaDB XA errors that mean a statement is not allowed in an XA transaction (or its state). */
const xaForbidden: Record<number, string> = {
  1399: "the statement cannot run inside an XA transaction (an implicit commit: DDL, LOCK TABLES, COMMIT…)",
  1400: "the XA transaction is in the wrong state for this statement (XAER_OUTSIDE)",
  1401: "XAER_RMERR: a fatal error inside the XA transaction branch"
}

/** @internal */
export const mysql: Protocol = {
  name: "mysql",
  // SET TRANSACTION applies to the next transaction, which XA START begins.
  begin: (gid, isolation) =>
    isolation === undefined
      ? `XA START ${literal(gid)}`
      : `SET TRANSACTION ISOLATION LEVEL ${IsolationLevel.toSql(isolation)}; XA START ${literal(gid)}`,
  prepare: (gid) => `XA END ${literal(gid)}; XA PREPARE ${literal(gid)}`,
  // XA ROLLBACK refuses an ACTIVE branch (1399): end it first; XA END fails for a branch already ended (after a
  // failed XA PREPARE), which the ROLLBACK then finishes all the same.
  rollbackActive: (gid) => [`XA END ${literal(gid)}`, `XA ROLLBACK ${literal(gid)}`],
  commitPrepared: (gid) => `XA COMMIT ${literal(gid)}`,
  rollbackPrepared: (gid) => `XA ROLLBACK ${literal(gid)}`,
  scan: (sql, prefix) =>
    Effect.map(
      // Not in the prepared-statement protocol (1295): sent as text.
      sql.unsafe<{ gtrid_length: number | string; data: unknown }>("XA RECOVER").unprepared,
      (rows) =>
        rows.flatMap((row) => {
          const data = row.data
          const text = typeof data === "string"
            ? data
            : data instanceof Uint8Array
            ? utf8.decode(data)
            : String(data)
          const gid = text.slice(0, Number(row.gtrid_length))
          return gid.startsWith(prefix) ? [{ gid, age: undefined }] : []
        })
    ),
  preparedAborted: () => false,
  // 1397 XAER_NOTA: unknown XID.
  isUnknownId: (cause) => errno(cause) === 1397,
  forbidden: (cause) => {
    const n = errno(cause)
    if (typeof n !== "number") return undefined
    const reason = xaForbidden[n]
    return reason === undefined ? undefined : { code: String(n), reason }
  },
  disabled: () => false,
  attached: true
}
