import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Transaction } from "../../src/index.js"

// Imports rows one by one; a bad row is undone with a manual savepoint and the import goes on.
export const importRows = (rows: ReadonlyArray<{ readonly sku: string; readonly qty: number }>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let skipped = 0
    for (const row of rows) {
      const before = yield* Transaction.savepoint("before_row")
      yield* sql`INSERT INTO stock_moves (sku, qty) VALUES (${row.sku}, ${row.qty})`
      yield* sql`UPDATE stock SET qty = qty + ${row.qty} WHERE sku = ${row.sku}`
      // Registered after the savepoint: discarded if we roll back to it, kept if we release it.
      yield* Transaction.afterCommit(Effect.log(`imported ${row.sku}`))
      const stock = yield* sql<{ qty: number }>`SELECT qty FROM stock WHERE sku = ${row.sku}`
      if (stock[0] === undefined || Number(stock[0].qty) < 0) {
        yield* Transaction.rollbackTo(before) // both statements and the afterCommit hook above are undone
        skipped++
      }
      yield* Transaction.release(before) // the name can be used again
    }
    return { imported: rows.length - skipped, skipped }
  }).pipe(Transaction.atomic({ name: "import" }))
