import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as GuardSuite from "./suites/GuardSuite.js"
import * as HooksSuite from "./suites/HooksSuite.js"
import * as MetricsSuite from "./suites/MetricsSuite.js"
import * as RetrySuite from "./suites/RetrySuite.js"
import { suite, type Target } from "./suites/TransactionSuite.js"
import * as Databases from "./utils/databases.js"

const target: Target = {
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

suite(target)
HooksSuite.suite(target)
MetricsSuite.suite(target)
RetrySuite.suite(target)
GuardSuite.suite(target)
HooksSuite.propertySuite(target, 50)
