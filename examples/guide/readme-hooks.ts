import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

const sendConfirmationEmail = (orderId: number) => Effect.log(`order ${orderId} confirmed`)

export const placeOrder = (orderId: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`INSERT INTO orders (id) VALUES (${orderId})`
    yield* Transaction.beforeCommit(sql`UPDATE stats SET orders = orders + 1`) // inside, may run SQL
    yield* Transaction.afterCommit(sendConfirmationEmail(orderId)) // once, after the COMMIT succeeded
    yield* Transaction.afterRollback(Effect.logWarning("order not placed"))
  }).pipe(Transaction.atomic({ name: "order" }), withRetry())
