/**
 * `npm run bench`: the cost of effect-sql-tx, measured side by side in one run.
 *
 *   npm run bench                       # every scenario, every database
 *   npm run bench -- --quick            # a short run (CI keeps it working)
 *   npm run bench -- --json out.json    # also write the figures
 *   npm run bench -- --only pg,sqlite   # some databases
 *   npm run bench -- --only monitor     # the monitor's cost alone (bench/monitor.ts; it also runs with sqlite)
 *   npm run bench -- --only dashboard   # the dashboard's cost alone (bench/dashboard.ts; it also runs with sqlite)
 *   npm run bench -- --only budget      # the per-operation CPU budget alone (bench/budget.ts; runs with pg too)
 *   npm run bench -- --only loads       # the realistic loads alone (bench/loads.ts: TPC-B, 100 on a pool of 20,
 *                                       # nesting depth 5, contention per retry policy; PostgreSQL, MariaDB, SQLite)
 *
 * Variants of a scenario run in interleaved rounds (A B C D, then D C B A, …) so that the machine's drift hits
 * them alike; each figure is the median over the rounds, and ratios are taken between medians of the same run.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import BetterSqlite3 from "better-sqlite3"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import * as Mysql from "mysql2"
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import Pg from "pg"
import type * as Library from "../src/index.js"

/**
 * The library as it ships: compiled by `npm run build` (which `npm run bench` runs first), like the `@effect/sql`
 * code it is compared with. Transpiled on the fly by tsx it would pay for tsx's own additions to every function.
 */
const { Transaction, TransactionLayer }: typeof Library = await import(
  new URL("../dist/index.js", import.meta.url).href
).catch((error: unknown) => {
  throw new Error(`the compiled library is missing: run \`npm run build\` first (${String(error)})`)
})

const args = process.argv.slice(2)
const quick = args.includes("--quick")
const jsonFile = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined
const only = args.includes("--only") ? args[args.indexOf("--only") + 1]!.split(",") : ["pg", "mysql", "sqlite", "loads"]

const pgUrl = process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const mysqlUrl = process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"
const rounds = quick ? 2 : 10
const table = `bench_${process.pid}`

interface Variant {
  readonly name: string
  /** Runs `n` transactions with `concurrency` workers. */
  readonly run: (n: number, concurrency: number) => Promise<void>
}

interface Result {
  readonly database: string
  readonly scenario: string
  readonly variant: string
  /** Median microseconds per transaction (wall time / transactions). */
  readonly microsPerTx: number
  readonly samples: ReadonlyArray<number>
  /**
   * Median CPU microseconds of this process per transaction (`process.cpuUsage`, user + system): the library's and
   * the driver's work, not the server's, and not the time spent waiting; steadier than wall time when the machine
   * is busy.
   */
  readonly cpuMicrosPerTx: number
  readonly cpuSamples: ReadonlyArray<number>
}

const results: Array<Result> = []
const extra: Record<string, unknown> = {}

/** The `q` quantile (0..1) of `values`, interpolated between the closest ranks. */
const quantile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  const rank = q * (sorted.length - 1)
  const low = Math.floor(rank)
  return sorted[low]! + (sorted[Math.min(low + 1, sorted.length - 1)]! - sorted[low]!) * (rank - low)
}

const median = (values: ReadonlyArray<number>) => quantile(values, 0.5)

/** A median with its quartiles: `1.02 (0.99–1.05)`. */
const spread = (values: ReadonlyArray<number>) =>
  `${quantile(values, 0.5).toFixed(3)} (${quantile(values, 0.25).toFixed(3)}–${quantile(values, 0.75).toFixed(3)})`

/** Runs the variants in ABBA rounds after a warm-up, and records the median µs per transaction of each. */
const measure = async (
  database: string,
  scenario: string,
  variants: ReadonlyArray<Variant>,
  n: number,
  concurrency: number
) => {
  for (const variant of variants) await variant.run(Math.ceil(n / 4), concurrency) // warm-up
  const samples = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
  const cpuSamples = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    for (const variant of order) {
      const cpu = process.cpuUsage()
      const start = performance.now()
      await variant.run(n, concurrency)
      samples.get(variant.name)!.push(((performance.now() - start) * 1000) / n)
      const used = process.cpuUsage(cpu)
      cpuSamples.get(variant.name)!.push((used.user + used.system) / n)
    }
  }
  for (const variant of variants) {
    const values = samples.get(variant.name)!
    const cpu = cpuSamples.get(variant.name)!
    results.push({
      database,
      scenario,
      variant: variant.name,
      microsPerTx: median(values),
      samples: values,
      cpuMicrosPerTx: median(cpu),
      cpuSamples: cpu
    })
  }
}

