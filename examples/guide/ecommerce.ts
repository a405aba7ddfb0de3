import { SqlClient } from "@effect/sql"
import { Context, Data, Effect } from "effect"
import { RetryPolicy, Transaction, withRetry } from "../../src/index.js"

// The shop's tables. Their names take a prefix so that the tests can give each run tables of its own.
export interface Tables {
  readonly products: string
  readonly wallets: string
  readonly coupons: string
  readonly orders: string
  readonly orderLines: string
  readonly payments: string
  readonly outbox: string
}

export const tables = (prefix = "shop"): Tables => ({
  products: `${prefix}_products`,
  wallets: `${prefix}_wallets`,
  coupons: `${prefix}_coupons`,
  orders: `${prefix}_orders`,
  orderLines: `${prefix}_order_lines`,
  payments: `${prefix}_payments`,
  outbox: `${prefix}_outbox`
})

// The account that receives the payments: money moves between wallets, never appears or disappears.
export const shopAccount = "shop"

// SQL that PostgreSQL, MySQL/MariaDB and SQLite all accept.
export const createTables = (t: Tables) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE ${sql(t.products)} (
      id INTEGER PRIMARY KEY,
      name VARCHAR(100) NOT NULL,
      price_cents INTEGER NOT NULL,
      stock INTEGER NOT NULL CHECK (stock >= 0))`
    yield* sql`CREATE TABLE ${sql(t.wallets)} (
      customer VARCHAR(64) PRIMARY KEY,
      balance_cents INTEGER NOT NULL CHECK (balance_cents >= 0))`
    yield* sql`CREATE TABLE ${sql(t.coupons)} (
      code VARCHAR(32) PRIMARY KEY,
      percent_off INTEGER NOT NULL,
      remaining INTEGER NOT NULL)`
    yield* sql`CREATE TABLE ${sql(t.orders)} (
      id VARCHAR(64) PRIMARY KEY,
      customer VARCHAR(64) NOT NULL,
      coupon VARCHAR(32),
      discount_cents INTEGER NOT NULL,
      total_cents INTEGER NOT NULL)`
    yield* sql`CREATE TABLE ${sql(t.orderLines)} (
      order_id VARCHAR(64) NOT NULL,
      product_id INTEGER NOT NULL,
      quantity INTEGER NOT NULL,
      price_cents INTEGER NOT NULL,
      PRIMARY KEY (order_id, product_id))`
    yield* sql`CREATE TABLE ${sql(t.payments)} (
      order_id VARCHAR(64) PRIMARY KEY,
      customer VARCHAR(64) NOT NULL,
      amount_cents INTEGER NOT NULL)`
    yield* sql`CREATE TABLE ${sql(t.outbox)} (
      order_id VARCHAR(64) PRIMARY KEY,
      event VARCHAR(32) NOT NULL)`
  })

export const dropTables = (t: Tables) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const table of Object.values(t)) yield* sql`DROP TABLE IF EXISTS ${sql(table)}`
  })

// Typed failures of the business: they roll the transaction back and are never retried.
export class UnknownProduct extends Data.TaggedError("UnknownProduct")<{ readonly productId: number }> {}

export class OutOfStock extends Data.TaggedError("OutOfStock")<{
  readonly productId: number
  readonly requested: number
  readonly available: number
}> {}

export class InsufficientFunds extends Data.TaggedError("InsufficientFunds")<{
  readonly customer: string
  readonly needed: number
  readonly available: number
}> {}

export class CouponRejected extends Data.TaggedError("CouponRejected")<{ readonly code: string }> {}

// Something that must happen once the order is committed, and never for an order that was not.
export class Mailer extends Context.Tag("shop/Mailer")<Mailer, {
  readonly orderConfirmed: (orderId: string, customer: string, totalCents: number) => Effect.Effect<void>
}>() {}

export interface OrderRequest {
  // Made by the client, once per order: the idempotency key.
  readonly orderId: string
  readonly customer: string
  readonly lines: ReadonlyArray<{ readonly productId: number; readonly quantity: number }>
  readonly coupon?: string | undefined
}

export interface PlacedOrder {
  readonly orderId: string
  readonly totalCents: number
  readonly discountCents: number
  // True when the order had already been placed (a client retry, or a re-run after CommitOutcomeUnknown).
  readonly replayed: boolean
}

// A nested block (a savepoint): a rejected coupon undoes its own update only, and the order goes on without it.
const redeemCoupon = (t: Tables, code: string, subtotal: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE ${sql(t.coupons)} SET remaining = remaining - 1 WHERE code = ${code}`
    const rows = yield* sql<{ percent_off: number; remaining: number }>`
      SELECT percent_off, remaining FROM ${sql(t.coupons)} WHERE code = ${code}`
    const coupon = rows[0]
    if (coupon === undefined || Number(coupon.remaining) < 0) return yield* new CouponRejected({ code })
    return Math.floor(subtotal * Number(coupon.percent_off) / 100)
  }).pipe(Transaction.atomic({ name: "redeem-coupon" }))

