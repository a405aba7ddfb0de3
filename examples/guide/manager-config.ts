import { PgClient } from "@effect/sql-pg"
import { Config, Duration, Layer } from "effect"
import { TransactionManager } from "../../src/index.js"

// The manager with explicit settings, instead of TransactionLayer's defaults.
export const TransactionsLive = TransactionManager.layer({
  // Options of every outermost transaction that does not set them itself (nested blocks inherit their parent's).
  defaults: { isolation: "read committed", timeout: "10 seconds", lockTimeout: "2 seconds" },
  acquireTimeout: "2 seconds", // fail with ConnectionUnavailable rather than queue for a pool connection
  longRunningThreshold: "3 seconds", // log and count transactions older than this, once each
  commitTimeout: "30 seconds", // a COMMIT without an answer: the connection is closed, CommitOutcomeUnknown
  hookTimeout: "10 seconds",
  serverLabel: true, // application_name / a comment naming the transaction, visible to the DBA
  failOnSavepointBudget: false,
  maxTransactionNames: 100
})

// Or read from the environment (TX_ACQUIRE_TIMEOUT=2 seconds, …), with defaults.
export const TransactionsFromEnv = TransactionManager.layerConfig({
  acquireTimeout: Config.duration("TX_ACQUIRE_TIMEOUT").pipe(Config.withDefault(Duration.seconds(2))),
  longRunningThreshold: Config.duration("TX_LONG_RUNNING").pipe(Config.withDefault(Duration.seconds(5)))
})

export const DatabaseLive = TransactionsLive.pipe(
  Layer.provideMerge(PgClient.layerConfig({ url: Config.redacted("DATABASE_URL"), maxConnections: Config.succeed(20) }))
)
