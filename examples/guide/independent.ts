import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

// Its own transaction, on another connection: it commits even if the enclosing transaction rolls back.
const audit = (event: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`INSERT INTO audit_log (event) VALUES (${event})`).pipe(
    Transaction.independent({ name: "audit" }),
    withRetry() // outermost on its own connection: it can be retried inside another transaction
  )

export const withdraw = (account: number, amount: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* audit(`withdrawal of ${amount} from ${account} attempted`)
    yield* sql`UPDATE accounts SET balance = balance - ${amount} WHERE id = ${account}`
    const rows = yield* sql<{ balance: number }>`SELECT balance FROM accounts WHERE id = ${account}`
    if (Number(rows[0]?.balance ?? 0) < 0) return yield* Effect.fail("insufficient funds" as const)
  }).pipe(Transaction.atomic({ name: "withdraw" }))
