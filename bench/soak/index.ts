/**
 * `npm run soak`: the bank workload through `Transaction.atomic` + `withRetry` for minutes, with faults injected at
 * random, and the books checked all along and at the end.
 *
 *   npm run soak -- --minutes 1                           # PostgreSQL, MariaDB and SQLite in turn, 1 minute each
 *   npm run soak -- --minutes 10 --database pg --json soak.json
 *   npm run soak -- --minutes 1 --database mysql --no-restart
 *
 * Options: `--minutes N` (per database; decimals allowed), `--database pg|mysql|sqlite` (or a comma list; all three
 * by default), `--json FILE` (the report: one object, or an array when several databases ran), `--workers N` (16),
 * `--accounts N` (20), `--interrupt-rate R` (the share of transfers interrupted, 0.03), `--no-restart` (no server
 * restarts), `--no-faults` (no faults at all: a baseline).
 * Targets: `PG_URL` and `MYSQL_URL` as for the tests, 127.0.0.1 only. It kills connections and restarts servers:
 * run it alone, `flock /tmp/effect-sql-tx-db.lock npm run soak -- …` on a shared machine.
 *
 * Each transfer has an id made by the client; a worker moves an amount between two accounts and writes a log row
 * under that id (its primary key), in one `Transaction.atomic` under `withRetry`, and records what it was told:
 * committed, failed (by error), `CommitOutcomeUnknown`, interrupted. At the end the log is read back: a transfer
 * reported committed must be there (else `lost`), one reported failed must not be (else `phantom`), the others may
 * be either; every account's balance must equal its initial balance plus what the log says it received less what
 * it sent (so a transfer applied without its log row, applied twice, or half-applied shows), and the total must not
 * have moved (checked every 2 s during the run too). No connection of the pool may be left inside a transaction,
 * on the server or in the manager's registry. The process exits non-zero when any of that fails.
 */
import { NodeRuntime } from "@effect/platform-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Data, Duration, Effect, type Exit, Fiber, Layer, Logger, LogLevel, Schedule } from "effect"
import * as Fs from "node:fs"
import {
  RetryPolicy,
  Transaction,
  TransactionLayer,
  TransactionManager,
  TransactionMetrics,
  withRetry
} from "../../src/index.js"
import { errorName, Ledger, reconcile, type Reconciliation, Status } from "./ledger.js"
import * as Targets from "./targets.js"

// ---------------------------------------------------------------------------------------------------------------
// options

const args = process.argv.slice(2)
const flags = new Set(["--no-restart", "--no-faults"])
const valued = new Set(["--minutes", "--database", "--json", "--workers", "--accounts", "--interrupt-rate"])
for (let i = 0; i < args.length; i++) {
  if (valued.has(args[i]!)) i++
  else if (!flags.has(args[i]!)) throw new Error(`unknown option ${args[i]}`)
}
const option = (name: string): string | undefined => {
  const index = args.indexOf(`--${name}`)
  return index === -1 ? undefined : args[index + 1]
}
const positive = (name: string, fallback: number, integer: boolean): number => {
  const text = option(name)
  const value = text === undefined ? fallback : Number(text)
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`--${name} needs a positive ${integer ? "whole number" : "number"} (got ${text})`)
  }
  return value
}

const minutes = positive("minutes", 1, false)
const workers = positive("workers", 16, true)
const accounts = positive("accounts", 20, true)
if (accounts < 2) throw new Error("--accounts needs at least 2 accounts")
const jsonFile = option("json")
const faultsEnabled = !args.includes("--no-faults")
const restartsEnabled = faultsEnabled && !args.includes("--no-restart")
const databases = (option("database") ?? Targets.databaseNames.join(",")).split(",").map((name) => {
  if (!(Targets.databaseNames as ReadonlyArray<string>).includes(name)) {
    throw new Error(`--database: pg, mysql or sqlite (got ${name})`)
  }
  return name as Targets.DatabaseName
})

const pgUrl = process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const mysqlUrl = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"

