import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer } from "effect"
import { Transaction, TransactionLayer } from "../../src/index.js"

// SQLite: one connection per client; transactions begin with BEGIN IMMEDIATE and run one at a time.
export const DatabaseLive = TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: "app.db" })))

export const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`
  yield* sql`INSERT INTO notes (body) VALUES (${"first"})`
  return yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM notes`
}).pipe(Transaction.atomic({ name: "notes" }))

program.pipe(
  Effect.flatMap((rows) => Effect.log(`notes: ${rows[0]?.n}`)),
  Effect.provide(DatabaseLive),
  NodeRuntime.runMain
)
