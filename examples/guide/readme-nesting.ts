import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction } from "../../src/index.js"

const run = (statement: string) => Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(statement))

export const program = Effect.gen(function*() {
  yield* run("INSERT INTO orders (id) VALUES (1)")
  // A nested block is a savepoint: if it fails, only its work is undone.
  const loyalty = yield* run("INSERT INTO loyalty (order_id) VALUES (1)").pipe(Transaction.atomic(), Effect.either)
  yield* run("INSERT INTO audit (what) VALUES ('checkout')")
  return loyalty._tag === "Right"
}).pipe(Transaction.atomic({ name: "checkout" }))
