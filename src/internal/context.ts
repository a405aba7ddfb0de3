/**
 * What a transaction keeps in the fiber: the tag of the innermost block, and the state of the `withRetry` attempt
 * that runs it.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Option from "effect/Option"
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

/**
 * @internal
 * Tells the attempt of an enclosing `withRetry` how an outermost transaction of it ended: its name (the retry
 * metric's tag), whether it committed (the attempt must then not run again) and what it failed with.
 */
export const noteEnded = (
  attempt: RetryAttempt | undefined,
  name: string,
  committed: boolean,
  exit: Exit.Exit<unknown, unknown>
): void => {
  if (attempt === undefined) return
  attempt.lastTransaction = name
  if (committed) attempt.committed = true
  attempt.failure = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
}

/**
 * @internal
 * `afterRollback` hooks: run now, or, under `withRetry`, when it stops (discarded if it runs the attempt again),
 * so that they run once, for the attempt that ended it.
 */
export const afterRollbackHooks = (
  attempt: RetryAttempt | undefined,
  hooks: Effect.Effect<void>
): Effect.Effect<void> => {
  if (attempt === undefined) return hooks
  attempt.deferred.push(hooks)
  return Effect.void
}
