/**
 * The two servers as the contention and reliability suites see them: a pool under test, an admin client outside
 * it, and the SQL each needs.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import type { ContentionTarget } from "../suites/ContentionSuite.js"
import * as Databases from "./databases.js"

// PostgreSQL looks for deadlocks only after deadlock_timeout (1 s by default): these pools lower it to 20 ms for
// their own sessions, so that the bank workload (16 × 300 here) runs in seconds.
export const pg: ContentionTarget = {
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

export const mysql: ContentionTarget = {
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
