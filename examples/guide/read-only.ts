import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction } from "../../src/index.js"

// A consistent report: every query sees the same snapshot; a write fails with ReadOnlyViolation.
export const dailyReport = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const orders = yield* sql<{ n: number }>`SELECT COUNT(*) AS n FROM orders`
  const revenue = yield* sql<{ total: number }>`SELECT COALESCE(SUM(total_cents), 0) AS total FROM orders`
  return { orders: Number(orders[0]?.n ?? 0), revenueCents: Number(revenue[0]?.total ?? 0) }
}).pipe(Transaction.atomic({ name: "daily-report", isolation: "repeatable read", readOnly: true }))

// PostgreSQL only: SERIALIZABLE READ ONLY DEFERRABLE waits (at BEGIN's first query) for a snapshot that no
// concurrent transaction can invalidate, then runs without any risk of a serialization failure.
export const auditReport = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ customer: string; balance_cents: number }>`SELECT customer, balance_cents FROM wallets`
}).pipe(Transaction.atomic({ name: "audit-report", isolation: "serializable", readOnly: true, deferrable: true }))