const initialBalance = 1_000_000
/** The share of transfers that the soak interrupts (Fiber.interrupt after 0-5 ms). */
const interruptRate = positive("interrupt-rate", 0.03, false)
if (interruptRate > 1) throw new Error("--interrupt-rate is a share of the transfers, at most 1")
/** The end of the run leaves this long to the transfers in hand before interrupting them. */
const drainSeconds = 60
/** No server restart closer than this to the start or the end of the run, nor to the previous one (~30 s). */
const restartGapMillis = 30_000

/** The admin side's queries after a restart: the server may still be starting. */
const adminRetry = { times: 10, schedule: Schedule.spaced("1 second") }

const retryPolicy = RetryPolicy.exponential({ base: "5 millis", factor: 2, times: 25, maxDelay: "500 millis" })

// ---------------------------------------------------------------------------------------------------------------
// the report

export interface Report {
  readonly database: Targets.DatabaseName
  readonly minutes: number
  readonly seconds: number
  readonly workers: number
  readonly accounts: number
  readonly restartsEnabled: boolean
  readonly faultsEnabled: boolean
  /** Transfers started (each with its own id). */
  readonly transfers: number
  /** Transfers that the workers were told committed. */
  readonly committed: number
  readonly committedPerSecond: number
  /** Transfers that ended with a typed error other than CommitOutcomeUnknown (after retries), by error. */
  readonly failedByError: Readonly<Record<string, number>>
  readonly commitOutcomeUnknown: number
  /** Transfers that the soak interrupted before they ended. */
  readonly interrupted: number
  readonly defects: number
  /** Failed attempts that withRetry ran again (counted by the workers), and by error. */
  readonly retries: number
  readonly retriesByError: Readonly<Record<string, number>>
  /** `transaction_retries_total` over this run, as the library counted them. */
  readonly metricsRetries: number
  readonly faultsInjected: Readonly<Record<string, number>>
  /** Faults that could not be injected (an admin error, a lock not taken), by kind and message. */
  readonly faultErrors: Readonly<Record<string, number>>
  readonly restarts: ReadonlyArray<{ readonly atSecond: number; readonly downMillis: number }>
  /** Transfers committed after the last restart ended (the workload recovered). */
  readonly committedAfterLastRestart: number | null
  /** Every way a transfer ended other than committed, and whether its log row exists. */
  readonly outcomesByError: Reconciliation["outcomesByError"]
  readonly lost: number
  readonly duplicated: number
  readonly phantom: number
  readonly unexpectedLogRows: number
  /** Accounts whose balance differs from initial + credits − debits of the log. */
  readonly balanceMismatches: number
  /** Sum of balances − initial total. */
  readonly balanceDrift: number
  readonly leakedConnections: number
  readonly leaks: ReadonlyArray<string>
  /**
   * When balances do not match the log: the transfers, not reported committed and without a log row, whose amount
   * is an account's discrepancy (the likely culprits).
   */
  readonly suspects: ReadonlyArray<Record<string, unknown>>
  readonly invariantChecks: {
    readonly run: number
    readonly failed: number
    /** Checks that could not run (the server was restarting): not failures. */
    readonly errors: number
    readonly failures: ReadonlyArray<string>
  }
  /** Warnings and errors that the library logged, by message. */
  readonly libraryWarnings: Readonly<Record<string, number>>
  readonly defectSamples: ReadonlyArray<string>
  /** Whether transfers still in hand at the end had to be interrupted after the drain time. */
  readonly forcedStop: boolean
  readonly timeline: ReadonlyArray<{ readonly second: number; readonly committed: number; readonly failed: number }>
  readonly ok: boolean
  readonly problems: ReadonlyArray<string>
}

class SoakFailed extends Data.TaggedError("SoakFailed")<{ readonly problems: ReadonlyArray<string> }> {
  override get message(): string {
    return `the soak failed:\n- ${this.problems.join("\n- ")}`
  }
}

const increment = (map: Map<string, number>, key: string, by = 1) => map.set(key, (map.get(key) ?? 0) + by)
const randomInt = (n: number) => Math.floor(Math.random() * n)
const between = ([min, max]: readonly [number, number]) => min + randomInt(max - min + 1)
const sum = (map: ReadonlyMap<string, number>) => [...map.values()].reduce((a, b) => a + b, 0)