/** `n` jobs on `concurrency` promise workers. */
const workers = async (n: number, concurrency: number, job: (i: number) => Promise<void>) => {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await job(next++)
  }))
}

const accountOf = (i: number) => (i * 7) % 100

/** The Effect variants of a database: `sql.withTransaction`, `Transaction.atomic` with defaults and with options. */
const effectVariants = (
  runtime: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient | Library.Transaction.Transaction | any, unknown>,
  depth: number
): ReadonlyArray<Variant> => {
  const update = (i: number) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE ${sql(table)} SET v = v + 1 WHERE id = ${accountOf(i)}`)
  const nest = <E, R>(
    wrap: (effect: Effect.Effect<void, E | any, R>) => Effect.Effect<void, E | any, R>,
    i: number
  ) => {
    let program: Effect.Effect<void, any, any> = Effect.asVoid(update(i))
    for (let level = 1; level < depth; level++) program = Effect.zipRight(update(i), wrap(program))
    return wrap(program)
  }
  const loop = (tx: (i: number) => Effect.Effect<void, any, any>) => (n: number, concurrency: number) =>
    runtime.runPromise(
      Effect.forEach(Array.from({ length: n }, (_, i) => i), tx, { concurrency, discard: true })
    )
  return [
    {
      name: "sql.withTransaction",
      run: loop((i) => Effect.flatMap(SqlClient.SqlClient, (sql) => nest(sql.withTransaction, i)))
    },
    { name: "Transaction.atomic", run: loop((i) => nest((e) => Transaction.atomic(e), i)) },
    {
      name: "atomic + options",
      run: loop((i) =>
        nest(
          (e) =>
            Transaction.atomic(e, {
              name: "bench",
              isolation: "read committed",
              readOnly: false,
              timeout: "10 seconds"
            }),
          i
        )
      )
    },
    {
      // A reference for the timeout's cost: the usual way to bound a plain transaction.
      name: "withTransaction + Effect.timeout",
      run: loop((i) =>
        Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => nest((e) => Effect.timeout(sql.withTransaction(e), "10 seconds"), i)
        )
      )
    }
  ]
}

const setupSql = [
  `DROP TABLE IF EXISTS ${table}`,
  `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`,
  `INSERT INTO ${table} (id, v) VALUES ${Array.from({ length: 100 }, (_, i) => `(${i}, 0)`).join(", ")}`
]

const scenarios = async (
  database: string,
  raw: Variant,
  runtime: ManagedRuntime.ManagedRuntime<any, unknown>,
  sizes: { readonly sequential: number; readonly concurrent: number; readonly nested: number }
) => {
  await measure(database, "flat, sequential", [raw, ...effectVariants(runtime, 1)], sizes.sequential, 1)
  await measure(database, "flat, 16 fibers", [raw, ...effectVariants(runtime, 1)], sizes.concurrent, 16)
  await measure(database, "3 nested blocks", effectVariants(runtime, 3).slice(0, 2), sizes.nested, 1)
}

const pgBench = async () => {
  const pool = new Pg.Pool({ connectionString: pgUrl, max: 16 })
  for (const sql of setupSql) await pool.query(sql)
  const raw: Variant = {
    name: "raw pg",
    run: (n, concurrency) =>
      workers(n, concurrency, async (i) => {
        const client = await pool.connect()
        await client.query("BEGIN")
        await client.query(`UPDATE ${table} SET v = v + 1 WHERE id = $1`, [accountOf(i)])
        await client.query("COMMIT")
        client.release()
      })
  }
  const client = PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 16 })
  const runtime = ManagedRuntime.make(TransactionLayer.pipe(Layer.provideMerge(client)))
  await scenarios(
    "pg",
    raw,
    runtime,
    quick ? { sequential: 200, concurrent: 400, nested: 100 } : { sequential: 1500, concurrent: 6000, nested: 800 }
  )
  await pool.query(`DROP TABLE ${table}`)
  await Promise.all([runtime.dispose(), pool.end()])
}

const mysqlBench = async () => {
  const pool = Mysql.createPool({ uri: mysqlUrl, connectionLimit: 16 }).promise()
  for (const sql of setupSql) await pool.query(sql)
  const raw: Variant = {
    name: "raw mysql2",
    run: (n, concurrency) =>
      workers(n, concurrency, async (i) => {
        const conn = await pool.getConnection()
        await conn.query("START TRANSACTION")
        await conn.query(`UPDATE ${table} SET v = v + 1 WHERE id = ?`, [accountOf(i)])
        await conn.query("COMMIT")
        conn.release()
      })
  }
  const runtime = ManagedRuntime.make(
    TransactionLayer.pipe(Layer.provideMerge(MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections: 16 })))
  )
  await scenarios(
    "mysql",
    raw,
    runtime,
    quick ? { sequential: 200, concurrent: 400, nested: 100 } : { sequential: 1500, concurrent: 6000, nested: 800 }
  )
  await pool.query(`DROP TABLE ${table}`)
  await Promise.all([runtime.dispose(), pool.end()])
}

const sqliteBench = async () => {
  const db = new BetterSqlite3(":memory:")
  for (const sql of setupSql) db.exec(sql)
  const update = db.prepare(`UPDATE ${table} SET v = v + 1 WHERE id = ?`)
  const begin = db.prepare("BEGIN")
  const commit = db.prepare("COMMIT")
  const raw: Variant = {
    name: "raw better-sqlite3",
    run: async (n) => {
      for (let i = 0; i < n; i++) {
        begin.run()
        update.run(accountOf(i))
        commit.run()
      }
    }
  }
  const client = SqliteClient.layer({ filename: ":memory:" })
  const runtime = ManagedRuntime.make(TransactionLayer.pipe(Layer.provideMerge(client)))
  await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.forEach(setupSql, (s) => sql.unsafe(s))))
  await scenarios(
    "sqlite",
    raw,
    runtime,
    quick
      ? { sequential: 1000, concurrent: 1000, nested: 500 }
      : { sequential: 20000, concurrent: 20000, nested: 10000 }
  )
  await runtime.dispose()
  db.close()
}

const report = () => {
  if (results.length === 0 && jsonFile === undefined) return
  const rows = results.map((r) => {
    const base = results.find((b) =>
      b.database === r.database && b.scenario === r.scenario && b.variant === "sql.withTransaction"
    )
    const raw = results.find((b) =>
      b.database === r.database && b.scenario === r.scenario && b.variant.startsWith("raw")
    )
    return {
      database: r.database,
      scenario: r.scenario,
      variant: r.variant,
      "µs/tx": Number(r.microsPerTx.toFixed(1)),
      "× withTransaction": base === undefined ? "" : Number((r.microsPerTx / base.microsPerTx).toFixed(3)),
      // The median of the ratios within each round: variants of one round ran next to each other.
      "× wT, paired": base === undefined
        ? ""
        : Number(median(r.samples.map((sample, round) => sample / base.samples[round]!)).toFixed(3)),
      "× raw": raw === undefined ? "" : Number((r.microsPerTx / raw.microsPerTx).toFixed(3)),
      "CPU µs/tx": Number(r.cpuMicrosPerTx.toFixed(1)),
      // The CPU ratio within each round, and its spread over the rounds (the quartiles of the per-round ratios).
      "CPU × wT (q1–q3)": base === undefined ? "" : spread(r.cpuSamples.map((c, round) => c / base.cpuSamples[round]!))
    }
  })
  console.log(`\nmedians of ${rounds} interleaved rounds${quick ? " (quick)" : ""}, commit ${commit}`)
  console.table(rows)
  if (jsonFile !== undefined) {
    Fs.writeFileSync(jsonFile, JSON.stringify({ quick, rounds, results: rows, samples: results, ...extra }, null, 2))
    console.log(`written to ${jsonFile}`)
  }
}

/** The commit measured (the README's figures say which), and whether the tree had changes on top of it. */
const commit = (() => {
  try {
    const sha = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).trim()
    return dirty === "" ? sha : `${sha} (with uncommitted changes)`
  } catch {
    return "unknown (not a git checkout)"
  }
})()
extra["commit"] = commit

const main = async () => {
  console.log(`effect-sql-tx benchmark of commit ${commit}${quick ? " (quick)" : ""}`)
  if (only.includes("sqlite")) await sqliteBench()
  if (only.includes("sqlite") || only.includes("monitor")) {
    const { monitorBench, printMonitorBench } = await import("./monitor.js")
    printMonitorBench(extra["monitor"] = await monitorBench({ quick }))
  }
  if (only.includes("sqlite") || only.includes("dashboard")) {
    const { dashboardBench } = await import("./dashboard.js")
    extra["dashboard"] = await dashboardBench(quick)
  }
  if (only.includes("pg")) await pgBench()
  if (only.includes("mysql")) await mysqlBench()
  if (only.includes("budget") || only.includes("pg")) {
    const { budgetBench } = await import("./budget.js")
    await budgetBench({ quick, extra, pgUrl, mysqlUrl, only })
  }
  if (only.includes("loads")) {
    const { loads } = await import("./loads.js")
    await loads({ quick, extra, pgUrl, mysqlUrl })
  }
  report()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
