/**
 * The one path of every transaction: acquire → begin → body → commit/rollback → classify → release.
 * Nested blocks take the same path with a savepoint instead of a connection and BEGIN.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { Dialect } from "../Dialect.js"
import type {
  ResolvedTransactionOptions,
  Savepoint,
  Transaction,
  TransactionInfo,
  TransactionOptions
} from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import type { ActiveTransaction, HookInfo } from "../TransactionManager.js"
import { TransactionManager } from "../TransactionManager.js"
import { currentRetryAttempt, TransactionTag, withoutTransaction } from "./context.js"
import * as Hooks from "./hooks.js"
import * as Metrics from "./metrics.js"
import * as Options from "./options.js"

export { TransactionTag } from "./context.js"

/** The state shared by all levels of one transaction (one connection). */
interface Root {
  readonly manager: TransactionManager
  readonly dialect: Dialect
  readonly conn: Connection
  /** The scope holding the reserved connection; `undefined` when joined to a foreign `sql.withTransaction`. */
  readonly connScope: Scope.CloseableScope | undefined
  /** Savepoint names in use on the connection. */
  readonly liveSavepoints: Set<string>
  savepointCounter: number
  /** Set when a savepoint could not be rolled back: the transaction must not commit. */
  poisoned: TransactionError.TransactionError | SqlError | undefined
  /** The metrics of the transaction's name. */
  readonly recorder: Metrics.Recorder
  /** The transaction's span (one per attempt); `undefined` when joined to a foreign transaction. */
  readonly span: Tracer.Span | undefined
  /** The entry of the manager's registry of active transactions. */
  readonly entry: ActiveTransaction | undefined
  /** How the transaction ended, for the duration histogram. */
  outcome: Metrics.Outcome
  budgetReported: boolean
}

/** One block: the outermost transaction or a savepoint. */
interface Level {
  readonly root: Root
  readonly parent: Level | undefined
  readonly handle: Transaction
  /** The block's savepoint, `undefined` for the outermost transaction. */
  readonly savepoint: string | undefined
  /** The manual savepoints of this block, oldest first. */
  readonly manual: Array<Savepoint>
  /** Serializes the nested blocks and manual savepoint operations of this block; made on first use. */
  lock: Effect.Semaphore | undefined
  rollbackOnly: boolean
  /** Hooks registered in this block (and promoted from its committed nested blocks), in order. */
  readonly hooks: Array<Hooks.Hook>
}

/** Where a handle keeps its block (a symbol: not part of the public `Transaction`). */
const LevelKey: unique symbol = Symbol.for("effect-sql-tx/Level")

interface HandleWithLevel extends Transaction {
  readonly [LevelKey]: Level
}

const levelOf = (handle: Transaction): Level => (handle as HandleWithLevel)[LevelKey]

/** @internal Registers a hook on the block of a handle. */
export const registerHook = (handle: Transaction, hook: Hooks.Hook): void => {
  levelOf(handle).hooks.push(hook)
}

const lockOf = (level: Level): Effect.Semaphore => level.lock ??= Effect.unsafeMakeSemaphore(1)

type Failure = TransactionError.TransactionError | SqlError

const classifyError = <E>(dialect: Dialect, error: E): E | TransactionError.DatabaseError =>
  error instanceof SqlError ? TransactionError.classify(error, dialect) as E | TransactionError.DatabaseError : error

const classifyExit = <A, E>(dialect: Dialect, exit: Exit.Exit<A, E>) =>
  Exit.mapError(exit, (error) => classifyError(dialect, error))

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const reservedPrefix = "effect_sql"

const nextSavepointName = (root: Root): string => `effect_sql_tx_${++root.savepointCounter}`

/**
 * Counts a savepoint about to be made. PostgreSQL keeps 64 subtransactions per backend in shared memory; past
 * that, snapshot checks of the whole server fall back to pg_subtrans: report it once, or refuse (configurable).
 */