// Moves money from the customer's wallet to the shop's, and records the payment.
const pay = (t: Tables, orderId: string, customer: string, amount: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ balance_cents: number }>`
      SELECT balance_cents FROM ${sql(t.wallets)} WHERE customer = ${customer}`
    const available = Number(rows[0]?.balance_cents ?? 0)
    if (available < amount) return yield* new InsufficientFunds({ customer, needed: amount, available })
    yield* sql`UPDATE ${sql(t.wallets)} SET balance_cents = balance_cents - ${amount} WHERE customer = ${customer}`
    yield* sql`UPDATE ${sql(t.wallets)} SET balance_cents = balance_cents + ${amount} WHERE customer = ${shopAccount}`
    yield* sql`INSERT INTO ${sql(t.payments)} (order_id, customer, amount_cents)
      VALUES (${orderId}, ${customer}, ${amount})`
  })

// The order is safe to run again (its id is checked first), so the policy may also retry CommitOutcomeUnknown.
export const orderRetryPolicy = RetryPolicy.exponential({
  base: "10 millis",
  times: 8,
  maxDelay: "500 millis",
  idempotent: true
})

export const placeOrder = (t: Tables, request: OrderRequest) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const mailer = yield* Mailer

    // 1. Idempotency: an order id that is already there was placed by an earlier call; change nothing.
    const existing = yield* sql<{ total_cents: number; discount_cents: number }>`
      SELECT total_cents, discount_cents FROM ${sql(t.orders)} WHERE id = ${request.orderId}`
    if (existing[0] !== undefined) {
      return {
        orderId: request.orderId,
        totalCents: Number(existing[0].total_cents),
        discountCents: Number(existing[0].discount_cents),
        replayed: true
      } satisfies PlacedOrder
    }

    // 2. Stock, in product id order: every order takes its row locks in the same order.
    const lines = [...request.lines].sort((a, b) => a.productId - b.productId)
    let subtotal = 0
    const priced: Array<{ productId: number; quantity: number; price: number }> = []
    for (const line of lines) {
      const rows = yield* sql<{ stock: number; price_cents: number }>`
        SELECT stock, price_cents FROM ${sql(t.products)} WHERE id = ${line.productId}`
      const product = rows[0]
      if (product === undefined) return yield* new UnknownProduct({ productId: line.productId })
      const available = Number(product.stock)
      if (available < line.quantity) {
        return yield* new OutOfStock({ productId: line.productId, requested: line.quantity, available })
      }
      yield* sql`UPDATE ${sql(t.products)} SET stock = stock - ${line.quantity} WHERE id = ${line.productId}`
      const price = Number(product.price_cents)
      subtotal += price * line.quantity
      priced.push({ productId: line.productId, quantity: line.quantity, price })
    }

    // 3. The coupon, in a savepoint of its own: a rejected coupon is not a failed order.
    const discount = request.coupon === undefined ? 0 : yield* redeemCoupon(t, request.coupon, subtotal).pipe(
      Effect.catchTag("CouponRejected", () => Effect.succeed(0))
    )
    const total = subtotal - discount

    // 4. The order, its lines and the payment.
    yield* sql`INSERT INTO ${sql(t.orders)} (id, customer, coupon, discount_cents, total_cents)
      VALUES (${request.orderId}, ${request.customer}, ${discount > 0 ? request.coupon! : null}, ${discount}, ${total})`
    for (const line of priced) {
      yield* sql`INSERT INTO ${sql(t.orderLines)} (order_id, product_id, quantity, price_cents)
        VALUES (${request.orderId}, ${line.productId}, ${line.quantity}, ${line.price})`
    }
    yield* pay(t, request.orderId, request.customer, total)

    // 5. Hooks. The outbox row commits with the order (a relay can publish it even if this process dies);
    //    the e-mail goes out once, after the COMMIT, and only for the attempt that committed.
    yield* Transaction.beforeCommit(
      sql`INSERT INTO ${sql(t.outbox)} (order_id, event) VALUES (${request.orderId}, 'order-confirmed')`
    )
    yield* Transaction.afterCommit(mailer.orderConfirmed(request.orderId, request.customer, total))
    yield* Transaction.afterRollback(Effect.logInfo(`order ${request.orderId} not placed`))

    return {
      orderId: request.orderId,
      totalCents: total,
      discountCents: discount,
      replayed: false
    } satisfies PlacedOrder
  }).pipe(
    Transaction.atomic({
      name: "place-order",
      isolation: "serializable",
      timeout: "5 seconds",
      lockTimeout: "2 seconds"
    }),
    withRetry(orderRetryPolicy)
  )

// Stock and money for a new shop.
export const seed = (
  t: Tables,
  data: {
    readonly products: ReadonlyArray<{ readonly id: number; readonly priceCents: number; readonly stock: number }>
    readonly wallets: ReadonlyArray<{ readonly customer: string; readonly balanceCents: number }>
    readonly coupons: ReadonlyArray<{ readonly code: string; readonly percentOff: number; readonly remaining: number }>
  }
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    for (const p of data.products) {
      yield* sql`INSERT INTO ${sql(t.products)} (id, name, price_cents, stock)
        VALUES (${p.id}, ${`product ${p.id}`}, ${p.priceCents}, ${p.stock})`
    }
    for (const w of [{ customer: shopAccount, balanceCents: 0 }, ...data.wallets]) {
      yield* sql`INSERT INTO ${sql(t.wallets)} (customer, balance_cents) VALUES (${w.customer}, ${w.balanceCents})`
    }
    for (const c of data.coupons) {
      yield* sql`INSERT INTO ${sql(t.coupons)} (code, percent_off, remaining)
        VALUES (${c.code}, ${c.percentOff}, ${c.remaining})`
    }
  }).pipe(Transaction.atomic({ name: "seed" }))
