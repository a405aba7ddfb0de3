import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

const sendConfirmationEmail = (orderId: number) => Effect.log(`mail: order ${orderId} confirmed`)

export const placeOrder = (orderId: number, customer: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO orders (id, customer) VALUES (${orderId}, ${customer})`
    // Inside the transaction, just before COMMIT, on its connection: may run SQL; a failure rolls back.
    yield* Transaction.beforeCommit(sql`UPDATE stats SET orders = orders + 1`)
    // Once, after the COMMIT succeeded, outside the transaction: its statements would take a pooled connection.
    yield* Transaction.afterCommit(sendConfirmationEmail(orderId))
    // Inside, just before ROLLBACK; then after it, outside.
    yield* Transaction.beforeRollback(Effect.log("rolling back"))
    yield* Transaction.afterRollback(Effect.logWarning(`order ${orderId} not placed`))
    // Registered in a nested block: joins the parent's hooks if the block succeeds, is dropped if it rolls back.
    yield* Transaction.afterCommit(Effect.log("loyalty points awarded")).pipe(
      Effect.zipRight(sql`INSERT INTO loyalty (customer, points) VALUES (${customer}, 10)`),
      Transaction.atomic({ name: "loyalty" }),
      Effect.ignore
    )
  }).pipe(Transaction.atomic({ name: "order" }), withRetry())
