import * as Effect from "effect/Effect"
import type { ClassifiedCode, Dialect } from "../../Dialect.js"
import { exec, property, rejectDeferrable, standardSavepoints } from "./common.js"

/** @internal better-sqlite3 result code names (`SQLITE_BUSY_SNAPSHOT` is a `SQLITE_BUSY`). */
export const classify = (cause: unknown): ClassifiedCode | undefined => {
  const code = property(cause, "code")
  if (typeof code !== "string") return undefined
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return { tag: "LockTimeout", code }
  if (code.startsWith("SQLITE_READONLY")) return { tag: "ReadOnlyViolation", code }
  return undefined
}

/**
 * @internal
 * SQLite is serializable whatever level is asked for. A read-write transaction starts with `BEGIN IMMEDIATE`, taking
 * the write lock at once, so that it cannot fail with `SQLITE_BUSY` half-way when a read turns into a write; a
 * read-only one starts with `BEGIN` and `PRAGMA query_only`, reset at the end. better-sqlite3 runs one statement a
 * call, but in process: no round trip.
 */
export const sqlite: Dialect = {
  name: "sqlite",
  dbSystem: "sqlite",
  interruptibleReserve: true,
  validate: rejectDeferrable("SQLite"),
  begin: (conn, options) =>
    options.readOnly
      ? Effect.zipRight(exec(conn, "BEGIN"), exec(conn, "PRAGMA query_only = ON"))
      : exec(conn, "BEGIN IMMEDIATE"),
  commit: (conn, options) =>
    Effect.as(
      options.readOnly
        ? Effect.zipRight(exec(conn, "COMMIT"), exec(conn, "PRAGMA query_only = OFF"))
        : exec(conn, "COMMIT"),
      "committed" as const
    ),
  rollback: (conn, options) =>
    options.readOnly
      ? Effect.ensuring(exec(conn, "ROLLBACK"), Effect.ignore(exec(conn, "PRAGMA query_only = OFF")))
      : exec(conn, "ROLLBACK"),
  ...standardSavepoints,
  rollbackAndReleaseSavepoint: (conn, name) =>
    Effect.zipRight(exec(conn, `ROLLBACK TO SAVEPOINT ${name}`), exec(conn, `RELEASE SAVEPOINT ${name}`)),
  classify,
  connectionId: () => undefined,
  // One connection per client: it cannot be replaced. A failed ROLLBACK leaves the next BEGIN to fail loudly.
  destroy: () => Effect.void
}
