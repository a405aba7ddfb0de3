/**
 * Reproduction, found by the soak: interrupting a transaction that has a `timeout` while its body waits for a
 * statement leaves the body running after the transaction rolled back. The body's later statements then run on the
 * connection after ROLLBACK: in autocommit (each committed alone), or inside whatever transaction the next user of
 * the pooled connection starts.
 *
 *   flock /tmp/effect-sql-tx-db.lock npx tsx bench/soak/repro/body-outlives-block.ts mysql
 *   flock /tmp/effect-sql-tx-db.lock npx tsx bench/soak/repro/body-outlives-block.ts pg
 *
 * The body: a statement that the interruption cancels (its error is handled, `Effect.either`), a client-side pause
 * longer than the 500 ms grace that `stop` gives a cancelled body, then an INSERT. Expected (DESIGN.md, "All or
 * nothing": no statement of a transaction runs after it ended): the INSERT never commits, 0 rows. Observed on
 * MariaDB 10.11: `atomic` returns (interrupted) within ~15 ms, the body goes on, and its INSERT commits 1 s later:
 * 1 row. Exits non-zero when the row is there.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Fiber, Layer, Redacted } from "effect"
import { Transaction, TransactionLayer } from "../../../src/index.js"

const database = process.argv[2] === "pg" ? "pg" : "mysql"
const client = database === "pg"
  ? PgClient.layer({ url: Redacted.make(process.env.PG_URL ?? "postgres://postgres@127.0.0.1:5432/test") })
  : MysqlClient.layer({ url: Redacted.make(process.env.MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test") })
const table = `repro_outlive_${process.pid}`
const started = Date.now()
const log = (message: string) => Effect.sync(() => console.log(`${Date.now() - started} ms: ${message}`))

const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY)`)
  const fiber = yield* Effect.gen(function*() {
    const slept = yield* Effect.either(sql.unsafe(database === "pg" ? "SELECT pg_sleep(0.5)" : "SELECT SLEEP(0.5)"))
    yield* log(`body: the statement ended (${slept._tag === "Left" ? "cancelled" : "not cancelled"})`)
    yield* Effect.sleep("1 second")
    yield* sql.unsafe(`INSERT INTO ${table} (id) VALUES (1)`)
    yield* log("body: INSERT done")
  }).pipe(
    Transaction.atomic({ name: "repro", timeout: "10 seconds" }),
    Effect.onExit((exit) => log(`atomic ended: ${exit._tag}`)),
    Effect.fork
  )
  yield* Effect.sleep("100 millis")
  yield* log("interrupting the transaction")
  yield* Fiber.interrupt(fiber)
  yield* Effect.sleep("2 seconds")
  const [{ n }] = yield* sql.unsafe<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`)
  yield* sql.unsafe(`DROP TABLE ${table}`)
  console.log(`${database}: rows committed by the interrupted transaction: ${n} (expected 0)`)
  if (Number(n) !== 0) process.exitCode = 1
})

program.pipe(Effect.provide(TransactionLayer.pipe(Layer.provideMerge(client))), Effect.runPromise)