/** Lets the event loop turn: SQLite runs in process, and fibers that only hand work to each other starve timers. */
const yieldToEventLoop = Effect.async<void>((resume) => {
  const handle = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(handle))
})

/** Counts the warnings and errors that the library logs, by message, and prints the first of each. */
const libraryWarnings = new Map<string, number>()
const countingLogger = Logger.make(({ logLevel, message }) => {
  if (!LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)) return
  const text = (Array.isArray(message) ? message : [message]).map(String).join(" ")
  if (!libraryWarnings.has(text)) console.log(`  [library ${logLevel.label}] ${text}`)
  increment(libraryWarnings, text)
})

// ---------------------------------------------------------------------------------------------------------------
// one database

const soakOne = (target: Targets.Target): Effect.Effect<Report, unknown> =>
  Effect.gen(function*() {
    yield* target.ensureUp
    const suffix = `${process.pid}_${Date.now().toString(36)}`
    const accountsTable = `soak_accounts_${suffix}`
    const logTable = `soak_transfers_${suffix}`
    yield* Effect.scoped(Effect.gen(function*() {
      const admin = yield* target.connect
      yield* admin.query(`CREATE TABLE ${accountsTable} (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)`)
      yield* admin.query(
        `CREATE TABLE ${logTable} (id BIGINT PRIMARY KEY, from_account INTEGER NOT NULL, ` +
          `to_account INTEGER NOT NULL, amount INTEGER NOT NULL)`
      )
      yield* admin.query(
        `INSERT INTO ${accountsTable} (id, balance) VALUES ${
          Array.from({ length: accounts }, (_, id) => `(${id}, ${initialBalance})`).join(", ")
        }`
      )
    }))
    libraryWarnings.clear()
    const run = yield* workload(target, accountsTable, logTable).pipe(
      Effect.provide(TransactionLayer.pipe(Layer.provideMerge(target.layer(workers))))
    )
    yield* target.ensureUp
    const report = yield* verify(target, accountsTable, logTable, run)
    if (report.ok) {
      yield* Effect.ignore(Effect.scoped(Effect.flatMap(target.connect, (admin) =>
        Effect.zipRight(admin.query(`DROP TABLE ${logTable}`), admin.query(`DROP TABLE ${accountsTable}`)))))
    } else if (target.name !== "sqlite") {
      console.log(`  tables kept for inspection: ${accountsTable}, ${logTable}`)
    }
    return report
  }).pipe(
    // Whatever happened, leave the server up.
    Effect.ensuring(Effect.orDie(target.ensureUp)),
    Effect.ensuring(target.dispose)
  )

/** What the run leaves to the verification. */
interface Run {
  readonly seconds: number
  readonly ledger: Ledger
  readonly attemptErrors: ReadonlyMap<string, number>
  readonly faults: ReadonlyMap<string, number>
  readonly faultErrors: ReadonlyMap<string, number>
  readonly restarts: ReadonlyArray<{ readonly atSecond: number; readonly downMillis: number }>
  readonly committedAfterLastRestart: number | undefined
  readonly checks: { run: number; failed: number; errors: number; readonly failures: Array<string> }
  readonly leaks: ReadonlyArray<string>
  readonly metricsRetries: number
  readonly forcedStop: boolean
  readonly notCommitted: ReadonlyArray<TransferDetail>
  readonly timeline: ReadonlyArray<{ readonly second: number; readonly committed: number; readonly failed: number }>
}

/** A transfer, as its worker made it and saw it end. */
interface TransferDetail {
  readonly id: number
  readonly from: number
  readonly to: number
  readonly amount: number
  readonly options: Transaction.TransactionOptions
  /** The errors of its failed attempts, in order. */
  readonly attempts: Array<string>
  interruptedAfterMillis: number | undefined
  outcome: string
}

/** Sum and count of the accounts (one statement: one snapshot). */
const checkTotal = (target: Targets.Target, accountsTable: string) =>
  Effect.map(
    Targets.adminQuery(target, `SELECT COUNT(*) AS n, SUM(balance) AS total FROM ${accountsTable}`),
    (rows): string | undefined => {
      const n = Number(rows[0]?.n)
      const total = Number(rows[0]?.total)
      return n === accounts && total === accounts * initialBalance
        ? undefined
        : `${n} accounts holding ${total} (expected ${accounts} holding ${accounts * initialBalance})`
    }
  )

