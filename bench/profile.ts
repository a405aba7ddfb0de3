/**
 * `npm run bench:profile`: where a transaction's CPU goes, on SQLite in memory (no network hides the library's
 * cost). Runs `Transaction.atomic()` (or `sql.withTransaction`, `--variant withTransaction`; or the nested or
 * options variants) in a loop under V8's sampling profiler and prints the functions with the most self time,
 * grouped by package, and the top entries.
 *
 *   npm run bench:profile                                   # atomic, flat, sequential
 *   npm run bench:profile -- --variant options --fibers 16  # atomic with options on 16 fibers
 *   npm run bench:profile -- --cpuprofile out.cpuprofile    # also write the profile (Chrome DevTools opens it)
 *   npm run bench:profile -- --count withTransaction,atomic
 *                          # no profile: the Effect steps (run-loop iterations) and the bytes allocated per
 *                          # transaction of each variant; both are exact counts, whatever the machine is doing
 *                          # (bytes: a young generation big enough that no GC runs while they are counted)
 *   npm run bench:profile -- --allocations  # where the bytes are allocated (V8's sampling heap profiler)
 *   npm run bench:profile -- --survivors   # which allocation sites' objects outlive a scavenge (V8's sampling heap
 *                          # profiler, with and without the objects collected by a scavenge)
 *   npm run bench:profile -- --instructions withTransaction,atomic
 *                          # no profile: machine instructions per transaction of each variant, counted by valgrind
 *                          # (steadier than time, but the same build spreads by up to 10 %: compare medians of several
 *                          # runs; a minute or two per variant)
 *   npm run bench:profile -- --compare withTransaction,atomic --rounds 20
 *                          # no profile: CPU µs per transaction of each variant in interleaved rounds, and the ratio
 *                          # of each to the first (median and quartiles of the per-round ratios)
 *
 * Measures the compiled library (`npm run build` first, which the script runs), like `npm run bench`.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, ManagedRuntime, Redacted, Scheduler } from "effect"
import { spawn, spawnSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Inspector from "node:inspector/promises"
import * as Url from "node:url"
import * as Ts from "typescript"
import type * as Library from "../src/index.js"

const { Transaction, TransactionLayer }: typeof Library = await import(
  new URL("../dist/index.js", import.meta.url).href
)

const args = process.argv.slice(2)
const option = (name: string, fallback: string) =>
  args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1]! : fallback
const variant = option("variant", "atomic")
const fibers = Number(option("fibers", "1"))
const count = Number(option("transactions", "60000"))
const outFile = args.includes("--cpuprofile") ? option("cpuprofile", "") : undefined

if (args.includes("--count") && (globalThis as { gc?: unknown }).gc === undefined) {
  // Again in a process that can collect on demand and whose young generation holds all that is counted.
  const flags = ["--expose-gc", "--min-semi-space-size=128", "--max-semi-space-size=128", ...process.execArgv]
  const child = spawnSync(process.execPath, [...flags, process.argv[1]!, ...args], { stdio: "inherit" })
  process.exit(child.status ?? 1)
}

const database = option("database", "sqlite")
const clients: Record<string, () => Layer.Layer<SqlClient.SqlClient, unknown>> = {
  sqlite: () => SqliteClient.layer({ filename: ":memory:" }),
  pg: () => PgClient.layer({ url: Redacted.make(process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432/test") }),
  mysql: () => MysqlClient.layer({ url: Redacted.make(process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test") })
}
if (clients[database] === undefined) throw new Error(`--database: one of ${Object.keys(clients).join(", ")}`)

const table = `profile_${process.pid}`
const runtime = ManagedRuntime.make(TransactionLayer.pipe(Layer.provideMerge(clients[database]!())))

const update = (i: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE ${sql(table)} SET v = v + 1 WHERE id = ${i % 100}`)

const failing = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT * FROM ${sql(`${table}_missing`)}`)

const transactions: Record<string, (i: number) => Effect.Effect<unknown, unknown, any>> = {
  atomic: (i) => Transaction.atomic(update(i)),
  options: (i) =>
    Transaction.atomic(update(i), {
      name: "bench",
      isolation: "read committed",
      readOnly: false,
      timeout: "10 seconds"
    }),
  // The options apart: all but the timeout, and the timeout alone.
  optionsWithoutTimeout: (i) =>
    Transaction.atomic(update(i), { name: "bench", isolation: "read committed", readOnly: false }),
  timeoutOnly: (i) => Transaction.atomic(update(i), { timeout: "10 seconds" }),
  nested: (i) =>
    Transaction.atomic(
      Effect.zipRight(update(i), Transaction.atomic(Effect.zipRight(update(i), Transaction.atomic(update(i)))))
    ),
  withTransaction: (i) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(update(i))),
  nestedWithTransaction: (i) =>
    Effect.flatMap(
      SqlClient.SqlClient,
      (sql) =>
        sql.withTransaction(
          Effect.zipRight(update(i), sql.withTransaction(Effect.zipRight(update(i), sql.withTransaction(update(i)))))
        )
    ),
  // The pieces apart: a transaction with no statement, one nested block with no statement, a statement alone.
  empty: () => Transaction.atomic(Effect.void),
  emptyWithTransaction: () => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(Effect.void)),
  emptyNested: () => Transaction.atomic(Transaction.atomic(Effect.void)),
  emptyNestedWithTransaction: () =>
    Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(sql.withTransaction(Effect.void))),
  statement: (i) => update(i),
  // A transaction whose second statement fails (the database refuses it): the rollback path.
  failing: (i) => Effect.either(Transaction.atomic(Effect.zipRight(update(i), failing))),
  failingWithTransaction: (i) =>
    Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => Effect.either(sql.withTransaction(Effect.zipRight(update(i), failing)))
    )
}
const pick = (name: string) => {
  const transaction = transactions[name]
  if (transaction === undefined) throw new Error(`${name}: variants are ${Object.keys(transactions).join(", ")}`)
  return transaction
}
const transaction = pick(variant)

if (args.includes("--instructions")) {
  // Machine instructions per transaction, counted by valgrind (cachegrind, no cache simulation): two processes per
  // variant, which differ only in the measured transactions after the same warm-up; the difference of their totals,
  // divided by the transactions, is the cost of one, the garbage collector's included. V8 in predictable mode on one
  // thread (no concurrent compiler or GC threads) and a young generation of a fixed size. The same build measured
  // five times gave flat `atomic` 368,500 to 410,100 instructions: the count falls into a few levels (two runs gave
  // 388,393 and 388,372), so compare the medians of several runs, alternating the builds; an old generation too
  // large for any full GC to run (--initial-old-space-size=4096) did not narrow it. Not with --predictable-gc-schedule
  // (a small fixed heap: more full GCs, and a wider spread), nor a gc() before the transactions (it flushed compiled
  // code: 50 % more instructions while it was compiled again).
  const warmUp = Number(option("warm-up", "12000"))
  const measured = Number(option("transactions", "8000"))
  const own = ["--instructions", "--transactions", "--warm-up", "--variant"]
  const passed = args.filter((arg, i) => !own.includes(arg) && !own.includes(args[i - 1]!))
  // The processes run this script compiled to JavaScript: under tsx, its loader's thread and its esbuild service
  // would run beside the transactions, and valgrind counts every thread (the count then varied by 15 %). It goes to
  // .tmp/, a sibling of bench/, so that its relative imports hold, under a name of this run's own (two runs at once
  // must not rewrite each other's).
  const script = new URL(`../.tmp/profile-${process.pid}.mjs`, import.meta.url)
  Fs.mkdirSync(new URL(".", script), { recursive: true })
  Fs.writeFileSync(
    script,
    Ts.transpileModule(Fs.readFileSync(new URL(import.meta.url), "utf8"), {
      compilerOptions: { module: Ts.ModuleKind.ESNext, target: Ts.ScriptTarget.ES2022 }
    }).outputText
  )
  const instructions = (name: string, n: number) =>
    new Promise<number>((resolve, reject) => {
      const child = spawn("valgrind", [
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        process.execPath,
        "--single-threaded",
        "--predictable",
        "--min-semi-space-size=64",
        "--max-semi-space-size=64",
        Url.fileURLToPath(script),
        ...passed,
        "--variant",
        name,
        "--transactions",
        String(warmUp * 4),
        "--instructions-run",
        String(n)
      ], { stdio: ["ignore", "ignore", "pipe"] })
      let stderr = ""
      child.stderr.on("data", (chunk) => stderr += chunk)
      child.on("error", (error) =>
        reject(new Error(`--instructions runs valgrind, which could not be started: ${error.message}`)))
      child.on("close", (code) => {
        const refs = /I\s+refs:\s+([\d,]+)/.exec(stderr)
        if (code !== 0 || refs === null) {
          reject(new Error(`valgrind (${name}, ${n}): exit ${code}\n${stderr}`))
        } else resolve(Number(refs[1]!.replaceAll(",", "")))
      })
    })
  const rows: Array<Record<string, string | number>> = []
  let first: number | undefined
  for (const name of option("instructions", "withTransaction,atomic").split(",")) {
    pick(name)
    const [base, total] = await Promise.all([instructions(name, 0), instructions(name, measured)])
    const perTransaction = (total - base) / measured
    first ??= perTransaction
    rows.push({
      variant: name,
      "instructions/tx": Math.round(perTransaction),
      "× first": Number((perTransaction / first).toFixed(3))
    })
  }
  Fs.rmSync(script)
  console.log(`${database}, ${fibers} fiber(s): ${measured} transactions after a warm-up of ${warmUp}, under valgrind:`)
  console.table(rows)
  process.exit(0)
}

const run = (n: number, tx = transaction) =>
  runtime.runPromise(Effect.forEach(Array.from({ length: n }, (_, i) => i), tx, { concurrency: fibers, discard: true }))

await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.forEach([
    `CREATE TABLE ${table} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`,
    `INSERT INTO ${table} (id, v) VALUES ${Array.from({ length: 100 }, (_, i) => `(${i}, 0)`).join(", ")}`
  ], (statement) => sql.unsafe(statement))))
const dropTable = () =>
  database === "sqlite"
    ? Promise.resolve()
    : ManagedRuntime.make(clients[database]!()).runPromise(
      Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP TABLE IF EXISTS ${table}`))
    ).catch(() => undefined)
await run(count / 4) // warm-up: the JIT settles before the profile starts

if (args.includes("--instructions-run")) {
  // A process of --instructions, under valgrind: after the warm-up, the measured transactions, and out.
  await run(Number(option("instructions-run", "0")))
  await runtime.dispose()
  await dropTable()
  process.exit(0)
}

if (args.includes("--count")) {
  // Every Effect step passes its scheduler's `shouldYield` once (see the run loop of effect's FiberRuntime); a
  // ManagedRuntime's fibers run on a SyncScheduler, others on the default MixedScheduler.
  let steps = 0
  for (const { prototype } of [Scheduler.MixedScheduler, Scheduler.SyncScheduler]) {
    const shouldYield = prototype.shouldYield
    prototype.shouldYield = function(this: Scheduler.Scheduler, fiber) {
      steps++
      return shouldYield.call(this, fiber)
    }
  }
  const gc = (globalThis as { gc?: () => void }).gc!
  const n = 300
  const rows = []
  for (const name of option("count", "").split(",")) {
    await run(n, pick(name))
    gc()
    const heap = process.memoryUsage().heapUsed
    steps = 0
    await run(n, pick(name))
    const counted = steps
    const bytes = process.memoryUsage().heapUsed - heap
    rows.push({ variant: name, "Effect steps/tx": Number((counted / n).toFixed(1)), "bytes/tx": Math.round(bytes / n) })
  }
  console.log(`${fibers} fiber(s), ${n} transactions per variant:`)
  console.table(rows)
  await runtime.dispose()
  await dropTable()
  process.exit(0)
}

if (args.includes("--allocations")) {
  const session = new Inspector.Session()
  session.connect()
  await session.post("HeapProfiler.enable")
  await session.post("HeapProfiler.startSampling", {
    samplingInterval: 256,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true
  })
  await run(count / 4)
  const { profile } = await session.post("HeapProfiler.stopSampling")
  session.disconnect()
  const bytes = new Map<string, number>()
  let total = 0
  const visit = (node: typeof profile.head) => {
    const { columnNumber, functionName, lineNumber, url } = node.callFrame
    const key = `${functionName || "(anonymous)"} ${
      url.replace(/^.*node_modules\//, "").replace(/^.*\/dist\//, "dist/")
    }:${lineNumber + 1}:${columnNumber + 1}`
    bytes.set(key, (bytes.get(key) ?? 0) + node.selfSize)
    total += node.selfSize
    for (const child of node.children) visit(child)
  }
  visit(profile.head)
  console.log(`${variant}: sampled allocations by function (bytes per transaction)`)
  console.table(
    [...bytes].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([key, n]) => ({
      function: key,
      "bytes/tx": Math.round(n / (count / 4))
    }))
  )
  console.log(`total ${Math.round(total / (count / 4))} bytes per transaction (sampled)`)
  await runtime.dispose()
  await dropTable()
  process.exit(0)
}

if (args.includes("--survivors")) {
  // What outlives a scavenge: sampled once with every object, once without those that a scavenge collected (what is
  // left was promoted to the old generation, or allocated there by V8's pretenuring). By allocation site (the
  // allocating function and its two callers).
  const session = new Inspector.Session()
  session.connect()
  await session.post("HeapProfiler.enable")
  const sample = async (includeObjectsCollectedByMinorGC: boolean) => {
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 128,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC
    })
    await run(count / 4)
    const { profile } = await session.post("HeapProfiler.stopSampling")
    const bytes = new Map<string, number>()
    const where = (frame: typeof profile.head.callFrame) =>
      `${frame.functionName || "(anonymous)"} ${
        frame.url.replace(/^.*node_modules\//, "").replace(/^.*\/dist\//, "dist/")
      }:${frame.lineNumber + 1}`
    const visit = (node: typeof profile.head, path: ReadonlyArray<string>) => {
      const here = [...path, where(node.callFrame)]
      const key = here.slice(-3).reverse().join(" < ")
      bytes.set(key, (bytes.get(key) ?? 0) + node.selfSize)
      for (const child of node.children) visit(child, here)
    }
    visit(profile.head, [])
    return bytes
  }
  const all = await sample(true)
  const survived = await sample(false)
  const perTx = (n: number) => Math.round(n / (count / 4))
  const sum = (map: Map<string, number>) => [...map.values()].reduce((a, b) => a + b, 0)
  console.log(`${variant}: sampled bytes per transaction that outlived a scavenge, by allocation site`)
  console.table(
    [...survived].sort((a, b) => b[1] - a[1]).slice(0, Number(option("top", "25"))).map(([key, n]) => ({
      site: key.length > 150 ? key.slice(0, 150) + "…" : key,
      "survived B/tx": perTx(n),
      "allocated B/tx": perTx(all.get(key) ?? 0)
    }))
  )
  console.log(`total: allocated ${perTx(sum(all))}, survived ${perTx(sum(survived))} bytes per transaction (sampled)`)
  session.disconnect()
  await runtime.dispose()
  await dropTable()
  process.exit(0)
}

if (args.includes("--compare")) {
  const names = option("compare", "").split(",")
  const rounds = Number(option("rounds", "20"))
  const perRound = count / rounds
  const samples = new Map<string, Array<number>>(names.map((name) => [name, []]))
  for (const name of names) await run(count / 4, pick(name))
  for (let round = 0; round < rounds; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) {
      const cpu = process.cpuUsage()
      await run(perRound, pick(name))
      const used = process.cpuUsage(cpu)
      samples.get(name)!.push((used.user + used.system) / perRound)
    }
  }
  const quantile = (values: ReadonlyArray<number>, q: number) => {
    const sorted = [...values].sort((a, b) => a - b)
    const rank = q * (sorted.length - 1)
    const low = Math.floor(rank)
    return sorted[low]! + (sorted[Math.min(low + 1, sorted.length - 1)]! - sorted[low]!) * (rank - low)
  }
  const base = samples.get(names[0]!)!
  console.log(`${fibers} fiber(s), ${rounds} rounds of ${perRound} transactions per variant; CPU µs per transaction:`)
  console.table(names.map((name) => {
    const values = samples.get(name)!
    const ratios = values.map((value, round) => value / base[round]!)
    return {
      variant: name,
      "CPU µs/tx": Number(quantile(values, 0.5).toFixed(1)),
      [`× ${names[0]}`]: Number(quantile(ratios, 0.5).toFixed(3)),
      q1: Number(quantile(ratios, 0.25).toFixed(3)),
      q3: Number(quantile(ratios, 0.75).toFixed(3))
    }
  }))
  await runtime.dispose()
  await dropTable()
  process.exit(0)
}

const session = new Inspector.Session()
session.connect()
await session.post("Profiler.enable")
await session.post("Profiler.setSamplingInterval", { interval: 100 })
await session.post("Profiler.start")
const cpu = process.cpuUsage()
await run(count)
const used = process.cpuUsage(cpu)
const { profile } = await session.post("Profiler.stop")
session.disconnect()
await runtime.dispose()
await dropTable()
if (outFile !== undefined) Fs.writeFileSync(outFile, JSON.stringify(profile))

// Self time per function (by name and location), from the samples' time deltas.
const project = new URL("../dist/", import.meta.url).href
const locate = (url: string) =>
  url.startsWith(project) ? `effect-sql-tx/${url.slice(project.length)}` : url.replace(/^.*node_modules\//, "")
const packageOf = (url: string, functionName: string) => {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)"
  const where = locate(url)
  if (where.startsWith("effect-sql-tx/")) return "effect-sql-tx"
  if (where.startsWith("@")) return where.split("/").slice(0, 2).join("/")
  if (where.startsWith("node:")) return "node"
  return where.split("/")[0]!
}
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const self = new Map<string, number>()
const byPackage = new Map<string, number>()
let total = 0
for (let i = 0; i < profile.samples!.length; i++) {
  const { columnNumber, functionName, lineNumber, url } = byId.get(profile.samples![i]!)!.callFrame
  const delta = profile.timeDeltas![i]!
  total += delta
  const key = url === ""
    ? functionName
    : `${functionName || "(anonymous)"} ${locate(url)}:${lineNumber + 1}:${columnNumber + 1}`
  self.set(key, (self.get(key) ?? 0) + delta)
  const owner = packageOf(url, functionName)
  byPackage.set(owner, (byPackage.get(owner) ?? 0) + delta)
}
const percent = (micros: number) => Number((100 * micros / total).toFixed(1))

console.log(
  `${variant}, ${fibers} fiber(s), ${count} transactions: ${
    ((used.user + used.system) / count).toFixed(1)
  } CPU µs per ` +
    `transaction; self time by package (%):`
)
console.table(
  [...byPackage].sort((a, b) => b[1] - a[1]).map(([name, micros]) => ({ package: name, "%": percent(micros) }))
)
console.log("top functions by self time (%):")
console.table(
  [...self].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([key, micros]) => ({ function: key, "%": percent(micros) }))
)
