/**
 * Realistic loads (issue 12, item 4), each figure beside the same figure for `sql.withTransaction` (with
 * `Effect.retry` where retries are involved) from the same run:
 *
 * - TPC-B on PostgreSQL at scale 16 with 16 clients: pgbench's built-in `tpcb-like` (`-c 16 -j 2`) against the same
 *   five statements between BEGIN and COMMIT through raw `pg` (a `Pool` of 16), `sql.withTransaction` and
 *   `Transaction.atomic` (16 fibers, a pool of 16). Same duration for each, interleaved rounds, median TPS.
 * - 100 concurrent transactions on a pool of 20 (PostgreSQL, MariaDB): 100 fibers each running short transactions
 *   (a SELECT and an UPDATE of a random row of 10,000); tx/s, and latency p50/p99 from the start of the
 *   transaction effect (waiting for a connection included).
 * - Nesting depth 5 (PostgreSQL, MariaDB, SQLite): 5 nested blocks, each with one UPDATE; µs per transaction.
 * - Contention per retry policy (PostgreSQL, MariaDB): the bank workload (16 workers, 10 accounts, random order);
 *   `atomic` + `withRetry(policy)` against `withTransaction` + `Effect.retry` with the same schedule, retrying the
 *   errors the library retries (PG 40001, 40P01, 55P03; MySQL errno 1213, 1205). Committed/s, retries per commit,
 *   gave up.
 *
 * `npm run bench` runs them after the database scenarios, `npm run bench -- --only loads` alone. Every table named
 * here is made for the run (`bench_loads_<pid>`, pgbench's tables in a schema of that name) and dropped after it.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, ManagedRuntime, Redacted, Schedule } from "effect"
import { execFileSync } from "node:child_process"
import Pg from "pg"
import type * as Library from "../src/index.js"

/** The library as it ships (see bench/index.ts). */
const { RetryPolicy, Transaction, TransactionLayer, withRetry }: typeof Library = await import(
  new URL("../dist/index.js", import.meta.url).href
).catch((error: unknown) => {
  throw new Error(`the compiled library is missing: run \`npm run build\` first (${String(error)})`)
})

export interface LoadsOptions {
  readonly quick: boolean
  /** The JSON written by `--json`: each load adds its rows. */
  readonly extra: Record<string, unknown>
  readonly pgUrl: string
  readonly mysqlUrl: string
}

type Runtime = ManagedRuntime.ManagedRuntime<any, unknown>
type Wrap = (effect: Effect.Effect<void, any, any>) => Effect.Effect<void, any, any>

const table = `bench_loads_${process.pid}`
const rows = 10_000

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 0 ? (sorted[middle - 1]! + sorted[middle]!) / 2 : sorted[middle]!
}
/** The nearest-rank quantile of sorted values. */
const quantile = (sorted: ReadonlyArray<number>, q: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
const fixed = (value: number, digits = 3) => Number(value.toFixed(digits))
/** A random whole number from `min` to `max`, both included. */
const randomInt = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1))
/** The variants in the order of a round: forwards, then backwards (A B, B A, A B…). */
const orderOf = <A>(variants: ReadonlyArray<A>, round: number): ReadonlyArray<A> =>
  round % 2 === 0 ? variants : [...variants].reverse()

/** Runs `job` on `fibers` fibers until `seconds` have passed; each finishes the job in hand. Returns the seconds. */
const effectFor = async (runtime: Runtime, seconds: number, fibers: number, job: Effect.Effect<unknown, any, any>) => {
  const start = performance.now()
  const deadline = start + seconds * 1000
  await runtime.runPromise(
    Effect.all(
      Array.from(
        { length: fibers },
        () => Effect.whileLoop({ while: () => performance.now() < deadline, body: () => job, step: () => undefined })
      ),
      { concurrency: "unbounded", discard: true }
    )
  )
  return (performance.now() - start) / 1000
}

/** The same with promise workers. */
const promiseFor = async (seconds: number, workers: number, job: () => Promise<void>) => {
  const start = performance.now()
  const deadline = start + seconds * 1000
  await Promise.all(Array.from({ length: workers }, async () => {
    while (performance.now() < deadline) await job()
  }))
  return (performance.now() - start) / 1000
}

const withTransaction: Wrap = (effect) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(effect))

/** `url` with a server option (`-c name=value`) for every session. */
const withOptions = (url: string, options: string) =>
  `${url}${url.includes("?") ? "&" : "?"}options=${encodeURIComponent(options)}`

const runtimeOf = (client: Layer.Layer<any, any>): Runtime =>
  ManagedRuntime.make(TransactionLayer.pipe(Layer.provideMerge(client)))

