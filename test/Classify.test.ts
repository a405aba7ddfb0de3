/**
 * The error tables of the three dialects, code by code, with the error shapes the drivers produce. The codes that
 * the servers can be made to raise are also provoked for real in the *Behaviour and *Contention tests.
 */
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Dialect, TransactionError } from "../src/index.js"

const cases: ReadonlyArray<readonly [Dialect.Dialect, unknown, string | undefined]> = [
  [Dialect.pg, { code: "40P01" }, "DeadlockDetected"],
  [Dialect.pg, { code: "40001" }, "SerializationFailure"],
  [Dialect.pg, { code: "55P03" }, "LockTimeout"],
  [Dialect.pg, { code: "57014", message: "canceling statement due to statement timeout" }, "StatementTimeout"],
  [Dialect.pg, { code: "57014", message: "canceling statement due to user request" }, undefined],
  [Dialect.pg, { code: "25006" }, "ReadOnlyViolation"],
  [Dialect.pg, { code: "25P02" }, "TransactionAborted"],
  [Dialect.pg, { code: "25P03" }, "ConnectionLost"],
  [Dialect.pg, { code: "08006" }, "ConnectionLost"],
  [Dialect.pg, { code: "08003" }, "ConnectionLost"],
  [Dialect.pg, { code: "57P01" }, "ConnectionLost"],
  [Dialect.pg, { code: "57P02" }, "ConnectionLost"],
  [Dialect.pg, { code: "ECONNRESET" }, "ConnectionLost"],
  [Dialect.pg, new Error("Connection terminated unexpectedly"), "ConnectionLost"],
  [Dialect.pg, new Error("Client has encountered a connection error and is not queryable"), "ConnectionLost"],
  [Dialect.pg, { code: "23505" }, undefined],
  [Dialect.pg, { code: "42601" }, undefined],
  [Dialect.mysql, { errno: 1213, code: "ER_LOCK_DEADLOCK", sqlState: "40001" }, "DeadlockDetected"],
  [Dialect.mysql, { errno: 1020, code: "ER_CHECKREAD", sqlState: "HY000" }, "SerializationFailure"],
  [Dialect.mysql, { errno: 9999, sqlState: "40001" }, "SerializationFailure"],
  [Dialect.mysql, { errno: 1205, code: "ER_LOCK_WAIT_TIMEOUT", sqlState: "HY000" }, "LockTimeout"],
  [Dialect.mysql, { errno: 3572, code: "ER_LOCK_NOWAIT" }, "LockTimeout"],
  [Dialect.mysql, { errno: 3024, code: "ER_QUERY_TIMEOUT" }, "StatementTimeout"],
  [Dialect.mysql, { errno: 1969, code: "ER_STATEMENT_TIMEOUT" }, "StatementTimeout"],
  [Dialect.mysql, { errno: 1792, sqlState: "25006" }, "ReadOnlyViolation"],
  [Dialect.mysql, { errno: 2006 }, "ConnectionLost"],
  [Dialect.mysql, { errno: 2013 }, "ConnectionLost"],
  [Dialect.mysql, { code: "PROTOCOL_CONNECTION_LOST", fatal: true }, "ConnectionLost"],
  [Dialect.mysql, { code: "ECONNRESET", errno: -104 }, "ConnectionLost"],
  [
    Dialect.mysql,
    { message: "Can't add new command when connection is in closed state", fatal: true },
    "ConnectionLost"
  ],
  [Dialect.mysql, { errno: 1062, code: "ER_DUP_ENTRY", sqlState: "23000" }, undefined],
  [Dialect.mysql, { errno: 1317, code: "ER_QUERY_INTERRUPTED", sqlState: "70100" }, undefined],
  [Dialect.sqlite, { code: "SQLITE_BUSY" }, "LockTimeout"],
  [Dialect.sqlite, { code: "SQLITE_BUSY_SNAPSHOT" }, "LockTimeout"],
  [Dialect.sqlite, { code: "SQLITE_LOCKED" }, "LockTimeout"],
  [Dialect.sqlite, { code: "SQLITE_LOCKED_SHAREDCACHE" }, "LockTimeout"],
  [Dialect.sqlite, { code: "SQLITE_READONLY" }, "ReadOnlyViolation"],
  [Dialect.sqlite, { code: "SQLITE_CONSTRAINT_UNIQUE" }, undefined]
]

describe("TransactionError.classify", () => {
  for (const [dialect, cause, expected] of cases) {
    it(`${dialect.name} ${JSON.stringify(cause) ?? String(cause)} → ${expected ?? "unchanged"}`, () => {
      const error = new SqlError({ cause, message: "Failed to execute statement" })
      const classified = TransactionError.classify(error, dialect)
      if (expected === undefined) {
        assert.strictEqual(classified, error)
      } else {
        assert.strictEqual(classified._tag, expected)
        assert.strictEqual((classified as TransactionError.DatabaseError).dialect, dialect.name)
        assert.strictEqual((classified as TransactionError.DatabaseError).cause, error)
      }
    })
  }

  it("isRetryable: deadlocks, serialization failures, lock timeouts, lost connections; nothing else", () => {
    const fields = { dialect: "pg" as const, code: undefined, cause: undefined }
    assert.isTrue(TransactionError.isRetryable(new TransactionError.DeadlockDetected(fields)))
    assert.isTrue(TransactionError.isRetryable(new TransactionError.SerializationFailure(fields)))
    assert.isTrue(TransactionError.isRetryable(new TransactionError.LockTimeout(fields)))
    assert.isTrue(TransactionError.isRetryable(new TransactionError.ConnectionLost(fields)))
    assert.isFalse(TransactionError.isRetryable(new TransactionError.CommitOutcomeUnknown(fields)))
    assert.isFalse(TransactionError.isRetryable(new TransactionError.StatementTimeout(fields)))
    assert.isFalse(TransactionError.isRetryable(new TransactionError.ReadOnlyViolation(fields)))
    assert.isFalse(TransactionError.isRetryable(new TransactionError.TransactionAborted(fields)))
    assert.isFalse(TransactionError.isRetryable(new SqlError({ cause: { code: "40P01" } })))
    assert.isFalse(TransactionError.isRetryable({ _tag: "DeadlockDetected" }))
  })
})
