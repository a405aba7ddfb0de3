import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { suite } from "./suites/ContentionSuite.js"
import * as Databases from "./utils/databases.js"

// PostgreSQL looks for deadlocks only after deadlock_timeout (1 s by default): these pools lower it to 20 ms for
// their own sessions, so that the bank workload (16 × 300 here) runs in seconds.
suite({
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
  lockTimeout: "100 millis",
  transfersPerWorker: 300
})