// -------------------------------------------------------------------------------------------------------------------
// TPC-B

interface Throughput {
  readonly name: string
  /** Runs the load for `seconds` and returns its transactions per second. */
  readonly run: (seconds: number) => Promise<number>
}

const tpcb = async ({ extra, pgUrl, quick }: LoadsOptions) => {
  const scale = 16
  const clients = 16
  const seconds = quick ? 1 : 5
  const rounds = quick ? 2 : 3
  const url = new URL(pgUrl)
  const connection = [
    "-h",
    url.hostname,
    "-p",
    url.port || "5432",
    "-U",
    decodeURIComponent(url.username) || "postgres"
  ]
  const database = decodeURIComponent(url.pathname.slice(1)) || "test"
  // pgbench's tables go into a schema of this run's own: pgbench and the clients find them through search_path.
  const schema = table
  const env = {
    ...process.env,
    PGOPTIONS: `-c search_path=${schema}`,
    ...(url.password === "" ? {} : { PGPASSWORD: decodeURIComponent(url.password) })
  }
  const admin = new Pg.Pool({ connectionString: pgUrl, max: 1 })
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await admin.query(`CREATE SCHEMA ${schema}`)
  const schemaUrl = withOptions(pgUrl, `-c search_path=${schema}`)
  const pool = new Pg.Pool({ connectionString: schemaUrl, max: clients })
  const runtime = runtimeOf(PgClient.layer({ url: Redacted.make(schemaUrl), maxConnections: clients }))
  try {
    try {
      // Server-side data generation (G): the quickest way to 1.6 million accounts.
      execFileSync("pgbench", [...connection, "-i", "-q", "-I", "dtGvp", "-s", String(scale), database], {
        stdio: "pipe",
        env
      })
    } catch (error) {
      console.log(`\npgbench is not available (${String(error).split("\n")[0]}): TPC-B skipped`)
      return
    }
    /** pgbench's `tpcb-like` script: the same random ranges. */
    const draw = () => ({
      aid: randomInt(1, 100_000 * scale),
      bid: randomInt(1, scale),
      tid: randomInt(1, 10 * scale),
      delta: randomInt(-5000, 5000)
    })
    const pgbench: Throughput = {
      name: "pgbench tpcb-like",
      run: async (seconds) => {
        const output = execFileSync(
          "pgbench",
          [...connection, "-n", "-c", String(clients), "-j", "2", "-T", String(seconds), "-b", "tpcb-like", database],
          { encoding: "utf8", env }
        )
        const tps = Number(/tps = ([\d.]+)/.exec(output)?.[1])
        if (!Number.isFinite(tps)) throw new Error(`pgbench printed no tps:\n${output}`)
        return tps
      }
    }
    const raw: Throughput = {
      name: "raw pg",
      run: async (seconds) => {
        let committed = 0
        const elapsed = await promiseFor(seconds, clients, async () => {
          const { aid, bid, delta, tid } = draw()
          const client = await pool.connect()
          try {
            await client.query("BEGIN")
            await client.query("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", [delta, aid])
            await client.query("SELECT abalance FROM pgbench_accounts WHERE aid = $1", [aid])
            await client.query("UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2", [delta, tid])
            await client.query("UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2", [delta, bid])
            await client.query(
              "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
              [tid, bid, aid, delta]
            )
            await client.query("COMMIT")
          } finally {
            client.release()
          }
          committed++
        })
        return committed / elapsed
      }
    }
    const body = Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const { aid, bid, delta, tid } = draw()
      yield* sql`UPDATE pgbench_accounts SET abalance = abalance + ${delta} WHERE aid = ${aid}`
      yield* sql`SELECT abalance FROM pgbench_accounts WHERE aid = ${aid}`
      yield* sql`UPDATE pgbench_tellers SET tbalance = tbalance + ${delta} WHERE tid = ${tid}`
      yield* sql`UPDATE pgbench_branches SET bbalance = bbalance + ${delta} WHERE bid = ${bid}`
      yield* sql`INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (${tid}, ${bid}, ${aid}, ${delta}, CURRENT_TIMESTAMP)`
    })
    const effectVariant = (name: string, wrap: Wrap): Throughput => ({
      name,
      run: async (seconds) => {
        let committed = 0
        const job = Effect.tap(wrap(body), () => {
          committed++
        })
        const elapsed = await effectFor(runtime, seconds, clients, job)
        return committed / elapsed
      }
    })
    const variants = [
      pgbench,
      raw,
      effectVariant("sql.withTransaction", withTransaction),
      effectVariant("Transaction.atomic", (e) => Transaction.atomic(e, { name: "tpcb" }))
    ]
    for (const variant of variants.slice(1)) await variant.run(quick ? 0.25 : 1) // warm-up (connections, JIT)
    const samples = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
    for (let round = 0; round < rounds; round++) {
      for (const variant of orderOf(variants, round)) samples.get(variant.name)!.push(await variant.run(seconds))
    }
    const tps = (name: string) => median(samples.get(name)!)
    const report = variants.map((v) => ({
      variant: v.name,
      tps: Math.round(tps(v.name)),
      "× pgbench": fixed(tps(v.name) / tps("pgbench tpcb-like")),
      "× withTransaction": fixed(tps(v.name) / tps("sql.withTransaction")),
      "tps per round": samples.get(v.name)!.map((s) => Math.round(s)).join(" ")
    }))
    extra["loads pg tpc-b"] = { scale, clients, seconds, rounds, rows: report }
    console.log(
      `\npg: TPC-B, scale ${scale}, ${clients} clients (pools of ${clients}), ${seconds} s per run, median of ${rounds} interleaved rounds`
    )
    console.table(report)
  } finally {
    await Promise.all([runtime.dispose(), pool.end()])
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await admin.end()
  }
}