interface BalanceCheck {
  readonly mismatched: ReadonlyArray<string>
  /** Balance − what the log says, of the accounts that differ. */
  readonly discrepancies: ReadonlyMap<number, number>
  readonly drift: number
}

/** Every account's balance against the log (one statement: one snapshot). */
const checkBalances = (target: Targets.Target, accountsTable: string, logTable: string) =>
  Effect.map(
    Targets.adminQuery(
      target,
      `SELECT a.id AS id, a.balance AS balance, COALESCE(c.s, 0) AS credited, COALESCE(d.s, 0) AS debited ` +
        `FROM ${accountsTable} a ` +
        `LEFT JOIN (SELECT to_account AS account, SUM(amount) AS s FROM ${logTable} GROUP BY to_account) c ` +
        `ON c.account = a.id ` +
        `LEFT JOIN (SELECT from_account AS account, SUM(amount) AS s FROM ${logTable} GROUP BY from_account) d ` +
        `ON d.account = a.id`
    ),
    (rows): BalanceCheck => {
      const mismatched: Array<string> = []
      const discrepancies = new Map<number, number>()
      let total = 0
      for (const row of rows) {
        const balance = Number(row.balance)
        const expected = initialBalance + Number(row.credited) - Number(row.debited)
        total += balance
        if (balance !== expected) {
          mismatched.push(`account ${row.id}: ${balance}, the log says ${expected}`)
          discrepancies.set(Number(row.id), balance - expected)
        }
      }
      return { mismatched, discrepancies, drift: total - accounts * initialBalance }
    }
  )