const countSavepoint = (root: Root): Effect.Effect<void, TransactionError.SavepointError> =>
  Effect.suspend(() => {
    root.recorder.savepoint()
    root.span?.event("db.transaction.savepoint", root.manager.clock.unsafeCurrentTimeNanos())
    const limit = root.dialect.subtransactionCache
    if (limit === undefined || root.savepointCounter < limit) return Effect.void
    if (root.manager.failOnSavepointBudget) {
      return Effect.fail(
        new TransactionError.SavepointError({
          savepoint: `#${root.savepointCounter + 1}`,
          reason: `more than ${limit} savepoints in one transaction (PostgreSQL's subtransaction cache)`
        })
      )
    }
    if (root.budgetReported) return Effect.void
    root.budgetReported = true
    root.recorder.savepointBudgetExceeded()
    return Effect.logWarning(
      `effect-sql-tx: more than ${limit} savepoints in one transaction; past PostgreSQL's subtransaction cache the ` +
        "whole server slows down"
    ).pipe(Effect.annotateLogs({ transaction: root.entry?.name ?? "", id: root.entry?.id ?? "" }))
  })

// ---------------------------------------------------------------------------------------------------------------
// acquiring a connection

/**
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
const reserve = (
  manager: TransactionManager,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<readonly [Connection, Scope.CloseableScope], SqlError | TransactionError.ConnectionUnavailable> =>
  Effect.flatMap(Scope.make(), (scope) => {
    const { acquireTimeout, dialect, sql } = manager
    const withScope = (conn: Connection) => [conn, scope] as const
    const unavailable = () =>
      new TransactionError.ConnectionUnavailable({ dialect: dialect.name, acquireTimeout: acquireTimeout! })
    const acquire = Scope.extend(sql.reserve, scope)
    if (dialect.interruptibleReserve) {
      const bounded = acquireTimeout === undefined
        ? acquire
        : Effect.timeoutFail(acquire, { duration: acquireTimeout, onTimeout: unavailable })
      return restore(bounded).pipe(Effect.map(withScope), Effect.onError(() => Scope.close(scope, Exit.void)))
    }
    if (acquireTimeout === undefined) return Effect.map(acquire, withScope)
    return Effect.flatMap(
      Effect.forkDaemon(Effect.uninterruptible(acquire)),
      (fiber) =>
        restore(
          Effect.timeoutFail(Effect.interruptible(Fiber.join(fiber)), {
            duration: acquireTimeout,
            onTimeout: unavailable
          })
        ).pipe(
          Effect.map(withScope),
          Effect.onError(() => Effect.forkDaemon(Effect.zipRight(Fiber.await(fiber), Scope.close(scope, Exit.void))))
        )
    )
  })

/** Gives a connection back to the pool, destroying it first when its state is unknown. */
const releaseConnection = (root: Root, destroy: boolean): Effect.Effect<void> =>
  root.connScope === undefined
    ? Effect.void
    : destroy
    ? Effect.zipRight(root.dialect.destroy(root.conn), Scope.close(root.connScope, Exit.void))
    : Scope.close(root.connScope, Exit.void)

/**
 * Rolls back; returns whether the connection must be destroyed (ROLLBACK failed: its state is unknown). After a
 * failed BEGIN there may be no transaction to roll back (SQLite then refuses ROLLBACK): nothing is logged then.
 */
const rollbackRoot = (root: Root, options: ResolvedTransactionOptions, quiet = false): Effect.Effect<boolean> =>
  // An interrupted statement may still run on the server (mysql2 never cancels): stop it, or ROLLBACK waits for it.
  Effect.zipRight(root.dialect.cancel(root.conn), root.dialect.rollback(root.conn, options)).pipe(
    Effect.as(false),
    Effect.catchAll((error) =>
      quiet ? Effect.succeed(true) : Effect.as(
        Effect.logWarning("effect-sql-tx: ROLLBACK failed; the connection is discarded").pipe(
          Effect.annotateLogs("error", String(classifyError(root.dialect, error)))
        ),
        true
      )
    )
  )

// ---------------------------------------------------------------------------------------------------------------
// opening a block

const makeHandle = (
  block: Omit<Level, "handle">,
  info: TransactionInfo
): Level => {
  const level = block as Level
  const handle: HandleWithLevel = {
    id: info.id,
    name: info.name,
    depth: info.depth,
    options: info.options,
    startedAt: info.startedAt,
    attempt: info.attempt,
    savepoint: (name) => createSavepoint(level, name),
    rollbackTo: (savepoint) => rollbackToSavepoint(level, savepoint),
    release: (savepoint) => releaseSavepoint(level, savepoint),
    setRollbackOnly: Effect.sync(() => {
      level.rollbackOnly = true
    }),
    [LevelKey]: level
  }
  ;(level as { handle: Transaction }).handle = handle
  return level
}

