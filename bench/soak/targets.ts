/**
 * The databases of the soak: the pool under test (an `@effect/sql` client layer) and, beside it, an admin side
 * made with the raw drivers (a fresh connection per operation, so that it survives server restarts) that sets up
 * the tables, injects faults (killed backends, held row locks, server restarts), checks the books and looks for
 * connections left inside a transaction.
 *
 * Connections of the pool under test are told apart from everyone else's by their client port: the sockets of this
 * process (`/proc/self/fd` and `/proc/net/tcp`) to the server's port, less the admin side's own connections.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { SqlClient } from "@effect/sql/SqlClient"
import BetterSqlite3 from "better-sqlite3"
import { Data, Duration, Effect, Layer, Redacted, type Scope } from "effect"
import * as Mysql from "mysql2"
import { execFile } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import Pg from "pg"

export type DatabaseName = "pg" | "mysql" | "sqlite"

export const databaseNames: ReadonlyArray<DatabaseName> = ["pg", "mysql", "sqlite"]

/** A failure of the admin side (not of the library under test). */
export class AdminError extends Data.TaggedError("AdminError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message(): string {
    const cause = this.cause as { readonly message?: unknown } | undefined
    return `${this.operation}: ${typeof cause?.message === "string" ? cause.message : String(this.cause)}`
  }
}

export type Row = Readonly<Record<string, unknown>>

/** One connection of the admin side. */
export interface AdminConnection {
  /** The server's id of the connection (PostgreSQL pid, MariaDB thread id; 0 for SQLite). */
  readonly id: number
  readonly query: (text: string) => Effect.Effect<ReadonlyArray<Row>, AdminError>
}

export interface RestartRecord {
  /** Milliseconds from the stop command to the server answering again. */
  readonly downMillis: number
}

export interface Target {
  readonly name: DatabaseName
  readonly description: string
  /** The client layer of the pool under test. */
  readonly layer: (connections: number) => Layer.Layer<SqlClient, unknown>
  /** The workers' `lockTimeout` and `timeout` (on some transfers) and how long a held row lock lasts (ms). */
  readonly lockTimeout: Duration.Duration
  readonly timeout: Duration.Duration
  readonly holdMillis: readonly [number, number]
  /** A new admin connection, closed with the scope. */
  readonly connect: Effect.Effect<AdminConnection, AdminError, Scope.Scope>
  /** The server ids of the pool's connections (this process's, not the admin side's); none for SQLite. */
  readonly poolBackends: Effect.Effect<ReadonlyArray<number>, AdminError>
  /** Kills a backend from the admin side (`pg_terminate_backend`, `KILL`); whether the server took it. */
  readonly kill: ((id: number) => Effect.Effect<boolean, AdminError>) | undefined
  /** Holds a row lock on an account for `millis` in an admin transaction; whether the lock was taken. */
  readonly holdLock: (table: string, account: number, millis: number) => Effect.Effect<boolean, AdminError>
  /** Restarts the server with the machine's own service commands and waits until it answers. */
  readonly restart: Effect.Effect<RestartRecord, AdminError> | undefined
  /** Starts the server if it does not answer (as `.ci/run` does), and waits until it answers. */
  readonly ensureUp: Effect.Effect<void, AdminError>
  /** This process's connections that are inside a transaction, described. */
  readonly openTransactions: Effect.Effect<ReadonlyArray<string>, AdminError>
  /** Removes what the target made on the machine (SQLite's folder). */
  readonly dispose: Effect.Effect<void>
}

/** Runs a query on a new admin connection. */
export const adminQuery = (target: Target, text: string): Effect.Effect<ReadonlyArray<Row>, AdminError> =>
  Effect.scoped(Effect.flatMap(target.connect, (conn) => conn.query(text)))

// ---------------------------------------------------------------------------------------------------------------
// the machine

