import { Transaction, TransactionLayer } from "/tmp/out/src/index.js"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, ManagedRuntime } from "effect"
const runtime = ManagedRuntime.make(
  TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })))
)
const mode = process.argv[2]
const main = async () => {
  await runtime.runPromise(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.zipRight(
        sql.unsafe("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"),
        sql.unsafe("INSERT INTO t VALUES (1, 0)")
      ))
  )
  const tx = Effect.flatMap(SqlClient.SqlClient, (sql) => {
    const b = sql`UPDATE t SET v = v + 1 WHERE id = ${1}`
    return mode === "wt" ? sql.withTransaction(b) : Transaction.atomic(b)
  })
  for (let r = 0; r < 3; r++) {
    const n = 20000
    const s = performance.now()
    await runtime.runPromise(Effect.forEach(Array.from({ length: n }), () => tx, { discard: true }))
    console.log(mode, ((performance.now() - s) * 1000 / n).toFixed(1), "us/tx")
  }
  await runtime.dispose()
}
main()
