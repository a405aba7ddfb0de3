import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as GuardSuite from "./suites/GuardSuite.js"
import * as HooksSuite from "./suites/HooksSuite.js"
import * as MetricsSuite from "./suites/MetricsSuite.js"
import * as RetrySuite from "./suites/RetrySuite.js"
import { suite, type Target } from "./suites/TransactionSuite.js"
import * as Databases from "./utils/databases.js"

const target: Target = {
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

suite(target)
HooksSuite.suite(target)
MetricsSuite.suite(target)
RetrySuite.suite(target)
GuardSuite.suite(target)
HooksSuite.propertySuite(target, 200)