const loopback = (url: string, fallbackPort: number): { readonly host: string; readonly port: number } => {
  const parsed = new URL(url)
  if (parsed.hostname !== "127.0.0.1") {
    throw new Error(`the soak kills connections and restarts servers: only 127.0.0.1 targets (got ${parsed.host})`)
  }
  return { host: parsed.hostname, port: parsed.port === "" ? fallbackPort : Number(parsed.port) }
}

interface CommandResult {
  readonly code: number
  readonly output: string
}

/** Runs a command of the machine, without a shell; never fails on a non-zero exit code (it is returned). */
const command = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly timeout?: number; readonly env?: NodeJS.ProcessEnv; readonly cwd?: string } = {}
): Effect.Effect<CommandResult, AdminError> =>
  Effect.async<CommandResult, AdminError>((resume) => {
    const child = execFile(
      file,
      [...args],
      { timeout: options.timeout ?? 120_000, env: options.env ?? process.env, cwd: options.cwd },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        if (error !== null && typeof error.code === "string") {
          resume(Effect.fail(new AdminError({ operation: `${file} ${args.join(" ")}`, cause: error })))
        } else resume(Effect.succeed({ code, output: `${stdout}${stderr}`.trim() }))
      }
    )
    return Effect.sync(() => child.kill())
  })

/** Polls `check` every 200 ms until it holds, for `seconds` at most. */
const waitUntil = (
  what: string,
  check: Effect.Effect<boolean, AdminError>,
  seconds: number
): Effect.Effect<void, AdminError> =>
  Effect.suspend(() => {
    const deadline = Date.now() + seconds * 1000
    const loop: Effect.Effect<void, AdminError> = Effect.flatMap(
      Effect.orElseSucceed(check, () => false),
      (ok) =>
        ok
          ? Effect.void
          : Date.now() > deadline
          ? Effect.fail(new AdminError({ operation: what, cause: new Error(`not done after ${seconds} s`) }))
          : Effect.zipRight(Effect.sleep("200 millis"), loop)
    )
    return loop
  })

/** Client ports of this process's TCP connections to `serverPort` (Linux: `/proc`). */
export const ownClientPorts = (serverPort: number): ReadonlySet<number> => {
  const inodes = new Set<string>()
  for (const fd of Fs.readdirSync("/proc/self/fd")) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(Fs.readlinkSync(`/proc/self/fd/${fd}`))
      if (match !== null) inodes.add(match[1]!)
    } catch {
      // closed meanwhile
    }
  }
  const ports = new Set<number>()
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!Fs.existsSync(file)) continue
    for (const line of Fs.readFileSync(file, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10 || !inodes.has(fields[9]!)) continue
      const local = fields[1]!.split(":")
      const remote = fields[2]!.split(":")
      if (parseInt(remote[remote.length - 1]!, 16) === serverPort) ports.add(parseInt(local[local.length - 1]!, 16))
    }
  }
  return ports
}

/** The port of a MariaDB `PROCESSLIST.HOST` (`127.0.0.1:51122`). */
const portOfHost = (host: unknown): number => Number(String(host).split(":").pop())

const sleepMillis = (millis: number) => Effect.sleep(Duration.millis(millis))

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL

