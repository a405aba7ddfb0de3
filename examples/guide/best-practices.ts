import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

// Stand-ins for a payment provider's API and a queue: network calls, seconds long, that can fail.
const chargeCard = (token: string, cents: number) => Effect.succeed({ chargeId: `ch_${token}_${cents}` })
const publish = (topic: string, payload: string) => Effect.log(`${topic}: ${payload}`)

export const checkout = (orderId: string, cardToken: string, cents: number) =>
  Effect.gen(function*() {
    // 1. The slow, external part first, outside any transaction: no locks held while the network answers.
    const { chargeId } = yield* chargeCard(cardToken, cents)
    // 2. A short transaction that only touches the database, locking rows in one order (ids ascending), and whose
    //    idempotency key (the order id, a primary key) makes a second run harmless.
    yield* Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const done = yield* sql`SELECT 1 FROM payments WHERE order_id = ${orderId}`
      if (done.length > 0) return
      yield* sql`INSERT INTO payments (order_id, charge_id, cents) VALUES (${orderId}, ${chargeId}, ${cents})`
      yield* sql`UPDATE orders SET status = 'paid' WHERE id = ${orderId}`
      yield* Transaction.beforeCommit(sql`INSERT INTO outbox (order_id, event) VALUES (${orderId}, 'paid')`)
      // 3. What must not happen for an uncommitted order, after the COMMIT.
      yield* Transaction.afterCommit(publish("order-paid", orderId))
    }).pipe(Transaction.atomic({ name: "record-payment", timeout: "3 seconds" }), withRetry())
  })
