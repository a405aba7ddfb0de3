/**
 * A coordinator in a process of its own, for the crash tests (run with tsx by test/TwoPhaseCrash.test.ts).
 *
 * - `MODE=crash`: one two-phase transaction that inserts `TRANSFER` into `TABLE` on both participants; the process
 *   kills itself (SIGKILL) at the protocol point named by `CRASH_POINT` (see `TwoPhaseCommit.ProbePoint`).
 * - `MODE=bank`: transfers in a loop until killed from outside: a debit on PostgreSQL, a credit on the other
 *   participant, each logged by its id on both sides. Prints `committed <id>` after each commit.
 *
 * `PAIR` is `pg-mysql` (PostgreSQL + MariaDB) or `pg-pg` (two PostgreSQL databases); `COORDINATOR` the coordinator id.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect } from "effect"
import { TwoPhaseCommit } from "../../src/index.js"
import * as T from "../utils/twophase.js"

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const mode = env("MODE")
const pair = env("PAIR")
const coordinatorId = env("COORDINATOR")
const table = env("TABLE")

const other = pair === "pg-mysql" ? T.mysqlLayer() : T.pgBLayer()

const coordinator = TwoPhaseCommit.make({
  coordinatorId,
  participants: [TwoPhaseCommit.participant("a", T.pgLayer()), TwoPhaseCommit.participant("b", other)],
  log: "a",
  recovery: false,
  probe: (point) =>
    Effect.sync(() => {
      if (mode === "crash" && point === process.env.CRASH_POINT) process.kill(process.pid, "SIGKILL")
    })
})

const placeholder = (sql: SqlClient.SqlClient, n: number) =>
  sql.onDialectOrElse({ pg: () => `$${n}`, orElse: () => "?" })

const transfer = (id: string, amount: number, sign: 1 | -1) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.zipRight(
      sql.unsafe(`UPDATE ${table}_accounts SET balance = balance + ${sign * amount} WHERE id = 1`),
      sql.unsafe(
        `INSERT INTO ${table} (id, amount) VALUES (${placeholder(sql, 1)}, ${placeholder(sql, 2)})`,
        [id, amount]
      )
    ))

const program = Effect.scoped(Effect.gen(function*() {
  const c = yield* coordinator
  if (mode === "crash") {
    const id = env("TRANSFER")
    yield* c.run({ a: transfer(id, 10, -1), b: transfer(id, 10, 1) }, { name: "crash" })
    return
  }
  process.stdout.write("ready\n")
  for (let i = 0;; i++) {
    const id = `${process.pid}-${i}`
    const amount = 1 + (i % 7)
    const result = yield* Effect.either(c.run({ a: transfer(id, amount, -1), b: transfer(id, amount, 1) }, {
      name: "bank",
      concurrent: i % 2 === 0
    }))
    if (result._tag === "Right") process.stdout.write(`committed ${id}\n`)
    else process.stdout.write(`failed ${id} ${String(result.left)}\n`)
  }
}))

Effect.runPromise(program).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