export const pg = (url: string): Target => {
  const { host, port } = loopback(url, 5432)
  const adminIds = new Set<number>()
  // .ci/run takes the first cluster version of /etc/postgresql
  const version = () => Fs.readdirSync("/etc/postgresql").sort()[0] ?? "15"
  const isUp = Effect.map(
    command("pg_isready", ["-h", host, "-p", String(port)], { timeout: 10_000 }),
    (result) => result.code === 0
  )

  const connect: Target["connect"] = Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const client = new Pg.Client({
          connectionString: url,
          application_name: "effect-sql-tx-soak-admin",
          connectionTimeoutMillis: 5_000,
          statement_timeout: 60_000
        })
        client.on("error", () => undefined)
        try {
          await client.connect()
        } catch (error) {
          client.end().catch(() => undefined)
          throw error
        }
        const id = (client as unknown as { readonly processID: number }).processID
        adminIds.add(id)
        return { client, id }
      },
      catch: (cause) => new AdminError({ operation: "pg admin connect", cause })
    }),
    ({ client, id }) =>
      Effect.promise(() => {
        adminIds.delete(id)
        return client.end().catch(() => undefined)
      })
  ).pipe(Effect.map(({ client, id }) => ({
    id,
    query: (text: string) =>
      Effect.tryPromise({
        try: () => client.query(text).then((result) => result.rows as ReadonlyArray<Row>),
        catch: (cause) => new AdminError({ operation: text.slice(0, 60), cause })
      })
  })))

  const ours = (rows: ReadonlyArray<Row>) => {
    const ports = ownClientPorts(port)
    return rows.filter((row) => ports.has(Number(row.client_port)) && !adminIds.has(Number(row.pid)))
  }

  return {
    name: "pg",
    description: "PostgreSQL",
    layer: (connections) =>
      PgClient.layer({
        // Deadlocks are looked for after deadlock_timeout (1 s by default): lowered for the session, as the bench.
        url: Redacted.make(
          `${url}${url.includes("?") ? "&" : "?"}options=${encodeURIComponent("-c deadlock_timeout=50ms")}`
        ),
        maxConnections: connections,
        connectTimeout: "5 seconds",
        applicationName: "effect-sql-tx-soak"
      }),
    lockTimeout: Duration.millis(100),
    timeout: Duration.seconds(2),
    holdMillis: [200, 2500],
    connect,
    poolBackends: Effect.scoped(Effect.flatMap(connect, (conn) =>
      Effect.map(
        conn.query(
          "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database() " +
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ),
        (rows) => ours(rows).map((row) => Number(row.pid))
      ))),
    kill: (id) =>
      Effect.map(
        adminQueryWith(connect, `SELECT pg_terminate_backend(${Number(id)}) AS ok`),
        (rows) => rows[0]?.ok === true
      ),
    holdLock: (table, account, millis) =>
      Effect.scoped(Effect.gen(function*() {
        const conn = yield* connect
        yield* conn.query("BEGIN")
        yield* conn.query("SET LOCAL lock_timeout = '5s'")
        const rows = yield* conn.query(`SELECT balance FROM ${table} WHERE id = ${Number(account)} FOR UPDATE`)
        yield* sleepMillis(millis)
        yield* conn.query("ROLLBACK")
        return rows.length === 1
      })),
    restart: Effect.gen(function*() {
      const start = Date.now()
      const result = yield* command("pg_ctlcluster", ["--skip-systemctl-redirect", version(), "main", "restart"])
      if (result.code !== 0) {
        yield* Effect.logWarning(`pg_ctlcluster restart exited with ${result.code}: ${result.output}`)
      }
      yield* waitUntil("PostgreSQL answering after the restart", isUp, 120)
      return { downMillis: Date.now() - start }
    }),
    ensureUp: Effect.gen(function*() {
      if (yield* isUp) return
      yield* Effect.logWarning("PostgreSQL does not answer: starting it")
      yield* command("pg_ctlcluster", ["--skip-systemctl-redirect", version(), "main", "start"])
      yield* waitUntil("PostgreSQL answering", isUp, 120)
    }),
    openTransactions: Effect.scoped(Effect.flatMap(connect, (conn) =>
      Effect.map(
        conn.query(
          "SELECT pid, client_port, state, (now() - xact_start)::text AS age, left(query, 100) AS query " +
            "FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL " +
            "AND pid <> pg_backend_pid()"
        ),
        (rows) =>
          ours(rows).map((row) =>
            `pid ${row.pid} (${row.state}, transaction open for ${row.age}, last statement: ${row.query})`
          )
      ))),
    dispose: Effect.void
  }
}

const adminQueryWith = (
  connect: Target["connect"],
  text: string
): Effect.Effect<ReadonlyArray<Row>, AdminError> => Effect.scoped(Effect.flatMap(connect, (conn) => conn.query(text)))

// ---------------------------------------------------------------------------------------------------------------
// MariaDB

