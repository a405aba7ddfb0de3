import { SqlClient } from "@effect/sql"
import { Duration, Effect, Schedule } from "effect"
import { RetryPolicy, Transaction, TransactionError, withRetry } from "../../src/index.js"

const transferBody = (from: number, to: number, amount: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE accounts SET balance = balance - ${amount} WHERE id = ${from}`
    yield* sql`UPDATE accounts SET balance = balance + ${amount} WHERE id = ${to}`
  })

// The transaction first, withRetry outside it: each attempt is a new transaction that reads and decides again.
export const transfer = (from: number, to: number, amount: number) =>
  transferBody(from, to, amount).pipe(
    Transaction.atomic({ name: "transfer", isolation: "serializable" }),
    withRetry() // RetryPolicy.default: 10 ms, ×2, jittered, at most 5 retries, no delay over 1 s
  )

// More patient: up to 10 retries, delays from 20 ms up to 2 s.
export const patient = RetryPolicy.exponential({ base: "20 millis", factor: 2, times: 10, maxDelay: "2 seconds" })

// Any Schedule over the error works: here, fixed 50 ms pauses, for at most 3 s in all.
export const bounded = Schedule.spaced("50 millis").pipe(Schedule.upTo(Duration.seconds(3)))

// A transaction that may safely run twice (it checks its idempotency key first) may also retry
// CommitOutcomeUnknown: the connection failed during COMMIT, which may or may not have been applied.
export const idempotentPolicy = RetryPolicy.idempotent(patient)

export const transferPatiently = (from: number, to: number, amount: number) =>
  transferBody(from, to, amount).pipe(Transaction.atomic({ name: "transfer" }), withRetry(patient))

export const transferBounded = (from: number, to: number, amount: number) =>
  transferBody(from, to, amount).pipe(Transaction.atomic({ name: "transfer" }), withRetry(bounded))

// What withRetry looks at, for your own decisions (an HTTP status, a log level):
export const isWorthRetrying = (error: unknown): boolean => TransactionError.isRetryable(error)
