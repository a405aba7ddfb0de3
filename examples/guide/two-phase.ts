import { SqlClient } from "@effect/sql"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { TwoPhaseCommit } from "../../src/index.js"

export const CoordinatorLive = TwoPhaseCommit.layer({
  coordinatorId: "billing-1", // stable across restarts: a new process recovers what an old one left
  participants: [
    TwoPhaseCommit.participant("billing", PgClient.layer({ url: Redacted.make(process.env.PG_URL!) })),
    TwoPhaseCommit.participant("ledger", MysqlClient.layer({ url: Redacted.make(process.env.MYSQL_URL!) }))
  ],
  log: "billing", // the coordinator log lives in this participant's database (table created if missing)
  recoveryInterval: "30 seconds",
  recoveryThreshold: "1 minute"
})

export const transfer = (id: string, amount: number) =>
  TwoPhaseCommit.run({
    billing: Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql`UPDATE accounts SET balance = balance - ${amount} WHERE id = 1`),
    ledger: Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql`INSERT INTO credits (transfer, amount) VALUES (${id}, ${amount})`)
  }, { name: "transfer", timeout: "5 seconds", isolation: { billing: "serializable" } })
// Effect<{ billing: …; ledger: … }, E | TwoPhaseCommitError | TransactionError | SqlError, Coordinator>