const workload = (target: Targets.Target, accountsTable: string, logTable: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const manager = yield* TransactionManager.TransactionManager
    const ledger = new Ledger()
    const notCommitted: Array<TransferDetail> = []
    const attemptErrors = new Map<string, number>()
    const faults = new Map<string, number>()
    const faultErrors = new Map<string, number>()
    const restarts: Array<{ atSecond: number; downMillis: number }> = []
    const checks = { run: 0, failed: 0, errors: 0, failures: [] as Array<string> }
    const timeline: Array<{ second: number; committed: number; failed: number }> = []
    let committed = 0
    let ended = 0
    let committedAfterLastRestart: number | undefined = undefined
    let restarting = false
    let workersDone = false

    // The metrics are the process's: this run's retries are the difference.
    const retriesBefore = (yield* TransactionMetrics.snapshot).overall.retries
    const started = Date.now()
    const deadline = started + minutes * 60_000
    const running = () => Date.now() < deadline
    const second = () => Math.round((Date.now() - started) / 1000)
    const faultFailed = (kind: string) => (error: { readonly message: string }) =>
      Effect.sync(() => {
        increment(faultErrors, `${kind}: ${error.message.split("\n")[0]!.slice(0, 100)}`)
      })

    // Every transfer is one of these: with and without lockTimeout, timeout and an isolation level.
    const variants: ReadonlyArray<Transaction.TransactionOptions> = [
      { name: `soak ${target.name}/plain` },
      { name: `soak ${target.name}/lock_timeout`, lockTimeout: target.lockTimeout },
      { name: `soak ${target.name}/timeout`, timeout: target.timeout },
      {
        name: `soak ${target.name}/all`,
        isolation: "repeatable read",
        lockTimeout: target.lockTimeout,
        timeout: target.timeout
      }
    ]

    const transfer = ({ amount, attempts, from, id, options, to }: TransferDetail) =>
      Effect.gen(function*() {
        yield* sql`UPDATE ${sql(accountsTable)} SET balance = balance - ${amount} WHERE id = ${from}`
        yield* sql`UPDATE ${sql(accountsTable)} SET balance = balance + ${amount} WHERE id = ${to}`
        yield* sql`INSERT INTO ${sql(logTable)} (id, from_account, to_account, amount)
          VALUES (${id}, ${from}, ${to}, ${amount})`
      }).pipe(
        Transaction.atomic(options),
        Effect.tapError((error) =>
          Effect.sync(() => {
            increment(attemptErrors, errorName(error))
            attempts.push(errorName(error))
          })
        ),
        withRetry(retryPolicy)
      )

    const worker = Effect.gen(function*() {
      while (running()) {
        const from = randomInt(accounts)
        const detail: TransferDetail = {
          id: ledger.next(),
          from,
          to: (from + 1 + randomInt(accounts - 1)) % accounts,
          amount: 1 + randomInt(100),
          options: variants[randomInt(variants.length)]!,
          attempts: [],
          interruptedAfterMillis: undefined,
          outcome: "pending"
        }
        const program = transfer(detail)
        let exit: Exit.Exit<void, unknown>
        if (faultsEnabled && Math.random() < interruptRate) {
          increment(faults, "interrupt")
          const fiber = yield* Effect.fork(program)
          const delay = randomInt(6)
          detail.interruptedAfterMillis = delay
          // 0 ms: at once, before the transfer even started (while it waits for a connection, or at its BEGIN)
          if (delay > 0) yield* Effect.sleep(Duration.millis(delay))
          exit = yield* Fiber.interrupt(fiber)
        } else {
          exit = yield* Effect.exit(program)
        }
        const status = ledger.settle(detail.id, exit)
        ended++
        if (status !== Status.committed && notCommitted.length < 100_000) {
          detail.outcome = ledger.reasonOf(detail.id)
          notCommitted.push(detail)
        }
        if (status === Status.committed) {
          committed++
          if (committedAfterLastRestart !== undefined && !restarting) committedAfterLastRestart++
        }
        yield* yieldToEventLoop
      }
    })

    // Faults other than interruptions: killed backends and held row locks, at random, one lock at a time.
    let holding = false
    const holdLock = Effect.gen(function*() {
      const millis = between(target.holdMillis)
      const taken = yield* target.holdLock(accountsTable, randomInt(accounts), millis)
      if (taken) increment(faults, "lockHold")
      else increment(faultErrors, "lockHold: the admin transaction did not get the lock")
    }).pipe(
      Effect.asVoid,
      Effect.catchAll(faultFailed("lockHold")),
      Effect.ensuring(Effect.sync(() => holding = false))
    )
    const killBackends = Effect.gen(function*() {
      const backends = [...(yield* target.poolBackends)]
      const victims = Math.min(backends.length, 1 + randomInt(2))
      for (let i = 0; i < victims; i++) {
        const [id] = backends.splice(randomInt(backends.length), 1)
        if (yield* target.kill!(id!)) increment(faults, "killBackend")
      }
    }).pipe(Effect.catchAll(faultFailed("killBackend")))
    const injector = Effect.gen(function*() {
      const holders: Array<Fiber.RuntimeFiber<void>> = []
      while (running()) {
        yield* Effect.sleep(Duration.millis(target.kill === undefined ? 1000 + randomInt(3000) : 300 + randomInt(900)))
        if (!running() || restarting) continue
        if (target.kill !== undefined && Math.random() < 0.5) yield* killBackends
        else if (!holding) {
          holding = true
          holders.push(yield* Effect.fork(holdLock))
        }
      }
      yield* Fiber.joinAll(holders)
    })

    // At most one restart per ~30 s, none in the first or last 10 s.
    const restarter = Effect.gen(function*() {
      const restart = target.restart
      if (!restartsEnabled || restart === undefined) return
      let next = started + 10_000 + randomInt(10_000)
      while (next < deadline - 10_000) {
        yield* Effect.sleep(Duration.millis(Math.max(0, next - Date.now())))
        const at = second()
        restarting = true
        console.log(`  [${at} s] restarting ${target.description}`)
        const result = yield* restart.pipe(
          Effect.ensuring(Effect.sync(() => restarting = false)),
          Effect.uninterruptible,
          Effect.either
        )
        if (result._tag === "Left") {
          increment(faultErrors, `restart: ${result.left.message}`)
          console.log(`  [${second()} s] the restart failed: ${result.left.message}`)
        } else {
          increment(faults, "restart")
          restarts.push({ atSecond: at, downMillis: result.right.downMillis })
          committedAfterLastRestart = 0
          console.log(`  [${second()} s] ${target.description} answers again after ${result.right.downMillis} ms`)
        }
        next = Date.now() + restartGapMillis + randomInt(10_000)
      }
    })

    // The total every 2 s, every account against the log every 30 s; progress every 10 s.
    const checker = Effect.gen(function*() {
      let round = 0
      while (!workersDone) {
        yield* Effect.sleep("2 seconds")
        round++
        const check = round % 15 === 0
          ? Effect.map(checkBalances(target, accountsTable, logTable), (result) =>
            result.mismatched.length === 0 && result.drift === 0
              ? undefined
              : `drift ${result.drift}; ${result.mismatched.slice(0, 3).join("; ")}`)
          : checkTotal(target, accountsTable)
        yield* check.pipe(
          Effect.tap((failure) =>
            Effect.sync(() => {
              checks.run++
              if (failure !== undefined) {
                checks.failed++
                if (checks.failures.length < 10) {
                  checks.failures.push(`at ${second()} s: ${failure}`)
                }
                console.log(`  [${second()} s] INVARIANT BROKEN: ${failure}`)
              }
            })
          ),
          Effect.catchAll(() =>
            Effect.sync(() =>
              checks.errors++
            )
          )
        )
        if (round % 5 === 0) {
          timeline.push({ second: second(), committed, failed: ended - committed })
          console.log(
            `  [${second()} s] ${ledger.last} transfers, ${committed} committed, ${
              ended - committed
            } not committed, faults ${JSON.stringify(Object.fromEntries(faults))}`
          )
        }
      }
    })

    console.log(
      `${target.description}: ${workers} workers, ${accounts} accounts, ${minutes} min, ` +
        (faultsEnabled
          ? `faults on${restartsEnabled && target.restart !== undefined ? ", restarts on" : ", no restarts"}`
          : "no faults")
    )
    const workersFiber = yield* Effect.fork(
      Effect.all(Array.from({ length: workers }, () => worker), { concurrency: "unbounded", discard: true })
    )
    const checkerFiber = yield* Effect.fork(checker)
    const faultFibers = faultsEnabled ? [yield* Effect.fork(injector), yield* Effect.fork(restarter)] : []

    yield* Fiber.joinAll(faultFibers)
    yield* Effect.sleep(Duration.millis(Math.max(0, deadline - Date.now())))
    // The workers finish the transfer in hand; those still running after the drain time are interrupted.
    const drained = yield* Fiber.join(workersFiber).pipe(Effect.timeout(Duration.seconds(drainSeconds)), Effect.option)
    if (drained._tag === "None") {
      console.log(`  the workers did not stop within ${drainSeconds} s of the end: interrupting them`)
      yield* Fiber.interrupt(workersFiber)
    }
    const seconds = (Date.now() - started) / 1000
    workersDone = true
    yield* Fiber.join(checkerFiber)

    // Nothing runs now: no connection of the pool may be inside a transaction.
    yield* target.ensureUp
    yield* Effect.sleep("1 second")
    const registry = yield* manager.active
    const server = yield* target.openTransactions.pipe(
      Effect.retry(adminRetry),
      Effect.catchAll((error) => Effect.succeed([`could not look for open transactions: ${error.message}`]))
    )
    const leaks = [
      ...server.map((text) => `server: ${text}`),
      ...registry.map((entry) =>
        `registry: transaction ${entry.id} "${entry.name}" started ${entry.startedAt.toISOString()} on connection ${entry.connectionId}`
      )
    ]

    const metricsRetries = (yield* TransactionMetrics.snapshot).overall.retries - retriesBefore
    return {
      seconds,
      ledger,
      attemptErrors,
      faults,
      faultErrors,
      restarts,
      committedAfterLastRestart,
      checks,
      leaks,
      metricsRetries,
      forcedStop: drained._tag === "None",
      notCommitted,
      timeline
    } satisfies Run
  })

