import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { suite } from "./suites/ContentionSuite.js"
import * as Databases from "./utils/databases.js"

suite({
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
  // InnoDB's lock wait timeout is in whole seconds.
  lockTimeout: "1 second",
  transfersPerWorker: 2000
})