const info = (
  manager: TransactionManager,
  id: string,
  depth: number,
  options: ResolvedTransactionOptions
): Effect.Effect<TransactionInfo> =>
  Effect.withFiberRuntime((fiber) =>
    Effect.succeed({
      id,
      name: options.name,
      depth,
      options,
      startedAt: new Date(manager.clock.unsafeCurrentTimeMillis()),
      attempt: fiber.getFiberRef(currentRetryAttempt)?.attempt ?? 1
    })
  )

/** `begin` has no body of its own to bound: it takes no `timeout`, and the manager's default does not apply. */
const withoutTimeoutUnless = (
  bounded: boolean,
  options: ResolvedTransactionOptions
): ResolvedTransactionOptions => bounded || options.timeout === undefined ? options : { ...options, timeout: undefined }

const openRoot = (
  manager: TransactionManager,
  options: TransactionOptions | undefined,
  bounded: boolean,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Level, Failure> => {
  const dialect = manager.dialect
  const resolution = Options.resolveCached(manager.defaults, options, dialect)
  if (Either.isLeft(resolution)) return Effect.fail(resolution.left)
  const resolved = withoutTimeoutUnless(bounded, resolution.right)
  // Written as a chain rather than a generator: this runs for every transaction.
  return Effect.flatMap(
    Effect.mapError(reserve(manager, restore), (e) => classifyError(dialect, e)),
    ([conn, connScope]) =>
      Effect.flatMap(info(manager, manager.nextId(), 0, resolved), (handleInfo) =>
        Effect.flatMap(
          Effect.makeSpan("effect_sql_tx.transaction", {
            kind: "client",
            captureStackTrace: false,
            attributes: {
              "db.system": dialect.dbSystem,
              "db.transaction.name": resolved.name,
              "db.transaction.isolation": resolved.isolation ?? "default",
              "db.transaction.read_only": resolved.readOnly,
              "db.transaction.attempt": handleInfo.attempt
            }
          }),
          (span) => {
            const root: Root = {
              manager,
              dialect,
              conn,
              connScope,
              liveSavepoints: new Set(),
              savepointCounter: 0,
              poisoned: undefined,
              recorder: Metrics.recorder(resolved.name, dialect.dbSystem),
              span,
              entry: {
                id: handleInfo.id,
                name: resolved.name,
                depth: 0,
                startedAt: handleInfo.startedAt,
                attempt: handleInfo.attempt,
                connectionId: dialect.connectionId(conn),
                flagged: false
              },
              outcome: "rolled_back",
              budgetReported: false
            }
            return dialect.begin(conn, resolved, manager.serverLabel ? resolved.name : undefined).pipe(
              Effect.matchEffect({
                onFailure: (error) =>
                  // BEGIN may have half-succeeded (a transaction is open but a folded statement failed): roll back.
                  Effect.flatMap(rollbackRoot(root, resolved, true), (destroy) => releaseConnection(root, destroy))
                    .pipe(
                      Effect.zipRight(
                        Effect.sync(() => span.end(manager.clock.unsafeCurrentTimeNanos(), Exit.fail(error)))
                      ),
                      Effect.zipRight(Effect.fail(classifyError(dialect, error)))
                    ),
                onSuccess: () => {
                  root.recorder.started()
                  manager.registry.set(handleInfo.id, root.entry!)
                  return Effect.succeed(makeHandle(
                    {
                      root,
                      parent: undefined,
                      savepoint: undefined,
                      manual: [],
                      lock: undefined,
                      rollbackOnly: false,
                      hooks: []
                    },
                    handleInfo
                  ))
                }
              })
            )
          }
        ))
  )
}

const openNested = (
  parent: Level | undefined,
  root: Root,
  depth: number,
  parentOptions: ResolvedTransactionOptions,
  options: TransactionOptions | undefined,
  bounded: boolean,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Level, Failure> =>
  Effect.gen(function*() {
    const resolved = withoutTimeoutUnless(bounded, yield* Options.resolveNested(parentOptions, options))
    if (parent !== undefined) yield* restore(lockOf(parent).take(1))
    yield* countSavepoint(root).pipe(
      Effect.tapError(() => parent === undefined ? Effect.void : lockOf(parent).release(1))
    )
    const name = nextSavepointName(root)
    yield* root.dialect.savepoint(root.conn, name).pipe(
      Effect.mapError((error) => classifyError(root.dialect, error)),
      Effect.tapError(() => parent === undefined ? Effect.void : lockOf(parent).release(1))
    )
    root.liveSavepoints.add(name)
    if (root.entry !== undefined) root.entry.depth = depth
    const id = parent === undefined ? root.manager.nextId() : `${parent.handle.id}.${root.savepointCounter}`
    return makeHandle(
      { root, parent, savepoint: name, manual: [], lock: undefined, rollbackOnly: false, hooks: [] },
      yield* info(root.manager, id, depth, resolved)
    )
  })

/** Opens the outermost transaction, a savepoint in the current one, or a savepoint in a foreign one. */
const open = (
  options: TransactionOptions | undefined,
  bounded: boolean,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Level, Failure, TransactionManager> =>
  Effect.withFiberRuntime((fiber) => {
    const context = fiber.currentContext
    const manager = Context.unsafeGet(context, TransactionManager)
    {
      const current = Context.getOption(context, TransactionTag)
      if (Option.isSome(current)) {
        const parent = levelOf(current.value)
        return openNested(
          parent,
          parent.root,
          parent.handle.depth + 1,
          parent.handle.options,
          options,
          bounded,
          restore
        )
      }
      const foreign = Context.getOption(context, SqlClient.TransactionConnection)
      if (Option.isSome(foreign)) {
        // Inside a plain `sql.withTransaction`: join it with a savepoint on its connection.
        const [conn, depth] = foreign.value
        const root: Root = {
          manager,
          dialect: manager.dialect,
          conn,
          connScope: undefined,
          liveSavepoints: new Set(),
          savepointCounter: 0,
          poisoned: undefined,
          recorder: Metrics.recorder(options?.name ?? Options.defaultName, manager.dialect.dbSystem),
          span: undefined,
          entry: undefined,
          outcome: "rolled_back",
          budgetReported: false
        }
        return openNested(undefined, root, depth + 1, Options.foreignParent, options, bounded, restore)
      }
      return openRoot(manager, options, bounded, restore)
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// closing a block

const forgetSavepoints = (level: Level): void => {
  for (const savepoint of level.manual) level.root.liveSavepoints.delete(savepoint.name)
  level.manual.length = 0
  if (level.savepoint !== undefined) level.root.liveSavepoints.delete(level.savepoint)
}

const hookInfo = (
  level: Level,
  outcome: HookInfo["outcome"]
): Effect.Effect<HookInfo> =>
  Effect.map(Clock.currentTimeMillis, (now) => ({
    ...infoOf(level.handle),
    duration: Duration.millis(now - level.handle.startedAt.getTime()),
    outcome
  }))

/** @internal What is known of a block, without its operations. */
export const infoOf = ({ attempt, depth, id, name, options, startedAt }: TransactionInfo): TransactionInfo => ({
  id,
  name,
  depth,
  options,
  startedAt,
  attempt
})

/** Whether a block that ends the transaction has hooks to run (most have none: they skip all of it). */
const hasHooks = (level: Level): boolean => level.hooks.length > 0 || level.root.manager.hooks !== undefined

/** Runs the hooks of a kind for a block that ends the transaction (the outermost, or one joined to a foreign one). */
const runHooks = (level: Level, kind: Hooks.HookKind, info: HookInfo): Effect.Effect<void, unknown> =>
  Hooks.run(
    kind,
    level.hooks,
    level.root.manager.hooks,
    info,
    kind === "beforeCommit" || kind === "beforeRollback" ? (effect) => provideLevel(level, effect) : identity,
    level.root.recorder
  )

/**
 * `afterRollback` hooks run once the transaction is over; under `withRetry` they wait for it to stop, and are
 * discarded if it runs the effect again: they run once, for the attempt that ended it.
 */
const afterRollback = (level: Level, info: HookInfo): Effect.Effect<void> =>
  Effect.flatMap(FiberRef.get(currentRetryAttempt), (retry) => {
    const hooks = Effect.ignore(runHooks(level, "afterRollback", info))
    if (retry === undefined) return hooks
    retry.deferred.push(hooks)
    return Effect.void
  })

/**
 * Ends a block that ends the transaction: `beforeCommit` hooks, then COMMIT (`release` for a block joined to a
 * foreign transaction) and the `afterCommit` hooks; or, on any failure, `beforeRollback` hooks, ROLLBACK
 * (`rollback`) and the `afterRollback` hooks.
 */
const finish = <A, E>(
  level: Level,
  exit: Exit.Exit<A, E>,
  statements: {
    readonly commit: Effect.Effect<Exit.Exit<void, Failure>, never>
    readonly rollback: Effect.Effect<void>
  }
): Effect.Effect<A, E | Failure> => {
  const { root } = level
  const { dialect } = root
  const rollbackWith = (result: Exit.Exit<A, E | Failure>): Effect.Effect<A, E | Failure> =>
    !hasHooks(level) ?
      Effect.zipRight(statements.rollback, result) :
      Effect.flatMap(hookInfo(level, "rolledBack"), (info) =>
        Effect.ignore(runHooks(level, "beforeRollback", info)).pipe(
          Effect.zipRight(statements.rollback),
          Effect.zipRight(afterRollback(level, info)),
          Effect.zipRight(result)
        ))
  if (Exit.isFailure(exit)) return rollbackWith(classifyExit(dialect, exit))
  if (root.poisoned !== undefined) return rollbackWith(Exit.fail(root.poisoned))
  if (level.rollbackOnly) return rollbackWith(exit)
  if (!hasHooks(level)) {
    return Effect.flatMap(statements.commit, (committed): Effect.Effect<A, E | Failure> => {
      if (Exit.isSuccess(committed)) {
        root.outcome = "committed"
        return exit
      }
      if (committed.cause._tag === "Fail" && committed.cause.error._tag === "CommitOutcomeUnknown") {
        root.outcome = "unknown"
      }
      return Exit.failCause(committed.cause)
    })
  }
  return Effect.flatMap(
    hookInfo(level, undefined),
    (info) =>
      Effect.flatMap(Effect.exit(runHooks(level, "beforeCommit", info)), (before) => {
        if (Exit.isFailure(before)) {
          return rollbackWith(classifyExit(dialect, before as Exit.Exit<never, Failure>))
        }
        return Effect.flatMap(statements.commit, (committed): Effect.Effect<A, E | Failure> => {
          if (Exit.isSuccess(committed)) {
            root.outcome = "committed"
            return Effect.flatMap(
              hookInfo(level, "committed"),
              (info) => Effect.zipRight(Effect.ignore(runHooks(level, "afterCommit", info)), exit)
            )
          }
          const failed = Exit.failCause(committed.cause)
          // After CommitOutcomeUnknown, neither afterCommit nor afterRollback: nobody knows which happened.
          if (committed.cause._tag === "Fail" && committed.cause.error._tag === "CommitOutcomeUnknown") {
            root.outcome = "unknown"
            return failed
          }
          return Effect.flatMap(
            hookInfo(level, "rolledBack"),
            (info) => Effect.zipRight(afterRollback(level, info), failed)
          )
        })
      })
  )
}

const closeRoot = <A, E>(level: Level, exit: Exit.Exit<A, E>): Effect.Effect<A, E | Failure> => {
  const { root } = level
  const { dialect } = root
  const options = level.handle.options
  forgetSavepoints(level)
  // Built on demand: a statement's effect may do work when it is built (better-sqlite3 prepares it).
  const rollback = Effect.suspend(() =>
    Effect.flatMap(rollbackRoot(root, options), (destroy) => releaseConnection(root, destroy))
  )
  const commit: Effect.Effect<Exit.Exit<void, Failure>> = Effect.suspend(() => dialect.commit(root.conn, options)).pipe(
    Effect.matchEffect({
      onSuccess: (outcome): Effect.Effect<Exit.Exit<void, Failure>> =>
        Effect.as(
          releaseConnection(root, false),
          outcome === "committed" ? Exit.void : Exit.fail(
            new TransactionError.TransactionAborted({ dialect: dialect.name, code: "25P02", cause: undefined })
          )
        ),
      onFailure: (error): Effect.Effect<Exit.Exit<void, Failure>> => {
        const classified = classifyError(dialect, error)
        if (classified._tag === "ConnectionLost") {
          const unknown = new TransactionError.CommitOutcomeUnknown({
            dialect: dialect.name,
            code: classified.code,
            cause: error
          })
          return Effect.as(releaseConnection(root, true), Exit.fail(unknown))
        }
        // A COMMIT refused by the database (a deferred constraint, a serialization failure) may leave the
        // transaction open (SQLite does): roll back, which is harmless where it is already over.
        return Effect.as(rollback, Exit.fail(classified))
      }
    })
  )
  return Effect.onExit(finish(level, exit, { commit, rollback }), (result) => record(level, result))
}

/** Records the end of an outermost transaction: metrics, span, registry. */
const record = <A, E>(level: Level, result: Exit.Exit<A, E>): Effect.Effect<void> =>
  Effect.withFiberRuntime((fiber) => {
    const { root } = level
    // Tell the enclosing withRetry which transaction a retry is for (its metric's tag).
    const retry = fiber.getFiberRef(currentRetryAttempt)
    if (retry !== undefined) retry.lastTransaction = level.handle.name
    const now = root.manager.clock.unsafeCurrentTimeNanos()
    const elapsed = now - BigInt(level.handle.startedAt.getTime()) * 1_000_000n
    root.recorder.ended(root.outcome, errorTag(result), Number(elapsed) / 1e9)
    if (root.entry !== undefined) root.manager.registry.delete(root.entry.id)
    if (root.span !== undefined) {
      root.span.attribute("db.transaction.outcome", root.outcome)
      root.span.attribute("db.transaction.savepoints", root.savepointCounter)
      root.span.event(root.outcome === "committed" ? "db.transaction.commit" : "db.transaction.rollback", now)
      root.span.end(now, result)
    }
    return Effect.void
  })

const errorTag = <A, E>(exit: Exit.Exit<A, E>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const tag = (failure.value as { readonly _tag?: unknown } | null)?._tag
    return typeof tag === "string" ? tag : "failure"
  }
  return Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "defect"
}

const closeNested = <A, E>(level: Level, exit: Exit.Exit<A, E>): Effect.Effect<A, E | Failure> => {
  const { root } = level
  const { dialect } = root
  const name = level.savepoint!
  const rollbackTo: Effect.Effect<Exit.Exit<void, Failure>> = Effect.suspend(() =>
    Effect.zipRight(dialect.cancel(root.conn), dialect.rollbackAndReleaseSavepoint(root.conn, name))
  ).pipe(
    Effect.matchEffect({
      onSuccess: (): Effect.Effect<Exit.Exit<void, Failure>> => Effect.succeed(Exit.void),
      onFailure: (error): Effect.Effect<Exit.Exit<void, Failure>> => {
        // The block's writes may still be there: make sure the transaction cannot commit them.
        const classified = classifyError(dialect, error)
        root.poisoned ??= classified
        return Effect.succeed(Exit.fail(classified))
      }
    })
  )
  const release: Effect.Effect<Exit.Exit<void, Failure>> = Effect.suspend(() =>
    dialect.releaseSavepoint(root.conn, name)
  ).pipe(
    Effect.matchEffect({
      onSuccess: () => Effect.succeed(Exit.void),
      // PostgreSQL refuses to release a savepoint after a failed statement whose error was caught (25P02).
      onFailure: (error) =>
        Effect.map(
          rollbackTo,
          (rolledBack) => Exit.isFailure(rolledBack) ? rolledBack : Exit.fail(classifyError(dialect, error))
        )
    })
  )
  const parent = level.parent
  const result: Effect.Effect<A, E | Failure> = parent === undefined
    // Joined to a foreign `sql.withTransaction`: this block is all the transaction this library sees.
    ? finish(level, exit, { commit: release, rollback: Effect.asVoid(rollbackTo) })
    : Exit.isFailure(exit) || level.rollbackOnly
    ? Effect.flatMap(rollbackTo, (rolledBack): Exit.Exit<A, E | Failure> =>
      Exit.isFailure(rolledBack)
        ? Exit.failCause(rolledBack.cause)
        : Exit.isFailure(exit)
        ? classifyExit(dialect, exit)
        : exit)
    : Effect.flatMap(release, (released): Exit.Exit<A, E | Failure> => {
      if (Exit.isFailure(released)) return Exit.failCause(released.cause)
      // Committed into the parent: so are its hooks; a block rolled back to its savepoint discards them.
      parent.hooks.push(...level.hooks)
      return exit
    })
  return Effect.ensuring(
    result,
    Effect.suspend(() => {
      forgetSavepoints(level)
      if (root.entry !== undefined) root.entry.depth = level.handle.depth - 1
      return parent === undefined ? Effect.void : lockOf(parent).release(1)
    })
  )
}

const close = <A, E>(level: Level, exit: Exit.Exit<A, E>): Effect.Effect<A, E | Failure> =>
  level.savepoint === undefined ? closeRoot(level, exit) : closeNested(level, exit)

// ---------------------------------------------------------------------------------------------------------------
// running a body

/** Statements of the body are children of the transaction's span. */
const withSpan = <R>(level: Level, context: Context.Context<R>): Context.Context<R> =>
  level.root.span === undefined ? context : Context.add(context, Tracer.ParentSpan, level.root.span)

const provideLevel = <A, E, R>(level: Level, effect: Effect.Effect<A, E, R>) =>
  Effect.mapInputContext(
    effect,
    (context: Context.Context<Exclude<R, Transaction>>) =>
      withSpan(
        level,
        Context.add(
          Context.add(context, TransactionTag, level.handle),
          SqlClient.TransactionConnection,
          [level.root.conn, level.handle.depth] as const
        )
      ) as Context.Context<R>
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
 * Runs the body of a block. With a `timeout` (or the manager's `superviseInterruption`), the body runs in a fiber
 * of its own, so that the timeout, or an interruption, first cancels the statement in flight on the server, then
 * interrupts the body: interrupting the statement alone would leave it running (mysql2) or need a free pool slot
 * to cancel it (`@effect/sql-pg` runs `pg_cancel_backend` over the pool). When the timeout expires the block fails
 * with `TransactionTimeout`. Without them the body runs in place (a fiber less per transaction); an interrupted
 * mysql2 statement is still cancelled before ROLLBACK (`rollbackRoot`).
 */
const runBody = <A, E, R>(
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

/** @internal `Transaction.atomic`. */
export const atomic = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: TransactionOptions | undefined
): Effect.Effect<A, E | Failure, Exclude<R, Transaction> | TransactionManager> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(
      open(options, true, restore),
      (level) => Effect.flatMap(runBody(level, effect, restore), (exit) => close(level, exit))
    )
  )

/** The bound on the wait for a connection of `independent`, when the manager sets none: never hang. */
const independentAcquireTimeout = Duration.seconds(5)

/** @internal `Transaction.independent`. */
export const independent = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  options: TransactionOptions | undefined
): Effect.Effect<A, E | Failure, Exclude<R, Transaction> | TransactionManager> =>
  Effect.flatMap(TransactionManager, (manager) =>
    Effect.mapInputContext(
      atomic(effect, options),
      (context: Context.Context<Exclude<R, Transaction> | TransactionManager>) =>
        Context.add(withoutTransaction(context), TransactionManager, {
          ...manager,
          acquireTimeout: manager.acquireTimeout ?? independentAcquireTimeout
        })
    ))

/** @internal `Transaction.begin`. */
export const begin = (
  options: TransactionOptions | undefined
): Effect.Effect<Transaction, Failure, Scope.Scope | TransactionManager> =>
  options?.timeout !== undefined
    ? Effect.fail(
      new TransactionError.InvalidTransactionOptions({
        option: "timeout",
        value: options.timeout,
        reason: "Transaction.begin has no body to bound: use Transaction.atomic for a timeout"
      })
    )
    : Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(
        open(options, false, restore),
        (level) =>
          Effect.flatMap(Effect.scope, (scope) =>
            Scope.addFinalizerExit(scope, (exit) =>
              // A failed scope already carries its error: only a failure of the COMMIT itself is new.
              Exit.isFailure(exit) ? Effect.ignore(close(level, exit)) : close(level, exit).pipe(
                Effect.catchAll((error) =>
                  // A scope finalizer cannot fail: a COMMIT error can only surface as a defect here (`atomic` keeps
                  // it typed).
                  Effect.zipRight(
                    Effect.logError("effect-sql-tx: the transaction of Transaction.begin did not commit").pipe(
                      Effect.annotateLogs("error", String(error))
                    ),
                    Effect.die(error)
                  )
                )
              )).pipe(
                Effect.zipRight(
                  Effect.locallyScopedWith(FiberRef.currentContext, (context) =>
                    Context.add(
                      Context.add(context, TransactionTag, level.handle),
                      SqlClient.TransactionConnection,
                      [level.root.conn, level.handle.depth] as const
                    ))
                ),
                Effect.as(level.handle)
              ))
      )
    )

// ---------------------------------------------------------------------------------------------------------------
// manual savepoints

const refuse = (savepoint: string, reason: string) =>
  Effect.fail(new TransactionError.SavepointError({ savepoint, reason }))

const createSavepoint = (level: Level, name: string | undefined): Effect.Effect<Savepoint, Failure> =>
  Effect.suspend((): Effect.Effect<Savepoint, Failure> => {
    const { root } = level
    if (name !== undefined) {
      if (typeof name !== "string" || !identifier.test(name)) {
        return refuse(String(name), "a savepoint name must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, ≤ 63)")
      }
      if (name.toLowerCase().startsWith(reservedPrefix)) {
        return refuse(name, `names starting with "${reservedPrefix}" are reserved for generated savepoints`)
      }
    }
    return lockOf(level).withPermits(1)(Effect.suspend((): Effect.Effect<Savepoint, Failure> => {
      const actual = name ?? nextSavepointName(root)
      if (root.liveSavepoints.has(actual)) return refuse(actual, "a savepoint of that name is already defined")
      return Effect.zipRight(countSavepoint(root), root.dialect.savepoint(root.conn, actual)).pipe(
        Effect.mapError((error) => classifyError(root.dialect, error)),
        Effect.map(() => {
          const savepoint: Savepoint = { _tag: "Savepoint", name: actual, transactionId: level.handle.id }
          level.manual.push(savepoint)
          root.liveSavepoints.add(actual)
          return savepoint
        })
      )
    }))
  })

const withOwnSavepoint = (
  level: Level,
  savepoint: Savepoint,
  f: (index: number) => Effect.Effect<void, Failure>
): Effect.Effect<void, Failure> =>
  lockOf(level).withPermits(1)(Effect.suspend(() => {
    const index = level.manual.indexOf(savepoint)
    if (index === -1) {
      return refuse(
        savepoint?.name ?? String(savepoint),
        "unknown here: released, rolled back past, or created by another transaction or block"
      )
    }
    return f(index)
  }))

const dropFrom = (level: Level, index: number): void => {
  for (const dropped of level.manual.splice(index)) level.root.liveSavepoints.delete(dropped.name)
}

const rollbackToSavepoint = (level: Level, savepoint: Savepoint): Effect.Effect<void, Failure> =>
  withOwnSavepoint(
    level,
    savepoint,
    (index) =>
      level.root.dialect.rollbackToSavepoint(level.root.conn, savepoint.name).pipe(
        Effect.mapError((error) => classifyError(level.root.dialect, error)),
        // The savepoint stays defined; the ones created after it are gone.
        Effect.tap(() => dropFrom(level, index + 1))
      )
  )

const releaseSavepoint = (level: Level, savepoint: Savepoint): Effect.Effect<void, Failure> =>
  withOwnSavepoint(
    level,
    savepoint,
    (index) =>
      level.root.dialect.releaseSavepoint(level.root.conn, savepoint.name).pipe(
        Effect.mapError((error) => classifyError(level.root.dialect, error)),
        // Releasing a savepoint releases the ones created after it too.
        Effect.tap(() => dropFrom(level, index))
      )
  )