/** Reads the log back and compares it with what the workers were told; checks the balances one last time. */
const verify = (target: Targets.Target, accountsTable: string, logTable: string, run: Run) =>
  Effect.gen(function*() {
    const { checks, ledger } = run
    const final = yield* checkTotal(target, accountsTable).pipe(Effect.retry(adminRetry))
    const balances = yield* checkBalances(target, accountsTable, logTable).pipe(Effect.retry(adminRetry))
    checks.run += 2
    if (final !== undefined) {
      checks.failed++
      checks.failures.push(`final: ${final}`)
    }
    if (balances.mismatched.length > 0 || balances.drift !== 0) {
      checks.failed++
      checks.failures.push(`final: drift ${balances.drift}; ${balances.mismatched.slice(0, 5).join("; ")}`)
    }

    // The log's ids, page by page, into a byte per id.
    let inLog = new Uint8Array(ledger.last + 2)
    let logRows = 0
    let duplicated = 0
    let after = 0
    for (;;) {
      const rows = yield* Targets.adminQuery(
        target,
        `SELECT id FROM ${logTable} WHERE id > ${after} ORDER BY id LIMIT 50000`
      ).pipe(Effect.retry(adminRetry))
      if (rows.length === 0) break
      for (const row of rows) {
        const id = Number(row.id)
        if (id >= inLog.length) {
          const grown = new Uint8Array(id + 1)
          grown.set(inLog)
          inLog = grown
        }
        if (inLog[id] === 1) duplicated++
        inLog[id] = 1
        logRows++
        after = id
      }
    }
    const reconciliation = reconcile(ledger, inLog, logRows)

    const failedByError = new Map<string, number>()
    let commitOutcomeUnknown = 0
    let interrupted = 0
    let defects = 0
    for (const [reason, { total }] of Object.entries(reconciliation.outcomesByError)) {
      if (reason === "CommitOutcomeUnknown") commitOutcomeUnknown += total
      else if (reason === "interrupted") interrupted += total
      else if (reason.startsWith("defect")) defects += total
      else failedByError.set(reason, total)
    }
    // Every final typed failure went through the workers' count of failed attempts too: the rest were retried.
    const retriesByError = new Map<string, number>()
    for (const [reason, count] of run.attemptErrors) {
      const final = reason === "CommitOutcomeUnknown" ? commitOutcomeUnknown : failedByError.get(reason) ?? 0
      if (count - final > 0) retriesByError.set(reason, count - final)
    }

    // Transfers that were not reported committed and have no log row, whose amounts explain a discrepancy.
    const suspects = run.notCommitted.filter((transfer) =>
      inLog[transfer.id] !== 1 &&
      (balances.discrepancies.get(transfer.from) === -transfer.amount ||
        balances.discrepancies.get(transfer.to) === transfer.amount)
    ).slice(0, 20).map((transfer) => ({ ...transfer, options: JSON.stringify(transfer.options) }))

    const problems: Array<string> = []
    if (reconciliation.lost > 0) problems.push(`${reconciliation.lost} transfers reported committed are not in the log`)
    if (duplicated > 0) problems.push(`${duplicated} transfer ids are in the log twice`)
    if (reconciliation.phantom > 0) {
      problems.push(`${reconciliation.phantom} transfers reported failed (typed error) were applied`)
    }
    if (reconciliation.unexpectedLogRows > 0) {
      problems.push(`${reconciliation.unexpectedLogRows} log rows belong to no ended transfer`)
    }
    if (balances.mismatched.length > 0) {
      problems.push(`${balances.mismatched.length} accounts do not match the log: ${balances.mismatched.join("; ")}`)
    }
    if (balances.drift !== 0) problems.push(`the total moved by ${balances.drift}`)
    if (checks.failed > 0) problems.push(`${checks.failed} invariant checks failed: ${checks.failures.join(" | ")}`)
    if (run.leaks.length > 0) problems.push(`${run.leaks.length} connections left in a transaction: ${run.leaks}`)
    if (run.committedAfterLastRestart === 0) problems.push("no transfer committed after the last restart")
    if (reconciliation.committed.total === 0) problems.push("no transfer committed at all")

    return {
      database: target.name,
      minutes,
      seconds: Number(run.seconds.toFixed(1)),
      workers,
      accounts,
      restartsEnabled: restartsEnabled && target.restart !== undefined,
      faultsEnabled,
      transfers: ledger.last,
      committed: reconciliation.committed.total,
      committedPerSecond: Math.round(reconciliation.committed.total / run.seconds),
      failedByError: Object.fromEntries(failedByError),
      commitOutcomeUnknown,
      interrupted,
      defects,
      retries: sum(retriesByError),
      retriesByError: Object.fromEntries(retriesByError),
      metricsRetries: run.metricsRetries,
      faultsInjected: Object.fromEntries(run.faults),
      faultErrors: Object.fromEntries(run.faultErrors),
      restarts: run.restarts,
      committedAfterLastRestart: run.committedAfterLastRestart ?? null,
      outcomesByError: reconciliation.outcomesByError,
      lost: reconciliation.lost,
      duplicated,
      phantom: reconciliation.phantom,
      unexpectedLogRows: reconciliation.unexpectedLogRows,
      balanceMismatches: balances.mismatched.length,
      balanceDrift: balances.drift,
      leakedConnections: run.leaks.length,
      leaks: run.leaks,
      suspects,
      invariantChecks: checks,
      libraryWarnings: Object.fromEntries(libraryWarnings),
      defectSamples: ledger.defects,
      forcedStop: run.forcedStop,
      timeline: run.timeline,
      ok: problems.length === 0,
      problems
    } satisfies Report
  })

