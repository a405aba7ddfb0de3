/**
 * The per-operation budget (issue 12, item 5): the CPU time this process spends on each operation of a
 * transaction, the server's time apart, against the original design's budget: starting a transaction, committing
 * and rolling back under 0.5 ms each; creating a savepoint and rolling back to one under 0.3 ms.
 *
 * Each operation is bracketed by readings of `process.cpuUsage()` (user + system, in µs) taken by the transaction
 * itself: before `atomic` and at the start of its body (start: acquiring the connection, BEGIN, the bookkeeping),
 * at the end of the body and after `atomic` returns (commit), and the same around a nested block (savepoint: from
 * before it to the start of its body; rollback to: from the failure at the end of its body to its return) and around
 * a failing transaction (rollback). The process is idle while it waits for the server, so what is counted is the
 * library's, the driver's and Effect's work, not the server's. Wall times are given beside them.
 *
 * `npm run bench` runs it for the three databases; `npm run bench -- --only budget` alone.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Either, Layer, ManagedRuntime, Redacted } from "effect"
import type * as Library from "../src/index.js"

/** The library as it ships (see bench/index.ts). */
const { Transaction, TransactionLayer }: typeof Library = await import(
  new URL("../dist/index.js", import.meta.url).href
)

export interface BudgetOptions {
  readonly quick: boolean
  readonly extra: Record<string, unknown>
  readonly pgUrl: string
  readonly mysqlUrl: string
  readonly only: ReadonlyArray<string>
}

/** The budget of each operation, in µs of CPU. */
const budgets = { start: 500, commit: 500, rollback: 500, savepoint: 300, "rollback to savepoint": 300 } as const
type Operation = keyof typeof budgets

const cpuNow = () => {
  const { system, user } = process.cpuUsage()
  return user + system
}

const quantile = (values: ReadonlyArray<number>, q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

/** One round of every operation, each reading added to `cpu` and `wall` (µs). */
const round = (cpu: Map<Operation, Array<number>>, wall: Map<Operation, Array<number>>, table: string) => {
  const note = (operation: Operation, from: { readonly cpu: number; readonly wall: number }) => {
    cpu.get(operation)!.push(cpuNow() - from.cpu)
    wall.get(operation)!.push((performance.now() - from.wall) * 1000)
  }
  const mark = () => ({ cpu: cpuNow(), wall: performance.now() })
  const update = Effect.flatMap(SqlClient.SqlClient, (sql) => sql`UPDATE ${sql(table)} SET v = v + 1 WHERE id = 1`)
  return Effect.gen(function*() {
    const beforeStart = mark()
    let bodyEnd = beforeStart
    yield* Transaction.atomic(Effect.gen(function*() {
      note("start", beforeStart)
      yield* update
      const beforeSavepoint = mark()
      yield* Transaction.atomic(Effect.sync(() => note("savepoint", beforeSavepoint)))
      let failedAt = beforeSavepoint
      yield* Effect.either(Transaction.atomic(Effect.suspend(() => {
        failedAt = mark()
        return Effect.fail("rolled back to its savepoint")
      })))
      note("rollback to savepoint", failedAt)
      bodyEnd = mark()
    }))
    note("commit", bodyEnd)
    let failedAt = bodyEnd
    const rolledBack = yield* Effect.either(Transaction.atomic(Effect.zipRight(
      update,
      Effect.suspend(() => {
        failedAt = mark()
        return Effect.fail("rolled back")
      })
    )))
    note("rollback", failedAt)
    if (Either.isRight(rolledBack)) throw new Error("the failing transaction committed")
  })
}

const measure = async (
  database: string,
  client: Layer.Layer<SqlClient.SqlClient, unknown>,
  { extra, quick }: BudgetOptions
) => {
  const table = `bench_budget_${process.pid}`
  const runtime = ManagedRuntime.make(TransactionLayer.pipe(Layer.provideMerge(client)))
  const fresh = () => new Map<Operation, Array<number>>(Object.keys(budgets).map((op) => [op as Operation, []]))
  const cpu = fresh()
  const wall = fresh()
  const rounds = quick ? 200 : 2000
  try {
    await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.zipRight(
        sql.unsafe(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`),
        sql.unsafe(`INSERT INTO ${table} (id, v) VALUES (1, 0)`)
      )))
    // A warm-up, not counted.
    await runtime.runPromise(Effect.repeatN(round(fresh(), fresh(), table), rounds / 4))
    await runtime.runPromise(Effect.repeatN(round(cpu, wall, table), rounds - 1))
  } finally {
    await runtime.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP TABLE IF EXISTS ${table}`)))
      .catch(() => undefined)
    await runtime.dispose()
  }
  const rows = (Object.keys(budgets) as Array<Operation>).map((operation) => {
    const values = cpu.get(operation)!
    const median = quantile(values, 0.5)
    return {
      database,
      operation,
      "CPU µs (median)": median,
      "CPU µs (p90)": quantile(values, 0.9),
      "wall µs (median)": Number(quantile(wall.get(operation)!, 0.5).toFixed(1)),
      "budget µs": budgets[operation],
      within: median < budgets[operation] ? "yes" : "NO"
    }
  })
  extra[`budget ${database}`] = { rounds, rows }
  return rows
}

/** Every database in `only` (pg, mysql, sqlite; all when `only` names none of them). */
export const budgetBench = async (options: BudgetOptions) => {
  const { mysqlUrl, only, pgUrl } = options
  const picked = ["pg", "mysql", "sqlite"].filter((name) => only.includes(name))
  const databases = picked.length === 0 ? ["pg", "mysql", "sqlite"] : picked
  const rows = []
  for (const database of databases) {
    const client = database === "pg"
      ? PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 4 })
      : database === "mysql"
      ? MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections: 4 })
      : SqliteClient.layer({ filename: ":memory:" })
    rows.push(...await measure(database, client as Layer.Layer<SqlClient.SqlClient, unknown>, options))
  }
  console.log(
    "\nper-operation budget: CPU time of this process per operation (the server's apart), one transaction at a time"
  )
  console.table(rows)
}