// -------------------------------------------------------------------------------------------------------------------
// The databases of the other loads

interface Database {
  readonly name: string
  readonly runtime: Runtime
  /** For the contention workload (PostgreSQL: deadlocks looked for after 20 ms instead of 1 s). */
  readonly contentionRuntime?: Runtime | undefined
}

const setupSql = [
  `DROP TABLE IF EXISTS ${table}`,
  `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`,
  `INSERT INTO ${table} (id, v) VALUES ${Array.from({ length: rows }, (_, i) => `(${i}, 0)`).join(", ")}`
]

const open = async (name: string, client: Layer.Layer<any, any>, contention?: Layer.Layer<any, any>) => {
  const runtime = runtimeOf(client)
  await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(setupSql, (s) => sql.unsafe(s))))
  const database: Database = {
    name,
    runtime,
    contentionRuntime: contention === undefined ? undefined : runtimeOf(contention)
  }
  return database
}

const close = async (database: Database) => {
  if (database.name !== "sqlite") {
    await database.runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP TABLE ${table}`)))
  }
  await Promise.all([database.runtime.dispose(), database.contentionRuntime?.dispose()])
}

// -------------------------------------------------------------------------------------------------------------------
// 100 concurrent transactions on a pool of 20

const poolLoad = async (databases: ReadonlyArray<Database>, { extra, quick }: LoadsOptions) => {
  const fibers = 100
  const seconds = quick ? 0.75 : 4
  const rounds = quick ? 2 : 3
  const all: Array<Record<string, unknown>> = []
  for (const { name, runtime } of databases) {
    const variants: ReadonlyArray<readonly [string, Wrap]> = [
      ["sql.withTransaction", withTransaction],
      ["Transaction.atomic", (e) => Transaction.atomic(e)]
    ]
    const run = async ([, wrap]: readonly [string, Wrap], seconds: number) => {
      const latencies: Array<number> = []
      const job = Effect.suspend(() => {
        const start = performance.now()
        const id = randomInt(0, rows - 1)
        return wrap(Effect.flatMap(SqlClient.SqlClient, (sql) =>
          Effect.zipRight(
            sql`SELECT v FROM ${sql(table)} WHERE id = ${id}`,
            sql`UPDATE ${sql(table)} SET v = v + 1 WHERE id = ${id}`
          ))).pipe(Effect.tap(() => {
            latencies.push(performance.now() - start)
          }))
      })
      const elapsed = await effectFor(runtime, seconds, fibers, job)
      return { tps: latencies.length / elapsed, latencies }
    }
    for (const variant of variants) await run(variant, quick ? 0.25 : 1) // warm-up
    const tps = new Map<string, Array<number>>(variants.map(([v]) => [v, []]))
    const latencies = new Map<string, Array<number>>(variants.map(([v]) => [v, []]))
    for (let round = 0; round < rounds; round++) {
      for (const variant of orderOf(variants, round)) {
        const result = await run(variant, seconds)
        tps.get(variant[0])!.push(result.tps)
        latencies.get(variant[0])!.push(...result.latencies)
      }
    }
    const figures = variants.map(([variant]) => {
      const sorted = latencies.get(variant)!.sort((a, b) => a - b)
      return { variant, tps: median(tps.get(variant)!), p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99) }
    })
    const base = figures[0]!
    const report = figures.map((f) => ({
      variant: f.variant,
      "tx/s": Math.round(f.tps),
      "p50 ms": fixed(f.p50, 2),
      "p99 ms": fixed(f.p99, 2),
      "× wT tx/s": fixed(f.tps / base.tps),
      "× wT p50": fixed(f.p50 / base.p50),
      "× wT p99": fixed(f.p99 / base.p99)
    }))
    all.push(...report.map((row) => ({ database: name, ...row })))
    console.log(
      `\n${name}: ${fibers} concurrent transactions (SELECT + UPDATE of a random row of ${rows}) on a pool of 20, ${seconds} s per run, ${rounds} interleaved rounds (tx/s: median; latency from the start of the transaction, waiting for a connection included, over all rounds)`
    )
    console.table(report)
  }
  extra["loads 100 on a pool of 20"] = { fibers, pool: 20, seconds, rounds, rows: all }
}

// -------------------------------------------------------------------------------------------------------------------
// Nesting depth 5

const nesting = async (databases: ReadonlyArray<Database>, { extra, quick }: LoadsOptions) => {
  const depth = 5
  const rounds = quick ? 2 : 6
  const all: Array<Record<string, unknown>> = []
  for (const { name, runtime } of databases) {
    const n = name === "sqlite" ? (quick ? 300 : 1500) : (quick ? 40 : 150)
    const update = (id: number) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE ${sql(table)} SET v = v + 1 WHERE id = ${id}`)
    /** `depth` blocks inside each other, each with one UPDATE. */
    const nest = (wrap: Wrap, id: number) => {
      let program: Effect.Effect<void, any, any> = Effect.asVoid(update(id))
      for (let level = 1; level < depth; level++) program = Effect.zipRight(update(id), wrap(program))
      return wrap(program)
    }
    const variants: ReadonlyArray<readonly [string, Wrap]> = [
      ["sql.withTransaction", withTransaction],
      ["Transaction.atomic", (e) => Transaction.atomic(e)]
    ]
    const run = async ([, wrap]: readonly [string, Wrap], n: number) => {
      const start = performance.now()
      await runtime.runPromise(
        Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => nest(wrap, (i * 7) % rows), { discard: true })
      )
      return ((performance.now() - start) * 1000) / n
    }
    for (const variant of variants) await run(variant, Math.ceil(n / 4)) // warm-up
    const samples = new Map<string, Array<number>>(variants.map(([v]) => [v, []]))
    for (let round = 0; round < rounds; round++) {
      for (const variant of orderOf(variants, round)) samples.get(variant[0])!.push(await run(variant, n))
    }
    const base = samples.get("sql.withTransaction")!
    const report = variants.map(([variant]) => {
      const values = samples.get(variant)!
      return {
        variant,
        "µs/tx": fixed(median(values), 1),
        "× withTransaction": fixed(median(values) / median(base)),
        "× wT, paired": fixed(median(values.map((value, round) => value / base[round]!)))
      }
    })
    all.push(...report.map((row) => ({ database: name, ...row })))
    console.log(
      `\n${name}: ${depth} nested blocks, one UPDATE each, sequential, ${n} transactions per run, median of ${rounds} interleaved rounds`
    )
    console.table(report)
  }
  extra["loads nesting depth 5"] = { depth, rounds, rows: all }
}

