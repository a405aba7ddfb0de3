import { NodeRuntime } from "@effect/platform-node"
import type { SqlClient } from "@effect/sql"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Effect, Layer, Redacted } from "effect"
import { TransactionLayer, TransactionMetrics } from "../../src/index.js"
import * as Shop from "./ecommerce.js"

// DATABASE_URL=postgres://… or mysql://…, or SQLite in a file by default.
const url = process.env.DATABASE_URL
const ClientLive: Layer.Layer<SqlClient.SqlClient, unknown> = url?.startsWith("postgres")
  ? PgClient.layer({ url: Redacted.make(url) })
  : url?.startsWith("mysql")
  ? MysqlClient.layer({ url: Redacted.make(url) })
  : SqliteClient.layer({ filename: "shop.db" })

const MailerLive = Layer.succeed(Shop.Mailer, {
  orderConfirmed: (orderId, customer, totalCents) => Effect.log(`mail to ${customer}: ${orderId}, ${totalCents}`)
})

const t = Shop.tables("demo")

const program = Effect.gen(function*() {
  yield* Shop.createTables(t)
  yield* Shop.seed(t, {
    products: [{ id: 1, priceCents: 1_000, stock: 3 }],
    wallets: [{ customer: "ada", balanceCents: 5_000 }, { customer: "bob", balanceCents: 5_000 }],
    coupons: [{ code: "WELCOME", percentOff: 10, remaining: 1 }]
  })
  const results = yield* Effect.forEach(
    ["ada", "bob", "ada", "bob"],
    (customer, i) =>
      Shop.placeOrder(t, {
        orderId: `order-${i}`,
        customer,
        lines: [{ productId: 1, quantity: 1 }],
        coupon: "WELCOME"
      }).pipe(Effect.either),
    { concurrency: "unbounded" }
  )
  yield* Effect.log(results.map((r) => r._tag === "Right" ? `${r.right.totalCents}` : r.left._tag).join(", "))
  const snapshot = yield* TransactionMetrics.snapshot
  yield* Effect.log(`place-order: ${JSON.stringify(snapshot.byName["place-order"])}`)
}).pipe(Effect.ensuring(Effect.ignore(Shop.dropTables(t))))

program.pipe(
  Effect.provide(Layer.mergeAll(TransactionLayer, MailerLive).pipe(Layer.provideMerge(ClientLive))),
  NodeRuntime.runMain
)
