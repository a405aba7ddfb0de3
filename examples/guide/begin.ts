import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction } from "../../src/index.js"

// The scoped form: the transaction ends with the scope. Success commits, anything else rolls back.
export const importBatch = (lines: ReadonlyArray<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const tx = yield* Transaction.begin({ name: "import", isolation: "repeatable read" })
    for (const line of lines) yield* sql`INSERT INTO imports (line) VALUES (${line})`
    return { transaction: tx.id, lines: lines.length }
  }))
