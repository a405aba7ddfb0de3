import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import * as GuardSuite from "./suites/GuardSuite.js"
import * as HooksSuite from "./suites/HooksSuite.js"
import * as MetricsSuite from "./suites/MetricsSuite.js"
import * as RetrySuite from "./suites/RetrySuite.js"
import { suite, type Target } from "./suites/TransactionSuite.js"
import * as Databases from "./utils/databases.js"

const target: Target = {
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

suite(target)
HooksSuite.suite(target)
MetricsSuite.suite(target)
RetrySuite.suite(target)
GuardSuite.suite(target)
HooksSuite.propertySuite(target, 50)