const printReport = (report: Report) => {
  console.log(`\n${report.database}: ${report.ok ? "OK" : "FAILED"}`)
  console.table({
    "transfers (committed/s)": `${report.transfers} (${report.committedPerSecond}/s)`,
    committed: report.committed,
    "failed, by error": JSON.stringify(report.failedByError),
    "CommitOutcomeUnknown / interrupted / defects":
      `${report.commitOutcomeUnknown} / ${report.interrupted} / ${report.defects}`,
    "retries (library metric)": `${report.retries} (${report.metricsRetries}) ${JSON.stringify(report.retriesByError)}`,
    "faults injected": JSON.stringify(report.faultsInjected),
    "faults not injected": JSON.stringify(report.faultErrors),
    restarts: report.restarts.map((r) => `at ${r.atSecond} s, down ${r.downMillis} ms`).join("; ") || "none",
    "lost / duplicated / phantom": `${report.lost} / ${report.duplicated} / ${report.phantom}`,
    "balance mismatches / drift": `${report.balanceMismatches} / ${report.balanceDrift}`,
    "leaked connections": report.leakedConnections,
    "invariant checks (failed, could not run)":
      `${report.invariantChecks.run} (${report.invariantChecks.failed}, ${report.invariantChecks.errors})`,
    "library warnings": Object.keys(report.libraryWarnings).length === 0 ? "none" : JSON.stringify(
      report.libraryWarnings
    )
  })
  console.log("outcomes other than committed (applied = its log row exists):")
  console.table(report.outcomesByError)
  for (const problem of report.problems) console.log(`PROBLEM: ${problem}`)
  for (const sample of report.defectSamples) console.log(`defect:\n${sample}`)
  if (report.suspects.length > 0) {
    console.log("transfers that may explain the discrepancies (not reported committed, no log row):")
    console.table(report.suspects)
  }
}

const main = Effect.gen(function*() {
  const reports: Array<Report> = []
  for (const name of databases) {
    const target = name === "pg" ? Targets.pg(pgUrl) : name === "mysql" ? Targets.mysql(mysqlUrl) : Targets.sqlite()
    const report = yield* soakOne(target)
    printReport(report)
    reports.push(report)
  }
  if (jsonFile !== undefined) {
    Fs.writeFileSync(jsonFile, JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2))
    console.log(`written to ${jsonFile}`)
  }
  const problems = reports.flatMap((report) => report.problems.map((problem) => `${report.database}: ${problem}`))
  if (problems.length > 0) return yield* new SoakFailed({ problems })
})

main.pipe(
  Effect.provide(Logger.replace(Logger.defaultLogger, countingLogger)),
  NodeRuntime.runMain({ disablePrettyLogger: true })
)
