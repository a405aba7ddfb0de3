import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Layer } from "effect"
import { Transaction, TransactionLayer } from "../../src/index.js"

// Moves money between two accounts: both updates commit, or neither does.
export const transfer = (from: number, to: number, amount: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from}`
    yield* sql`UPDATE accounts SET balance = balance + ${amount} WHERE id = ${to}`
  }).pipe(Transaction.atomic({ name: "transfer" }))

// The client (a pool) and the transaction manager on top of it: built once, provided at the edge.
export const DatabaseLive = TransactionLayer.pipe(
  Layer.provideMerge(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL") }))
)

transfer(1, 2, 100).pipe(Effect.provide(DatabaseLive), NodeRuntime.runMain)
