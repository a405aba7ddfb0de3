import { NodeSdk } from "@effect/opentelemetry"
import { SqlClient } from "@effect/sql"
import { ConsoleSpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect } from "effect"
import { Transaction } from "../../src/index.js"

// Each transaction attempt is a span "effect_sql_tx.transaction"; the statements of its body are its children,
// and it is a child of whatever span is current, like this one.
export const checkout = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE carts SET status = 'ordered' WHERE id = 1`
}).pipe(Transaction.atomic({ name: "checkout" }), Effect.withSpan("POST /checkout"))

// Export them with @effect/opentelemetry (any exporter; the console here).
export const TracingLive = NodeSdk.layer(() => ({
  resource: { serviceName: "shop" },
  spanProcessor: new SimpleSpanProcessor(new ConsoleSpanExporter())
}))
