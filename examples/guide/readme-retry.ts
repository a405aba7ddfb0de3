import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { RetryPolicy, Transaction, withRetry } from "../../src/index.js"

const transfer = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE accounts SET balance = balance - 100 WHERE id = 1`
  yield* sql`UPDATE accounts SET balance = balance + 100 WHERE id = 2`
})

export const program = transfer.pipe(
  Transaction.atomic({ name: "transfer", isolation: "serializable", lockTimeout: "100 millis" }),
  withRetry() // RetryPolicy.default
)

export const patient = transfer.pipe(
  Transaction.atomic({ name: "transfer" }),
  withRetry(RetryPolicy.exponential({ base: "20 millis", factor: 2, times: 10, maxDelay: "2 seconds" }))
)
