/**
 * The two servers as the contention and reliability suites see them: a pool under test, an admin client outside
 * it, and the SQL each needs.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { ContentionTarget } from "../suites/ContentionSuite.js"
import type { Target } from "../suites/TransactionSuite.js"
import * as Databases from "./databases.js"

// PostgreSQL looks for deadlocks only after deadlock_timeout (1 s by default): these pools lower it to 20 ms for
// their own sessions, so that the bank workload (16 × 300 here) runs in seconds.
export const pgServer: ContentionTarget = {
  name: "pg",
  layer: (options) => Databases.pg({ ...options, deadlockTimeout: "20ms" }),
  admin: Databases.pgAdmin,
  connectionId: Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`, (rows) => rows[0]!.pid)
  ),
  sleep: (seconds) => `SELECT pg_sleep(${seconds})`,
  isRunning: (pid) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.map(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${pid} AND state = 'active'`,
        (rows) => rows[0]!.n > 0
      )),
  kill: (pid) => `SELECT pg_terminate_backend(${pid})`,
  lockTimeout: "100 millis",
  transfersPerWorker: 300
}

export const mysqlServer: ContentionTarget = {
  name: "mysql",
  layer: Databases.mysql,
  admin: Databases.mysqlAdmin,
  connectionId: Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ id: number }>`SELECT CONNECTION_ID() AS id`, (rows) => Number(rows[0]!.id))
  ),
  sleep: (seconds) => `SELECT SLEEP(${seconds})`,
  isRunning: (id) =>
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.map(
        sql<{ n: number }>`
          SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ${id} AND COMMAND = 'Query'`,
        (rows) => Number(rows[0]!.n) > 0
      )),
  kill: (id) => `KILL ${id}`,
  // InnoDB's lock wait timeout is in whole seconds.
  lockTimeout: "1 second",
  transfersPerWorker: 2000
}

export const pg: Target = {
  name: "pg",
  layer: Databases.pg,
  inTransaction: Effect.flatMap(SqlClient.SqlClient, (sql) =>
    // In autocommit, a statement is its own transaction: now() is the statement's own start.
    Effect.map(sql<{ open: boolean }>`SELECT now() <> statement_timestamp() AS open`, (rows) => rows[0]!.open)),
  connectionId: Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`, (rows) => rows[0]!.pid)
  ),
  concurrentConnections: true,
  leakTransaction: "BEGIN; SELECT 1 / 0",
  deferredUnique: (table) => `ALTER TABLE ${table} ADD CONSTRAINT ${table}_v UNIQUE (v) DEFERRABLE INITIALLY DEFERRED`
}

export const mysql: Target = {
  name: "mysql",
  layer: Databases.mysql,
  inTransaction: Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ open: number }>`SELECT @@in_transaction AS open`, (rows) => Number(rows[0]!.open) === 1)
  ),
  connectionId: Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ id: number }>`SELECT CONNECTION_ID() AS id`, (rows) => Number(rows[0]!.id))
  ),
  concurrentConnections: true,
  leakTransaction: "START TRANSACTION"
}

export const sqlite: Target = {
  name: "sqlite",
  layer: Databases.sqlite,
  inTransaction: Effect.flatMap(SqlClient.SqlClient, (sql) =>
    // BEGIN fails inside a transaction; outside, it opens one that is closed at once.
    sql.unsafe("BEGIN").pipe(
      Effect.zipRight(sql.unsafe("ROLLBACK")),
      Effect.as(false),
      Effect.orElseSucceed(() => true)
    )),
  connectionId: Effect.succeed(0),
  concurrentConnections: false,
  leakTransaction: "BEGIN"
}
