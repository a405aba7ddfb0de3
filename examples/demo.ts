/**
 * `npm start`: concurrent bank transfers through `Transaction.atomic`, on embedded SQLite by default, or on the
 * database of `DATABASE_URL` (`postgres://…` or `mysql://…`).
 *
 *   npm start -- --duration 5 --workers 8 --accounts 10 [--port 9464] [--serve]
 *
 * The dashboard is served while the workload runs (its URL is printed); with `--serve` it stays up after the
 * summary, until Ctrl-C.
 */
import { NodeRuntime } from "@effect/platform-node"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Data, Duration, Effect, Fiber, Layer, Random, Redacted } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import {
  RetryPolicy,
  Transaction,
  TransactionLayer,
  TransactionMetrics,
  TransactionMonitor,
  withRetry
} from "../src/index.js"
import * as TransactionDashboard from "../src/TransactionDashboard.js"

const flag = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(`--${name}`)
  const value = index === -1 ? undefined : Number(process.argv[index + 1])
  if (value === undefined) return fallback
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`)
  return value
}

const duration = Duration.seconds(flag("duration", 5))
const port = process.argv.includes("--port") ? flag("port", 9464) : 9464
const serve = process.argv.includes("--serve")
const workers = flag("workers", 8)
const accounts = flag("accounts", 10)
const initialBalance = 1_000

const databaseUrl = process.env.DATABASE_URL
const ClientLive: Layer.Layer<SqlClient.SqlClient, unknown> = databaseUrl?.startsWith("postgres")
  ? PgClient.layer({ url: Redacted.make(databaseUrl), maxConnections: workers })
  : databaseUrl?.startsWith("mysql")
  ? MysqlClient.layer({ url: Redacted.make(databaseUrl), maxConnections: workers })
  : Layer.unwrapScoped(Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-sql-tx-demo-"))),
      (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
    ),
    (dir) => SqliteClient.layer({ filename: Path.join(dir, "bank.db") })
  ))

/**
 * The monitor, at a demo's pace: a snapshot a second, and rules that look at the last 5 seconds and fire after 2
 * (the defaults: a minute, and 10 s to a minute).
 */
const demoRuleNames: ReadonlyArray<TransactionMonitor.DefaultRuleName> = [
  "failure-rate",
  "deadlock-rate",
  "serialization-failure-rate",
  "timeout-rate",
  "lock-timeout-rate",
  "retries-per-commit",
  "p99-duration",
  "long-running",
  "pool-saturation",
  "hook-failures",
  "savepoint-budget"
]
const MonitorLive = TransactionMonitor.layer({
  interval: "1 second",
  rules: TransactionMonitor.defaultRules({
    ...Object.fromEntries(demoRuleNames.map((name) => [name, { for: "2 seconds", window: "5 seconds" }])),
    anomaly: false
  })
})

/** The dashboard on `--port` (9464), or on a free port when that one is taken. */
const DashboardLive = TransactionDashboard.layer({ port }).pipe(
  Layer.catchAll((error) =>
    Layer.unwrapEffect(
      Effect.as(
        Effect.logWarning(`${error.message}; serving on a free port instead`),
        TransactionDashboard.layer({ port: 0 })
      )
    )
  )
)

class InsufficientFunds extends Data.TaggedError("InsufficientFunds")<{ readonly account: number }> {}

const suffix = `${process.pid}`
const accountsTable = `demo_accounts_${suffix}`
const transfersTable = `demo_transfers_${suffix}`

/** How transfer attempts failed, by error. */
const retried = new Map<string, number>()

/**
 * Moves money from one account to another; both updates or none. Accounts are updated in the order given (no lock
 * ordering), so concurrent transfers deadlock now and then: `lockTimeout` turns long lock waits into quick
 * `LockTimeout`s (PostgreSQL looks for deadlocks only after a second), and `withRetry` runs the transfer again.
 */
const transfer = (from: number, to: number, amount: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE ${sql(accountsTable)} SET balance = balance - ${amount} WHERE id = ${from}`
    yield* sql`UPDATE ${sql(accountsTable)} SET balance = balance + ${amount} WHERE id = ${to}`
    const [{ balance }] = yield* sql<{ balance: number }>`
      SELECT balance FROM ${sql(accountsTable)} WHERE id = ${from}`
    if (Number(balance) < 0) return yield* new InsufficientFunds({ account: from })
    yield* sql`INSERT INTO ${sql(transfersTable)} (from_account, to_account, amount) VALUES (${from}, ${to}, ${amount})`
  }).pipe(
    Transaction.atomic({ name: "transfer", lockTimeout: "50 millis", timeout: "5 seconds" }),
    Effect.tapError((error) => Effect.sync(() => retried.set(error._tag, (retried.get(error._tag) ?? 0) + 1))),
    withRetry(RetryPolicy.exponential({ base: "5 millis", times: 20, maxDelay: "200 millis" }))
  )

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const dialect = sql.onDialectOrElse({ pg: () => "PostgreSQL", mysql: () => "MySQL/MariaDB", orElse: () => "SQLite" })
  yield* Effect.log(
    `effect-sql-tx demo on ${dialect}: ${workers} workers, ${accounts} accounts, ${Duration.format(duration)}`
  )
  const dashboard = yield* TransactionDashboard.DashboardServer
  yield* Effect.log(`dashboard: ${dashboard.url}`)

  yield* Effect.acquireRelease(
    Effect.gen(function*() {
      yield* sql.unsafe(`CREATE TABLE ${accountsTable} (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)`)
      yield* sql.unsafe(
        `CREATE TABLE ${transfersTable} (from_account INTEGER NOT NULL, to_account INTEGER NOT NULL, amount INTEGER NOT NULL)`
      )
      yield* sql`INSERT INTO ${sql(accountsTable)} ${
        sql.insert(Array.from({ length: accounts }, (_, id) => ({ id, balance: initialBalance })))
      }`.pipe(Transaction.atomic({ name: "setup" }))
    }),
    () =>
      Effect.ignore(
        Effect.zipRight(sql.unsafe(`DROP TABLE ${accountsTable}`), sql.unsafe(`DROP TABLE ${transfersTable}`))
      )
  )

  const stats = { committed: 0, insufficient: 0, failed: new Map<string, number>() }
  let stopping = false
  const oneTransfer = Effect.gen(function*() {
    const from = yield* Random.nextIntBetween(0, accounts)
    const to = (from + (yield* Random.nextIntBetween(1, accounts))) % accounts
    const amount = yield* Random.nextIntBetween(1, 400)
    yield* transfer(from, to, amount).pipe(
      Effect.tap(() => stats.committed++),
      Effect.catchAll((error) =>
        Effect.sync(() => {
          if (error._tag === "InsufficientFunds") stats.insufficient++
          else stats.failed.set(error._tag, (stats.failed.get(error._tag) ?? 0) + 1)
        })
      )
    )
  })
  // Workers finish the transfer in hand and stop: interrupting them would lose the count of a committed one.
  // Between transfers they let the event loop turn: SQLite runs in process without I/O, and fibers that only ever
  // hand work to each other would starve the timers (the progress line, the end of the run, the timeouts).
  const yieldToEventLoop = Effect.async<void>((resume) => {
    const handle = setImmediate(() => resume(Effect.void))
    return Effect.sync(() => clearImmediate(handle))
  })
  const worker = Effect.whileLoop({
    while: () => !stopping,
    body: () => Effect.zipRight(oneTransfer, yieldToEventLoop),
    step: () => undefined
  })

  const progress = Effect.gen(function*() {
    yield* Effect.sleep("1 second")
    yield* Effect.log(
      `committed ${stats.committed}, rolled back for insufficient funds ${stats.insufficient}, ` +
        `failed ${[...stats.failed.values()].reduce((a, b) => a + b, 0)}`
    )
  }).pipe(Effect.forever)

  const started = Date.now()
  yield* Effect.forkScoped(progress)
  const running = yield* Effect.fork(
    Effect.all(Array.from({ length: workers }, () => worker), { concurrency: "unbounded", discard: true })
  )
  yield* Effect.sleep(duration)
  stopping = true
  yield* Fiber.join(running)
  const seconds = (Date.now() - started) / 1000

  const [{ total }] = yield* sql<{ total: number }>`SELECT SUM(balance) AS total FROM ${sql(accountsTable)}`
  const [{ logged }] = yield* sql<{ logged: number }>`SELECT COUNT(*) AS logged FROM ${sql(transfersTable)}`
  const metrics = (yield* TransactionMetrics.snapshot).byName["transfer"]
  const expected = accounts * initialBalance
  const invariant = Number(total) === expected && Number(logged) === stats.committed
  yield* Effect.log("summary").pipe(Effect.annotateLogs({
    committed: stats.committed,
    "committed/s": Math.round(stats.committed / seconds),
    "rolled back (insufficient funds)": stats.insufficient,
    failed: JSON.stringify(Object.fromEntries(stats.failed)),
    "failed attempts (retried unless counted in failed)": JSON.stringify(
      Object.fromEntries([...retried].filter(([tag]) => tag !== "InsufficientFunds"))
    ),
    "sum of balances": `${total} (expected ${expected})`,
    "transfer log rows": `${logged} (expected ${stats.committed})`,
    "metrics (transfer)": metrics === undefined ? "none" : JSON.stringify({
      started: metrics.started,
      committed: metrics.committed,
      rolledBack: metrics.rolledBack,
      deadlocks: metrics.deadlocks,
      lockTimeouts: metrics.lockTimeouts,
      retries: metrics.retries,
      successRate: Number(metrics.successRate.toFixed(3)),
      "p50 ms": metrics.duration.p50 * 1000,
      "p99 ms": metrics.duration.p99 * 1000
    }),
    invariant: invariant ? "holds" : "BROKEN"
  }))
  const monitor = yield* TransactionMonitor.TransactionMonitor
  yield* monitor.takeSnapshot
  const health = yield* monitor.health
  const open = yield* monitor.alerts({ status: "open" })
  yield* Effect.log(`monitor: health ${health.score}/100, ${health.status}; ${open.length} open alert(s)`)
  for (const alert of open) yield* Effect.log(`  alert [${alert.level}] ${alert.rule}: ${alert.message}`)
  for (const recommendation of (yield* monitor.recommendations).slice(0, 3)) {
    yield* Effect.log(`  recommendation (${recommendation.title}): ${recommendation.advice}`)
  }
  if (!invariant) return yield* Effect.dieMessage("the balance invariant is broken")
  if (serve) {
    yield* Effect.log(`dashboard: ${dashboard.url} (--serve: Ctrl-C to stop)`)
    return yield* Effect.never
  }
})

program.pipe(
  Effect.scoped,
  Effect.provide(
    DashboardLive.pipe(
      Layer.provideMerge(MonitorLive),
      Layer.provideMerge(TransactionLayer),
      Layer.provideMerge(ClientLive)
    )
  ),
  NodeRuntime.runMain
)