export const mysql = (url: string): Target => {
  const { host, port } = loopback(url, 3306)
  const adminIds = new Set<number>()
  const parsed = new URL(url)
  const user = decodeURIComponent(parsed.username) || "root"
  const password = decodeURIComponent(parsed.password)
  const env = password === "" ? process.env : { ...process.env, MYSQL_PWD: password }
  const mysqladmin = (...args: ReadonlyArray<string>) =>
    command("mysqladmin", ["-h", host, "-P", String(port), "-u", user, ...args], { timeout: 120_000, env })
  const isUp = Effect.map(mysqladmin("ping"), (result) => result.code === 0)
  // .ci/run starts MariaDB so, as root (the server switches to the `mysql` user of its configuration)
  const start = command("start-stop-daemon", ["--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"])
  const running = Effect.map(
    command("start-stop-daemon", ["--status", "--exec", "/usr/sbin/mariadbd"]),
    (result) => result.code === 0
  )

  const connect: Target["connect"] = Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const conn = Mysql.createConnection({ uri: url, connectTimeout: 5_000 })
        conn.on("error", () => undefined)
        try {
          await conn.promise().connect()
        } catch (error) {
          conn.destroy()
          throw error
        }
        adminIds.add(conn.threadId)
        return conn
      },
      catch: (cause) => new AdminError({ operation: "mysql admin connect", cause })
    }),
    (conn) =>
      Effect.sync(() => {
        adminIds.delete(conn.threadId)
        conn.destroy()
      })
  ).pipe(Effect.map((conn) => ({
    id: conn.threadId,
    query: (text: string) =>
      Effect.tryPromise({
        try: () => conn.promise().query(text).then(([rows]) => (Array.isArray(rows) ? rows : []) as ReadonlyArray<Row>),
        catch: (cause) => new AdminError({ operation: text.slice(0, 60), cause })
      })
  })))

  const ours = (rows: ReadonlyArray<Row>) => {
    const ports = ownClientPorts(port)
    return rows.filter((row) => ports.has(portOfHost(row.host)) && !adminIds.has(Number(row.id)))
  }

  return {
    name: "mysql",
    description: "MariaDB",
    layer: (connections) => MysqlClient.layer({ url: Redacted.make(url), maxConnections: connections }),
    // InnoDB counts lock waits in whole seconds
    lockTimeout: Duration.seconds(1),
    timeout: Duration.seconds(3),
    holdMillis: [1500, 4000],
    connect,
    poolBackends: Effect.scoped(Effect.flatMap(connect, (conn) =>
      Effect.map(
        conn.query(
          "SELECT ID AS id, HOST AS host FROM information_schema.PROCESSLIST " +
            "WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND <> 'Killed'"
        ),
        (rows) => ours(rows).map((row) => Number(row.id))
      ))),
    kill: (id) =>
      adminQueryWith(connect, `KILL ${Number(id)}`).pipe(
        Effect.as(true),
        // ER_NO_SUCH_THREAD: it went away meanwhile
        Effect.catchIf((error) => (error.cause as { readonly errno?: unknown })?.errno === 1094, () =>
          Effect.succeed(false))
      ),
    holdLock: (table, account, millis) =>
      Effect.scoped(Effect.gen(function*() {
        const conn = yield* connect
        yield* conn.query("SET SESSION innodb_lock_wait_timeout = 5")
        yield* conn.query("START TRANSACTION")
        const rows = yield* conn.query(`SELECT balance FROM ${table} WHERE id = ${Number(account)} FOR UPDATE`)
        yield* sleepMillis(millis)
        yield* conn.query("ROLLBACK")
        return rows.length === 1
      })),
    restart: Effect.gen(function*() {
      const began = Date.now()
      const stopped = yield* mysqladmin("shutdown")
      if (stopped.code !== 0) {
        yield* Effect.logWarning(`mysqladmin shutdown exited with ${stopped.code}: ${stopped.output}`)
      }
      yield* waitUntil("MariaDB stopped", Effect.map(running, (up) => !up), 120)
      yield* start
      yield* waitUntil("MariaDB answering after the restart", isUp, 120)
      return { downMillis: Date.now() - began }
    }),
    ensureUp: Effect.gen(function*() {
      if (yield* isUp) return
      yield* Effect.logWarning("MariaDB does not answer: starting it")
      // a shutdown may still be under way
      yield* waitUntil("MariaDB stopped", Effect.map(running, (up) => !up), 120).pipe(Effect.ignore)
      yield* start
      yield* waitUntil("MariaDB answering", isUp, 120)
    }),
    openTransactions: Effect.scoped(Effect.flatMap(connect, (conn) =>
      Effect.map(
        conn.query(
          "SELECT t.trx_mysql_thread_id AS id, p.HOST AS host, p.DB AS db, t.trx_state AS state, " +
            "t.trx_started AS started, LEFT(t.trx_query, 100) AS query " +
            "FROM information_schema.INNODB_TRX t " +
            "LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id " +
            "WHERE t.trx_mysql_thread_id <> CONNECTION_ID()"
        ),
        (rows) =>
          ours(rows).map((row) =>
            `thread ${row.id} (${row.state} since ${String(row.started)}, db ${row.db}, statement: ${row.query})`
          )
      ))),
    dispose: Effect.void
  }
}

