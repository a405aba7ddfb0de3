import { SqlClient } from "@effect/sql"
import { Data, Effect } from "effect"
import { Transaction } from "../../src/index.js"

class GiftWrapUnavailable extends Data.TaggedError("GiftWrapUnavailable")<{}> {}

const insert = (table: string, id: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO ${sql(table)} (id) VALUES (${id})`)

// Level 2: a savepoint inside a savepoint. Its failure undoes its own insert only.
const giftWrap = (orderId: number) =>
  Effect.gen(function*() {
    yield* insert("gift_wraps", orderId)
    return yield* new GiftWrapUnavailable()
  }).pipe(Transaction.atomic({ name: "gift-wrap" }))

// Level 1: a savepoint. It catches the failure of its own nested block and goes on.
const extras = (orderId: number) =>
  Effect.gen(function*() {
    yield* insert("order_notes", orderId)
    const wrapped = yield* giftWrap(orderId).pipe(
      Effect.as(true),
      Effect.catchTag("GiftWrapUnavailable", () => Effect.succeed(false))
    )
    return { wrapped }
  }).pipe(Transaction.atomic({ name: "extras" }))

// Level 0: the transaction. Two sibling blocks started by concurrent fibers run one after the other (each holds
// its parent's savepoint lock from SAVEPOINT to its end), so their savepoints never interleave.
export const checkout = (orderId: number) =>
  Effect.gen(function*() {
    yield* insert("orders", orderId)
    const [extra, loyalty] = yield* Effect.all([
      extras(orderId),
      insert("loyalty_points", orderId).pipe(Transaction.atomic({ name: "loyalty" }), Effect.either)
    ], { concurrency: 2 })
    const depth = yield* Effect.map(Transaction.Transaction, (tx) => tx.depth) // 0 here
    return { extra, loyaltyAwarded: loyalty._tag === "Right", depth }
  }).pipe(Transaction.atomic({ name: "checkout" }))
