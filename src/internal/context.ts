/**
 * What a transaction keeps in the fiber: the tag of the innermost block, and the state of the `withRetry` attempt
 * that runs it.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"
import * as FiberRef from "effect/FiberRef"
import type { Transaction } from "../Transaction.js"

/** @internal */
export const TransactionTag = Context.GenericTag<Transaction>("effect-sql-tx/Transaction")

/** @internal Removes the running transaction from a context: its statements then take a pooled connection. */
export const withoutTransaction = <R>(context: Context.Context<R>): Context.Context<R> =>
  Context.omit(SqlClient.TransactionConnection, TransactionTag)(context) as Context.Context<R>

/**
 * @internal
 * The attempt of the enclosing `withRetry`. A transaction that rolls back defers its `afterRollback` hooks here:
 * they run when `withRetry` stops, and are discarded when it runs the effect again.
 */
export interface RetryAttempt {
  attempt: number
  readonly deferred: Array<Effect.Effect<void>>
  /** The name of the last transaction of the attempt that ended, to tag the retry with. */
  lastTransaction: string | undefined
  /** Whether an outermost transaction of the attempt committed: running the attempt again would commit it twice. */
  committed: boolean
  /**
   * The error with which the last outermost transaction of the attempt ended (`undefined` if it succeeded): inside
   * a running transaction, only such an error (of an `independent` transaction) may be retried.
   */
  failure: unknown
}

/** @internal */
export const currentRetryAttempt: FiberRef.FiberRef<RetryAttempt | undefined> = FiberRef.unsafeMake<
  RetryAttempt | undefined
>(undefined)
