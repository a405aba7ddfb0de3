/**
 * The connection of a transaction: reserving it without leaking it, rolling back, releasing it or destroying it.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type { ResolvedTransactionOptions } from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import { TransactionManager } from "../TransactionManager.js"
import { classifyError, type Root } from "./state.js"

// ---------------------------------------------------------------------------------------------------------------
// acquiring a connection

/**
 * @internal
 * Reserves a connection, never leaking it. `@effect/sql-pg` and `@effect/sql-mysql2` register the release of a
 * connection only once the pool hands it over, so their reservation must not be interrupted while it waits:
 *
 * - by default it runs uninterruptibly: an interruption takes effect once the connection arrives (which the pool's
 *   own acquire timeout bounds, for example `PgClient`'s `connectTimeout`), and the connection is then released;
 * - with the manager's `acquireTimeout`, it runs in a fiber of its own, the wait is bounded and interruptible, and
 *   a connection that arrives after the caller gave up is released. This costs a fiber per transaction, measured
 *   at 2-3 times the reservation time on MariaDB, which is why it is opt-in.
 *
 * SQLite's reservation (a semaphore) can be interrupted safely.
 */
export const reserve = (
  manager: TransactionManager,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<
  readonly [Connection, Scope.CloseableScope],
  TransactionError.TransactionError | SqlError
> =>
  Effect.flatMap(Scope.make(), (scope) => {
    const { acquireTimeout, dialect, sql } = manager
    const withScope = (conn: Connection) => [conn, scope] as const
    const classify = <E>(error: E) => classifyError(dialect, error)
    const unavailable = () =>
      new TransactionError.ConnectionUnavailable({ dialect: dialect.name, acquireTimeout: acquireTimeout! })
    const acquire = Effect.provideService(sql.reserve, Scope.Scope, scope)
    if (dialect.interruptibleReserve) {
      const bounded = acquireTimeout === undefined
        ? acquire
        : Effect.timeoutFail(acquire, { duration: acquireTimeout, onTimeout: unavailable })
      return Effect.matchCauseEffect(restore(bounded), {
        onFailure: (cause) =>
          Effect.zipRight(Scope.close(scope, Exit.void), Effect.failCause(Cause.map(cause, classify))),
        onSuccess: (conn) => Effect.succeed(withScope(conn))
      })
    }
    if (acquireTimeout === undefined) return Effect.mapBoth(acquire, { onFailure: classify, onSuccess: withScope })
    return Effect.flatMap(
      Effect.forkDaemon(Effect.uninterruptible(acquire)),
      (fiber) =>
        restore(
          Effect.timeoutFail(Effect.interruptible(Fiber.join(fiber)), {
            duration: acquireTimeout,
            onTimeout: unavailable
          })
        ).pipe(
          Effect.mapBoth({ onFailure: classify, onSuccess: withScope }),
          Effect.onError(() => Effect.forkDaemon(Effect.zipRight(Fiber.await(fiber), Scope.close(scope, Exit.void))))
        )
    )
  })

/**
 * @internal
 * Gives a connection back to the pool, destroying it first when its state is unknown; once, whatever happens to
 * the destroy (its scope is closed all the same).
 */
export const releaseConnection = (root: Root, destroy: boolean): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (root.connScope === undefined || root.released) return Effect.void
    root.released = true
    const close = Scope.close(root.connScope, Exit.void)
    return destroy
      ? Effect.ensuring(Effect.catchAllCause(root.dialect.destroy(root.conn), logDestroyFailure), close)
      : close
  })

const logDestroyFailure = (cause: Cause.Cause<unknown>) =>
  Effect.logWarning("effect-sql-tx: destroying a connection failed", cause)

/**
 * Rolls back; returns whether the connection must be destroyed (ROLLBACK failed, died or was interrupted: its
 * state is unknown). After a failed BEGIN there may be no transaction to roll back (SQLite then refuses
 * ROLLBACK): nothing is logged then.
 */
const rollbackRoot = (root: Root, options: ResolvedTransactionOptions, quiet: boolean): Effect.Effect<boolean> =>
  // A statement of another fiber may still run on the server: stop it, or ROLLBACK waits for it.
  Effect.zipRight(root.dialect.cancel(root.conn), root.dialect.rollback(root.conn, options)).pipe(
    Effect.as(false),
    Effect.catchAllCause((cause) =>
      quiet ? Effect.succeed(true) : Effect.as(
        Effect.logWarning("effect-sql-tx: ROLLBACK failed; the connection is discarded").pipe(
          Effect.annotateLogs(
            "error",
            String(Option.match(Cause.failureOption(cause), {
              onNone: () => Cause.pretty(cause),
              onSome: (error) => classifyError(root.dialect, error)
            }))
          )
        ),
        true
      )
    )
  )

/**
 * @internal
 * Rolls back the outermost transaction and gives its connection back, destroying it when ROLLBACK failed. `quiet`
 * after a failed BEGIN (see `rollbackRoot`).
 */
export const rollbackAndRelease = (
  root: Root,
  options: ResolvedTransactionOptions,
  quiet = false
): Effect.Effect<void> =>
  Effect.flatMap(rollbackRoot(root, options, quiet), (destroy) => releaseConnection(root, destroy))
