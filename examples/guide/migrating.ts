import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

const debitAndCredit = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE accounts SET balance = balance - 100 WHERE id = 1`
  yield* sql`UPDATE accounts SET balance = balance + 100 WHERE id = 2`
})

// Before: a failed COMMIT is a defect (a SERIALIZABLE conflict at COMMIT can be neither caught nor retried), a
// PostgreSQL COMMIT turned into ROLLBACK reports success, and the isolation level has to be set by hand.
export const before = Effect.flatMap(SqlClient.SqlClient, (sql) => sql.withTransaction(debitAndCredit))

// After: the same body. Errors are typed and classified, and the transaction can be retried as a whole.
export const after = debitAndCredit.pipe(
  Transaction.atomic({ name: "transfer", isolation: "serializable", timeout: "5 seconds" }),
  withRetry()
)
