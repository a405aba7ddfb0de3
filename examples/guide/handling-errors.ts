import { SqlClient } from "@effect/sql"
import { Data, Effect } from "effect"
import { Transaction, withRetry } from "../../src/index.js"

class NotFound extends Data.TaggedError("NotFound")<{ readonly id: number }> {}

const renameCustomer = (id: number, name: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ id: number }>`SELECT id FROM customers WHERE id = ${id}`
    if (rows.length === 0) return yield* new NotFound({ id })
    yield* sql`UPDATE customers SET name = ${name} WHERE id = ${id}`
  }).pipe(Transaction.atomic({ name: "rename-customer", timeout: "3 seconds" }), withRetry())

// At the edge (an HTTP handler), every failure has a tag: map each to what the caller should see.
export const handler = (id: number, name: string) =>
  renameCustomer(id, name).pipe(
    Effect.as({ status: 204 }),
    Effect.catchTags({
      NotFound: () => Effect.succeed({ status: 404 }),
      // Retries were exhausted: the caller may try again later.
      DeadlockDetected: () => Effect.succeed({ status: 503 }),
      SerializationFailure: () => Effect.succeed({ status: 503 }),
      LockTimeout: () => Effect.succeed({ status: 503 }),
      ConnectionLost: () => Effect.succeed({ status: 503 }),
      ConnectionUnavailable: () => Effect.succeed({ status: 503 }),
      TransactionTimeout: () => Effect.succeed({ status: 504 }),
      // It may have committed: say so, and let the client check.
      CommitOutcomeUnknown: (e) =>
        Effect.as(Effect.logError("outcome unknown", e), {
          status: 500,
          body: "outcome unknown, check before retrying"
        })
    }),
    // What is left (a constraint violation, a bug, an invalid option) is a 500, logged with its cause.
    Effect.catchAll((e) => Effect.as(Effect.logError("rename failed", e), { status: 500 }))
  )