// -------------------------------------------------------------------------------------------------------------------
// Contention per retry policy

/** The baseline's filter: what the library retries, told from the driver's error (PG SQLSTATE, MySQL errno). */
const pgRetryable = new Set(["40001", "40P01", "55P03"])
const mysqlRetryable = new Set([1213, 1205])
const isRetryableSqlError = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null || (error as { _tag?: unknown })._tag !== "SqlError") return false
  const cause = (error as { readonly cause?: { readonly code?: unknown; readonly errno?: unknown } }).cause
  return (typeof cause?.code === "string" && pgRetryable.has(cause.code)) ||
    (typeof cause?.errno === "number" && mysqlRetryable.has(cause.errno))
}

/** What a transfer that gave up failed with: the error's tag and its SQL code. */
const reasonOf = (error: unknown): string => {
  const { _tag, cause, code } = error as {
    readonly _tag?: unknown
    readonly code?: unknown
    readonly cause?: { readonly code?: unknown; readonly errno?: unknown }
  }
  const sqlCode = code ?? cause?.errno ?? cause?.code
  return `${String(_tag)}${sqlCode === undefined ? "" : ` ${String(sqlCode)}`}`
}

const contention = async (databases: ReadonlyArray<Database>, { extra, quick }: LoadsOptions) => {
  const workers = 16
  const accounts = 10
  const seconds = quick ? 0.3 : 2.5
  const rounds = 2
  const policies: ReadonlyArray<readonly [string, Library.RetryPolicy.RetryPolicy]> = [
    ["RetryPolicy.default", RetryPolicy.default],
    ["immediate retry", Schedule.recurs(5)],
    ["no jitter", RetryPolicy.exponential({ jitter: false })]
  ]
  for (const database of databases) {
    const runtime = database.contentionRuntime ?? database.runtime
    const rowsOf: Array<Record<string, unknown>> = []
    for (const [policyName, policy] of policies) {
      const variants: ReadonlyArray<
        readonly [string, (effect: Effect.Effect<void, any, any>) => Effect.Effect<void, any, any>]
      > = [
        [
          "withTransaction + Effect.retry",
          (e) => Effect.retry(withTransaction(e), { schedule: policy, while: isRetryableSqlError })
        ],
        ["atomic + withRetry", (e) => Transaction.atomic(e, { name: "transfer" }).pipe(withRetry(policy))]
      ]
      const stats = new Map(
        variants.map(([v]) => [v, { committed: 0, attempts: 0, failed: 0, elapsed: 0, why: new Map<string, number>() }])
      )
      for (let round = 0; round < rounds; round++) {
        for (const [variant, wrap] of orderOf(variants, round)) {
          const s = stats.get(variant)!
          const transfer = Effect.suspend(() => {
            const from = randomInt(0, accounts - 1)
            const to = (from + randomInt(1, accounts - 1)) % accounts
            return wrap(Effect.flatMap(SqlClient.SqlClient, (sql) =>
              Effect.suspend(() => {
                s.attempts++
                return Effect.zipRight(
                  sql`UPDATE ${sql(table)} SET v = v - 1 WHERE id = ${from}`,
                  sql`UPDATE ${sql(table)} SET v = v + 1 WHERE id = ${to}`
                )
              })))
          }).pipe(
            Effect.matchEffect({
              onFailure: (error) =>
                Effect.sync(() => {
                  s.failed++
                  s.why.set(reasonOf(error), (s.why.get(reasonOf(error)) ?? 0) + 1)
                }),
              onSuccess: () => Effect.sync(() => s.committed++)
            })
          )
          s.elapsed += await effectFor(runtime, seconds, workers, transfer)
        }
      }
      const base = stats.get(variants[0]![0])!
      for (const [variant] of variants) {
        const s = stats.get(variant)!
        rowsOf.push({
          policy: policyName,
          variant,
          "committed/s": Math.round(s.committed / s.elapsed),
          "× wT committed/s": fixed((s.committed / s.elapsed) / (base.committed / base.elapsed)),
          "retries per commit": fixed((s.attempts - s.committed - s.failed) / s.committed),
          "gave up": s.failed,
          "gave up with": [...s.why].map(([reason, count]) => `${reason} ×${count}`).join(", ")
        })
      }
    }
    extra[`loads ${database.name} contention`] = { workers, accounts, seconds: seconds * rounds, rows: rowsOf }
    console.log(
      `\n${database.name}: bank workload, ${workers} workers, ${accounts} accounts, random order, ${
        seconds * rounds
      } s per policy and variant (${rounds} interleaved rounds)${
        database.name === "pg" ? ", deadlock_timeout = 20ms" : ""
      }`
    )
    console.table(rowsOf)
  }
}

// -------------------------------------------------------------------------------------------------------------------

/** Every load, in turn. */
export const loads = async (options: LoadsOptions) => {
  const { mysqlUrl, pgUrl } = options
  const start = performance.now()
  console.log(`\nrealistic loads${options.quick ? " (quick)" : ""}`)
  await tpcb(options)
  const pg = await open(
    "pg",
    PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 20 }),
    // Deadlocks are looked for after deadlock_timeout (1 s by default): the contention pool lowers it to 20 ms.
    PgClient.layer({ url: Redacted.make(withOptions(pgUrl, "-c deadlock_timeout=20ms")), maxConnections: 16 })
  )
  const mysql = await open("mysql", MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections: 20 }))
  const sqlite = await open("sqlite", SqliteClient.layer({ filename: ":memory:" }))
  try {
    await poolLoad([pg, mysql], options)
    await nesting([pg, mysql, sqlite], options)
    await contention([pg, mysql], options)
  } finally {
    await Promise.all([close(pg), close(mysql), close(sqlite)])
  }
  console.log(`\nrealistic loads: ${Math.round((performance.now() - start) / 1000)} s`)
}