// ---------------------------------------------------------------------------------------------------------------
// SQLite

/**
 * Holds SQLite's write lock from another process (a thread of this one would stop with the workers: better-sqlite3
 * waits for a lock synchronously, blocking the event loop).
 */
const holdSqliteLock = `
const Database = require("better-sqlite3")
const [file, millis] = process.argv.slice(1)
const db = new Database(file, { timeout: 5000 })
try { db.exec("BEGIN IMMEDIATE") } catch (error) { console.log("busy"); process.exit(0) }
console.log("locked")
setTimeout(() => { db.exec("ROLLBACK"); db.close() }, Number(millis))
`

export const sqlite = (): Target => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-sql-tx-soak-"))
  const filename = Path.join(dir, "soak.db")
  const root = Path.resolve(import.meta.dirname, "../..")

  const connect: Target["connect"] = Effect.acquireRelease(
    Effect.try({
      try: () => new BetterSqlite3(filename, { timeout: 5_000 }),
      catch: (cause) => new AdminError({ operation: "sqlite admin open", cause })
    }),
    (db) => Effect.sync(() => db.close())
  ).pipe(Effect.map((db) => ({
    id: 0,
    query: (text: string) =>
      Effect.try({
        try: () => {
          const statement = db.prepare(text)
          if (statement.reader) return statement.all() as ReadonlyArray<Row>
          statement.run()
          return []
        },
        catch: (cause) => new AdminError({ operation: text.slice(0, 60), cause })
      })
  })))

  return {
    name: "sqlite",
    description: "SQLite",
    layer: () => SqliteClient.layer({ filename }),
    lockTimeout: Duration.millis(100),
    timeout: Duration.seconds(2),
    holdMillis: [150, 600],
    connect,
    poolBackends: Effect.succeed([]),
    kill: undefined,
    holdLock: (_table, _account, millis) =>
      Effect.map(
        command(process.execPath, ["-e", holdSqliteLock, filename, String(millis)], { cwd: root, timeout: 30_000 }),
        (result) => result.output.includes("locked")
      ),
    restart: undefined,
    ensureUp: Effect.void,
    // One connection, in this process: another connection can take the write lock only if no transaction holds it.
    openTransactions: Effect.scoped(Effect.gen(function*() {
      const conn = yield* connect
      yield* conn.query("PRAGMA busy_timeout = 0")
      return yield* conn.query("BEGIN IMMEDIATE").pipe(
        Effect.zipRight(conn.query("ROLLBACK")),
        Effect.as([]),
        Effect.catchAll((error) => Effect.succeed([`the database's write lock is held: ${error.message}`]))
      )
    })),
    dispose: Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  }
}
