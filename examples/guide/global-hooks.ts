import { SqlClient } from "@effect/sql"
import { Effect, Layer } from "effect"
import { TransactionManager } from "../../src/index.js"

// Hooks for every outermost transaction of the manager, run before the registered ones. They have no
// requirements of their own: close over the services they use (here, the client).
export const TransactionsLive = Layer.unwrapEffect(Effect.map(SqlClient.SqlClient, (sql) =>
  TransactionManager.layer({
    hooks: {
      // On the transaction's connection; a SqlError here rolls the transaction back.
      beforeCommit: (info) => sql`INSERT INTO tx_log (name) VALUES (${info.name})`,
      afterCommit: (info) => Effect.log(`committed ${info.name} after ${info.attempt} attempt(s)`),
      afterRollback: (info) => Effect.logWarning(`rolled back ${info.name}`)
    }
  })))
