/**
 * Running the body of a block: its context (the transaction, its connection, its span), and its timeout.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Tracer from "effect/Tracer"
import type { Transaction } from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import { TransactionTag } from "./context.js"
import { type Level } from "./state.js"

// ---------------------------------------------------------------------------------------------------------------
// running a body

/**
 * @internal
 * A context inside a block: its `Transaction`, its connection as `@effect/sql`'s `TransactionConnection` (so that
 * plain statements run on it), and the transaction's span as the parent of its statements.
 */
export const inTransaction = <R>(level: Level, context: Context.Context<R>): Context.Context<R> => {
  // One copy of the context's map rather than one per `Context.add`: this runs for every block.
  const services = new Map(context.unsafeMap)
  services.set(TransactionTag.key, level.handle)
  services.set(SqlClient.TransactionConnection.key, [level.root.conn, level.handle.depth])
  if (level.root.span !== undefined) services.set(Tracer.ParentSpan.key, level.root.span)
  return Context.unsafeMake(services)
}

/** @internal */
export const provideLevel = <A, E, R>(level: Level, effect: Effect.Effect<A, E, R>) =>
  Effect.mapInputContext(
    effect,
    (context: Context.Context<Exclude<R, Transaction>>) => inTransaction(level, context) as Context.Context<R>
  )

/** After a statement was cancelled on the server, how long the body gets to return its error before it is interrupted. */
const cancelGrace = Duration.millis(500)

/**
 * Stops a running body: first the statement in flight is cancelled on the server (so that the interruption does
 * not leave it running, nor need a pool slot to cancel it), then the body is interrupted.
 */
const stop = <A, E>(level: Level, body: Fiber.RuntimeFiber<A, E>): Effect.Effect<void> =>
  Effect.flatMap(level.root.dialect.cancel(level.root.conn), (cancelled) =>
    Effect.zipRight(
      cancelled ? Effect.interruptible(Effect.timeoutOption(Fiber.await(body), cancelGrace)) : Effect.void,
      Fiber.interrupt(body)
    ))

/**
 * @internal
 * Runs the body of a block. With a `timeout` (or the manager's `superviseInterruption`), the body runs in a fiber
 * of its own, so that the timeout, or an interruption, first cancels the statement in flight on the server, then
 * interrupts the body: interrupting the statement alone would leave it running (mysql2) or need a free pool slot
 * to cancel it (`@effect/sql-pg` runs `pg_cancel_backend` over the pool). When the timeout expires the block fails
 * with `TransactionTimeout`. Without them the body runs in place (a fiber less per transaction); an interrupted
 * mysql2 statement is still cancelled before ROLLBACK (see `connection.ts`).
 */
export const runBody = <A, E, R>(
  level: Level,
  effect: Effect.Effect<A, E, R>,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Exit.Exit<A, E | TransactionError.TransactionTimeout>, never, Exclude<R, Transaction>> => {
  const body = restore(provideLevel(level, effect))
  const { name, timeout } = level.handle.options
  const supervised = timeout !== undefined ||
    (level.root.manager.superviseInterruption && level.root.dialect.cancellable)
  if (!supervised) return Effect.exit(body)
  return Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const fiber = yield* Effect.fork(body)
    let timedOut = false
    const timer = timeout === undefined ? undefined : yield* Effect.fork(
      Effect.zipRight(
        Effect.interruptible(Effect.sleep(timeout)),
        Effect.suspend(() => {
          if (fiber.unsafePoll() !== null) return Effect.void
          timedOut = true
          return stop(level, fiber)
        })
      )
    )
    const stopTimer = timer === undefined ? Effect.void : Fiber.interrupt(timer)
    const awaited = yield* Effect.exit(
      restore(Fiber.await(fiber)).pipe(
        Effect.onInterrupt(() => Effect.zipRight(stopTimer, stop(level, fiber)))
      )
    )
    // Interrupted while waiting: the body is stopped; the block ends interrupted, and rolls back.
    if (Exit.isFailure(awaited)) return Exit.failCause(awaited.cause)
    const exit = awaited.value
    yield* stopTimer
    if (!timedOut) return exit
    level.root.recorder.timeout()
    const elapsed = Duration.millis((yield* Clock.currentTimeMillis) - start)
    return Exit.fail(new TransactionError.TransactionTimeout({ name, timeout: timeout!, elapsed }))
  })
}
