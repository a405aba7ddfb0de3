import { SqlClient } from "@effect/sql"
import { Duration, Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

export const reprice = (category: string, percent: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE products SET price_cents = price_cents * (100 + ${percent}) / 100 WHERE category = ${category}`
  }).pipe(
    Transaction.atomic({
      name: "reprice",
      // The body may run 2 s at most: then its statement is cancelled on the server, the transaction rolls back,
      // and this fails with TransactionTimeout (not retried: it would most likely time out again).
      timeout: "2 seconds",
      // Each lock wait may last 200 ms at most (MySQL/MariaDB: rounded up to 1 s); then LockTimeout, retried.
      lockTimeout: "200 millis"
    }),
    withRetry(),
    Effect.catchTag("TransactionTimeout", (e) => Effect.logWarning(`gave up after ${Duration.format(e.elapsed)}`))
  )
