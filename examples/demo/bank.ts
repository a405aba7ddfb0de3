/**
 * The demo's workload: concurrent bank transfers through `Transaction.atomic`, then a summary that checks the books
 * and asks the monitor for its view.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Data, Duration, Effect, Fiber, Layer, Random } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionLayer,
  TransactionMetrics,
  TransactionMonitor,
  withRetry
} from "../../src/index.js"
import * as TransactionDashboard from "../../src/TransactionDashboard.js"
import * as Database from "./database.js"
import { Progress } from "./progress.js"

export interface BankOptions {
  readonly duration: Duration.Duration
  readonly workers: number
  readonly accounts: number
  readonly database: Database.Database
  /** The dashboard's port; 0, or a taken one, serves on a free port. */
  readonly port: number
  /** Keep the dashboard up after the summary, until interrupted. */
  readonly serve: boolean
}

/** The sum of the balances or the transfer log do not match the transfers committed. */
export class InvariantBroken extends Data.TaggedError("InvariantBroken")<{
  readonly total: number
  readonly expected: number
  readonly logged: number
  readonly committed: number
}> {
  override get message() {
    return `the balance invariant is broken: the balances sum to ${this.total} (expected ${this.expected}), ` +
      `the transfer log holds ${this.logged} rows (expected ${this.committed})`
  }
}

class InsufficientFunds extends Data.TaggedError("InsufficientFunds")<{ readonly account: number }> {}

const initialBalance = 1_000

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

/** The dashboard on `port`, or on a free port when that one is taken. */
const dashboardLayer = (port: number) =>
  TransactionDashboard.layer({ port }).pipe(
    Layer.catchAll((error) =>
      Layer.unwrapEffect(
        Effect.as(
          Effect.logWarning(`${error.message}; serving on a free port instead`),
          TransactionDashboard.layer({ port: 0 })
        )
      )
    )
  )

/**
 * Runs the workload for `options.duration` and prints the summary; fails with `InvariantBroken` when the books do
 * not balance.
 */
export const run = (options: BankOptions): Effect.Effect<void, unknown, Progress> =>
  program(options).pipe(
    Effect.scoped,
    Effect.provide(
      dashboardLayer(options.port).pipe(
        Layer.provideMerge(MonitorLive),
        Layer.provideMerge(TransactionLayer),
        Layer.provideMerge(Database.layer(options.database, options.workers))
      )
    )
  )

const program = Effect.fnUntraced(function*({ accounts, duration, serve, workers }: BankOptions) {
  const sql = yield* SqlClient.SqlClient
  const progress = yield* Progress
  const dialect = sql.onDialectOrElse({ pg: () => "PostgreSQL", mysql: () => "MySQL/MariaDB", orElse: () => "SQLite" })
  yield* Effect.log(
    `effect-sql-tx demo on ${dialect}: ${workers} workers, ${accounts} accounts, ${Duration.format(duration)}`
  )
  const dashboard = yield* TransactionDashboard.DashboardServer
  yield* Effect.log(`dashboard: ${dashboard.url}`)

  // Tables of this run only: demos (and tests) may share a database, and a name reused from a run that was killed
  // before dropping its tables would not be free.
  const suffix = `${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  const accountsTable = `demo_accounts_${suffix}`
  const transfersTable = `demo_transfers_${suffix}`
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
  yield* Effect.log(`tables: ${accountsTable}, ${transfersTable} (dropped at the end)`)

  /** How transfer attempts failed, by error. */
  const retried = new Map<string, number>()

  /**
   * Moves money from one account to another; both updates or none. Accounts are updated in the order given (no
   * lock ordering), so concurrent transfers deadlock now and then: `lockTimeout` turns long lock waits into quick
   * `LockTimeout`s (PostgreSQL looks for deadlocks only after a second), and `withRetry` runs the transfer again.
   */
  const transfer = (from: number, to: number, amount: number) =>
    Effect.gen(function*() {
      yield* sql`UPDATE ${sql(accountsTable)} SET balance = balance - ${amount} WHERE id = ${from}`
      yield* sql`UPDATE ${sql(accountsTable)} SET balance = balance + ${amount} WHERE id = ${to}`
      const [{ balance }] = yield* sql<{ balance: number }>`
        SELECT balance FROM ${sql(accountsTable)} WHERE id = ${from}`
      if (Number(balance) < 0) return yield* new InsufficientFunds({ account: from })
      yield* sql`INSERT INTO ${
        sql(transfersTable)
      } (from_account, to_account, amount) VALUES (${from}, ${to}, ${amount})`
    }).pipe(
      Transaction.atomic({ name: "transfer", lockTimeout: "50 millis", timeout: "5 seconds" }),
      Effect.tapError((error) => Effect.sync(() => retried.set(error._tag, (retried.get(error._tag) ?? 0) + 1))),
      withRetry(RetryPolicy.exponential({ base: "5 millis", times: 20, maxDelay: "200 millis" }))
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

  const started = Date.now()
  const progressLine = () =>
    `${Math.round((Date.now() - started) / 1000)}s: committed ${stats.committed}, ` +
    `rolled back for insufficient funds ${stats.insufficient}, ` +
    `failed ${[...stats.failed.values()].reduce((a, b) => a + b, 0)}`
  const reporter = yield* Effect.forkScoped(
    Effect.forever(Effect.zipRight(Effect.sleep("1 second"), Effect.suspend(() => progress.update(progressLine()))))
  )
  const running = yield* Effect.fork(
    Effect.all(Array.from({ length: workers }, () => worker), { concurrency: "unbounded", discard: true })
  )
  yield* Effect.sleep(duration)
  stopping = true
  yield* Fiber.join(running)
  yield* Fiber.interrupt(reporter)
  yield* progress.end
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
  if (!invariant) {
    return yield* new InvariantBroken({
      total: Number(total),
      expected,
      logged: Number(logged),
      committed: stats.committed
    })
  }
  if (serve) {
    yield* Effect.log(`dashboard: ${dashboard.url} (--serve: Ctrl-C to stop)`)
    return yield* Effect.never
  }
})
