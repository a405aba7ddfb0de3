import { NodeRuntime } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import { MysqlClient } from "@effect/sql-mysql2"
import { Config, Effect, Layer } from "effect"
import { Transaction, TransactionLayer } from "../../src/index.js"

// MySQL and MariaDB: the same code, another client. The manager finds the dialect from the client.
export const DatabaseLive = TransactionLayer.pipe(
  Layer.provideMerge(
    MysqlClient.layerConfig({ url: Config.redacted("DATABASE_URL"), maxConnections: Config.succeed(10) })
  )
)

export const program = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`UPDATE accounts SET balance = balance - 100 WHERE id = 1`
  yield* sql`UPDATE accounts SET balance = balance + 100 WHERE id = 2`
  // InnoDB counts lock waits in whole seconds: 1.5 s becomes 2 s.
}).pipe(Transaction.atomic({ name: "transfer", isolation: "read committed", lockTimeout: "2 seconds" }))

program.pipe(Effect.provide(DatabaseLive), NodeRuntime.runMain)
