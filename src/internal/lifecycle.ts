/**
 * The one path of every transaction: acquire → begin → body → commit/rollback → classify → release.
 * Nested blocks take the same path with a savepoint instead of a connection and BEGIN.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Chunk from "effect/Chunk"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import type * as Fiber from "effect/Fiber"
import * as FiberRef from "effect/FiberRef"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import type {
  ResolvedTransactionOptions,
  Savepoint,
  Transaction,
  TransactionInfo,
  TransactionOptions
} from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import type { HookInfo } from "../TransactionManager.js"
import { TransactionManager } from "../TransactionManager.js"
import { inTransaction, provideLevel, runBody } from "./body.js"
import { releaseConnection, reserve, rollbackAndRelease } from "./connection.js"
import { afterRollbackHooks, currentRetryAttempt, noteEnded, TransactionTag, withoutTransaction } from "./context.js"
import { deadlines } from "./deadlines.js"
import { BlockConnection, closeRoot as closeRootBlock } from "./guard.js"
import * as Hooks from "./hooks.js"
import type { BlockLock } from "./lock.js"
import * as Metrics from "./metrics.js"
import * as Options from "./options.js"
import { ActiveEntry } from "./registry.js"
import { createSavepoint, releaseSavepoint, rollbackToSavepoint } from "./savepoints.js"
import {
  classifyError,
  classifyExit,
  type Failure,
  type HandleWithLevel,
  type Level,
  LevelKey,
  levelOf,
  lockOf,
  type ManualSavepoint,
  nextSavepointName,
  noteSavepoint,
  type Root,
  TransactionRoot
} from "./state.js"

export { TransactionTag } from "./context.js"

// ---------------------------------------------------------------------------------------------------------------
// opening a block

/**
 * The handle of a block. Its operations are made when they are read (and close over the block, so that they can
 * be passed around unbound): a block that never uses them pays nothing for them.
 */
class Handle implements HandleWithLevel {
  readonly id: string
  readonly name: string
  readonly depth: number
  readonly options: ResolvedTransactionOptions
  readonly startedAt: Date
  readonly attempt: number
  readonly [LevelKey]: Level
  constructor(level: Level, info: TransactionInfo) {
    this.id = info.id
    this.name = info.name
    this.depth = info.depth
    this.options = info.options
    this.startedAt = info.startedAt
    this.attempt = info.attempt
    this[LevelKey] = level
  }
  get savepoint() {
    const level = this[LevelKey]
    return (name?: string) => createSavepoint(level, name)
  }
  get rollbackTo() {
    const level = this[LevelKey]
    return (savepoint: Savepoint) => rollbackToSavepoint(level, savepoint)
  }
  get release() {
    const level = this[LevelKey]
    return (savepoint: Savepoint) => releaseSavepoint(level, savepoint)
  }
  get setRollbackOnly() {
    const level = this[LevelKey]
    return Effect.sync(() => {
      level.rollbackOnly = true
    })
  }
}

/**
 * A block and its handle. A class rather than an object literal, and its arrays made on first use: V8 allocated the
 * literals (the block's and its two empty arrays) directly in the old generation after the first thousand or so
 * transactions (see `TransactionRoot`), and the guard made beside them with them.
 */
class Block implements Level {
  readonly handle: Transaction
  readonly connection: BlockConnection
  manual: Array<ManualSavepoint> | undefined = undefined
  lock: BlockLock | undefined = undefined
  rollbackOnly = false
  failedStatement = false
  closed = false
  hooks: Array<Hooks.Hook> | undefined = undefined
  constructor(
    readonly root: Root,
    readonly parent: Level | undefined,
    readonly savepoint: string | undefined,
    info: TransactionInfo
  ) {
    this.handle = new Handle(this, info)
    this.connection = new BlockConnection(this)
  }
}

/** Makes a block and its handle. */
const makeLevel = (
  root: Root,
  parent: Level | undefined,
  savepoint: string | undefined,
  info: TransactionInfo
): Level => new Block(root, parent, savepoint, info)

/** `begin` has no body of its own to bound: it takes no `timeout`, and the manager's default does not apply. */
const withoutTimeoutUnless = (
  bounded: boolean,
  options: ResolvedTransactionOptions
): ResolvedTransactionOptions => bounded || options.timeout === undefined ? options : { ...options, timeout: undefined }

const spanName = "effect_sql_tx.transaction"
const spanOptions = { kind: "client", captureStackTrace: false } as const

const openRoot = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  manager: TransactionManager,
  options: TransactionOptions | undefined,
  bounded: boolean,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Level, Failure> => {
  const dialect = manager.dialect
  const resolution = Options.resolveCached(manager.defaults, options, dialect)
  if (Either.isLeft(resolution)) return Effect.fail(resolution.left)
  const resolved = withoutTimeoutUnless(bounded, resolution.right)
  const retry = fiber.getFiberRef(currentRetryAttempt)
  // Written as a chain of plain functions rather than a generator: this runs for every transaction.
  return Effect.flatMap(
    reserve(manager, restore),
    ([conn, connScope]) =>
      Effect.flatMap(Effect.makeSpan(spanName, spanOptions), (span) => {
        const attempt = retry?.attempt ?? 1
        span.attribute("db.system", dialect.dbSystem)
        span.attribute("db.transaction.name", resolved.name)
        span.attribute("db.transaction.isolation", resolved.isolation ?? "default")
        span.attribute("db.transaction.read_only", resolved.readOnly)
        span.attribute("db.transaction.attempt", attempt)
        const startNanos = manager.clock.unsafeCurrentTimeNanos()
        const startedAt = new Date(Number(startNanos / 1_000_000n))
        const id = manager.nextId()
        const root = new TransactionRoot(
          manager,
          conn,
          connScope,
          Metrics.recorder(resolved.name, manager, fiber),
          span,
          new ActiveEntry(id, resolved.name, startedAt, attempt, dialect.connectionId(conn)),
          retry,
          startNanos
        )
        const begin = dialect.begin(conn, resolved, manager.serverLabel ? resolved.name : undefined)
        return Effect.matchCauseEffect(begin, {
          onFailure: (cause) =>
            // BEGIN may have half-succeeded (a transaction is open but a folded statement failed): roll back.
            rollbackAndRelease(root, resolved, true).pipe(
              Effect.zipRight(
                Effect.sync(() => span.end(manager.clock.unsafeCurrentTimeNanos(), Exit.failCause(cause)))
              ),
              Effect.zipRight(Effect.failCause(Cause.map(cause, (error) => classifyError(dialect, error))))
            ),
          onSuccess: () => {
            root.recorder.started()
            manager.registry.add(root.entry!)
            return Effect.succeed(
              makeLevel(root, undefined, undefined, {
                id,
                name: resolved.name,
                depth: 0,
                options: resolved,
                startedAt,
                attempt
              })
            )
          }
        })
      })
  )
}

const openNested = (
  fiber: Fiber.RuntimeFiber<unknown, unknown>,
  parent: Level | undefined,
  root: Root,
  depth: number,
  parentOptions: ResolvedTransactionOptions,
  options: TransactionOptions | undefined,
  bounded: boolean,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Level, Failure> => {
  const resolution = Options.resolveNested(parentOptions, options)
  if (Either.isLeft(resolution)) return Effect.fail(resolution.left)
  const resolved = withoutTimeoutUnless(bounded, resolution.right)
  const lock = parent === undefined ? undefined : lockOf(parent)
  const create = (): Effect.Effect<Level, Failure> => {
    const counted = noteSavepoint(root)
    const name = nextSavepointName(root)
    // Through the parent's guard: refused when the parent has ended or the transaction was rolled back.
    const target = parent === undefined ? root.statements : parent.connection
    const savepoint = counted === undefined
      ? root.dialect.savepoint(target, name)
      : Effect.zipRight(counted, root.dialect.savepoint(target, name))
    return Effect.matchCauseEffect(savepoint, {
      onFailure: (cause) => {
        lock?.release()
        return Effect.failCause(Cause.map(cause, (error) => classifyError(root.dialect, error)))
      },
      onSuccess: () => {
        if (root.entry !== undefined) root.entry.depth = depth
        return Exit.succeed(makeLevel(root, parent, name, {
          id: parent === undefined ? root.manager.nextId() : `${parent.handle.id}.${root.savepointCounter}`,
          name: resolved.name,
          depth,
          options: resolved,
          startedAt: new Date(root.manager.clock.unsafeCurrentTimeMillis()),
          attempt: fiber.getFiberRef(currentRetryAttempt)?.attempt ?? 1
        }))
      }
    })
  }
  // The parent's lock serializes its nested blocks: taken at once when free (the common case), else waited for.
  return lock === undefined || lock.tryTake() ? create() : Effect.zipRight(lock.take(restore), Effect.suspend(create))
}

/** Opens the outermost transaction, a savepoint in the current one, or a savepoint in a foreign one. */
const open = (
  options: TransactionOptions | undefined,
  bounded: boolean,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
): Effect.Effect<Level, Failure, TransactionManager> =>
  Effect.withFiberRuntime((fiber) => {
    // Read from the context's map directly: no Option made for the common case of no transaction.
    const services = fiber.currentContext.unsafeMap
    const manager = Context.unsafeGet(fiber.currentContext, TransactionManager)
    {
      const current: Transaction | undefined = services.get(TransactionTag.key)
      if (current !== undefined) {
        const parent = levelOf(current)
        return openNested(
          fiber,
          parent,
          parent.root,
          parent.handle.depth + 1,
          parent.handle.options,
          options,
          bounded,
          restore
        )
      }
      const foreign: Context.Tag.Service<typeof SqlClient.TransactionConnection> | undefined = services.get(
        SqlClient.TransactionConnection.key
      )
      if (foreign !== undefined) {
        // Inside a plain `sql.withTransaction`: join it with a savepoint on its connection.
        const [conn, depth] = foreign
        const root = new TransactionRoot(
          manager,
          conn,
          undefined,
          Metrics.recorder(options?.name ?? Options.defaultName, manager, fiber),
          undefined,
          undefined,
          fiber.getFiberRef(currentRetryAttempt),
          manager.clock.unsafeCurrentTimeNanos()
        )
        return openNested(fiber, undefined, root, depth + 1, Options.foreignParent, options, bounded, restore)
      }
      return openRoot(fiber, manager, options, bounded, restore)
    }
  })

// ---------------------------------------------------------------------------------------------------------------
// closing a block

const forgetSavepoints = (level: Level): void => {
  const { manual } = level
  if (manual === undefined || manual.length === 0) return
  for (const { savepoint } of manual) level.root.liveSavepoints?.delete(savepoint.name)
  manual.length = 0
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
const hasHooks = (level: Level): boolean =>
  (level.hooks !== undefined && level.hooks.length > 0) || level.root.manager.hooks !== undefined

/**
 * Runs the hooks of a kind for a block that ends the transaction (the outermost, or one joined to a foreign one).
 * Those that run inside the transaction get a guard of their own: stopping the body does not stop them.
 */
const runHooks = (level: Level, kind: Hooks.HookKind, info: HookInfo): Effect.Effect<void, unknown> =>
  Hooks.run(
    kind,
    level.hooks ?? [],
    level.root.manager.hooks,
    info,
    kind === "beforeCommit" || kind === "beforeRollback"
      ? (effect) => provideLevel(level, effect, new BlockConnection(level))
      : identity,
    level.root.recorder,
    level.root.manager.hookTimeout
  )

/**
 * `afterRollback` hooks run once the transaction is over; under `withRetry` they wait for it to stop, and are
 * discarded if it runs the effect again: they run once, for the attempt that ended it.
 */
const afterRollback = (level: Level, info: HookInfo): Effect.Effect<void> =>
  afterRollbackHooks(level.root.retry, Effect.ignore(runHooks(level, "afterRollback", info)))

/**
 * How a block that ends the transaction ends: COMMIT or ROLLBACK for the outermost transaction, RELEASE or
 * ROLLBACK TO for a block joined to a foreign `sql.withTransaction`. Each is called when its statement is to run
 * (a statement's effect may do work when it is built: better-sqlite3 prepares it), and closes the block first:
 * from then on its guards refuse statements, whichever fiber sends them.
 */
interface Ending {
  readonly commit: (level: Level) => Effect.Effect<Exit.Exit<void, Failure>>
  readonly rollback: (level: Level) => Effect.Effect<void>
}

const rollbackWith = <A, E>(
  level: Level,
  ending: Ending,
  result: Exit.Exit<A, E | Failure>
): Effect.Effect<A, E | Failure> =>
  !hasHooks(level) ?
    Effect.zipRight(ending.rollback(level), result) :
    Effect.flatMap(hookInfo(level, "rolledBack"), (info) =>
      Effect.ignore(runHooks(level, "beforeRollback", info)).pipe(
        Effect.zipRight(Effect.suspend(() => ending.rollback(level))),
        Effect.zipRight(afterRollback(level, info)),
        Effect.zipRight(result)
      ))

/** Whether the COMMIT failed in a way that leaves its outcome unknown (the connection was lost during it). */
const isOutcomeUnknown = (committed: Exit.Failure<void, Failure>): boolean =>
  committed.cause._tag === "Fail" && committed.cause.error._tag === "CommitOutcomeUnknown"

/** The result of a block whose COMMIT (or RELEASE) ran, without hooks. */
const committedWithoutHooks = <A, E>(
  level: Level,
  exit: Exit.Exit<A, E>,
  committed: Exit.Exit<void, Failure>
): Exit.Exit<A, E | Failure> => {
  if (Exit.isSuccess(committed)) {
    level.root.outcome = "committed"
    return exit
  }
  if (isOutcomeUnknown(committed)) level.root.outcome = "unknown"
  return Exit.failCause(committed.cause)
}

/**
 * The error a block must end with although its body may have succeeded: the transaction was rolled back by the
 * database (its doom). A defect or an interruption of the body is kept: it says more about what happened.
 */
const failureOf = <A, E>(level: Level, exit: Exit.Exit<A, E>): Exit.Exit<never, Failure> | undefined => {
  const error = level.root.doomed
  if (error === undefined) return undefined
  if (Exit.isFailure(exit)) {
    const failure = Cause.failureOption(exit.cause)
    if (Option.isNone(failure)) {
      // A nested `sql.withTransaction` turns its refused ROLLBACK TO (the doom itself) into a defect: that is the doom.
      return Cause.defects(exit.cause).pipe(Chunk.some((defect) => Cause.originalError(defect) === error))
        ? Exit.fail(classifyError(level.root.dialect, error))
        : undefined
    }
    // The block's own timeout stopped it (its statements' errors after that are consequences).
    if ((failure.value as { readonly _tag?: unknown })._tag === "TransactionTimeout") return undefined
  }
  return Exit.fail(classifyError(level.root.dialect, error))
}

/**
 * Ends a block that ends the transaction: `beforeCommit` hooks, then COMMIT (`release` for a block joined to a
 * foreign transaction) and the `afterCommit` hooks; or, on any failure, `beforeRollback` hooks, ROLLBACK
 * (`rollback`) and the `afterRollback` hooks.
 */
const finish = <A, E>(level: Level, exit: Exit.Exit<A, E>, ending: Ending): Effect.Effect<A, E | Failure> => {
  const { root } = level
  const { dialect } = root
  const failed = failureOf(level, exit)
  if (failed !== undefined) return rollbackWith(level, ending, failed)
  if (Exit.isFailure(exit)) return rollbackWith(level, ending, classifyExit(dialect, exit))
  if (level.rollbackOnly) return rollbackWith(level, ending, exit)
  if (!hasHooks(level)) {
    return Effect.flatMap(ending.commit(level), (committed) => committedWithoutHooks(level, exit, committed))
  }
  return Effect.flatMap(
    hookInfo(level, undefined),
    (info) =>
      Effect.flatMap(Effect.exit(runHooks(level, "beforeCommit", info)), (before) => {
        if (Exit.isFailure(before)) {
          return rollbackWith(level, ending, classifyExit(dialect, before as Exit.Exit<never, Failure>))
        }
        // A beforeCommit hook may have met an error that rolled the transaction back.
        const doomed = failureOf(level, exit)
        if (doomed !== undefined) return rollbackWith(level, ending, doomed)
        return Effect.flatMap(ending.commit(level), (committed): Effect.Effect<A, E | Failure> => {
          if (Exit.isSuccess(committed)) {
            root.outcome = "committed"
            return Effect.flatMap(
              hookInfo(level, "committed"),
              (info) => Effect.zipRight(Effect.ignore(runHooks(level, "afterCommit", info)), exit)
            )
          }
          const failed = Exit.failCause(committed.cause)
          // After CommitOutcomeUnknown, neither afterCommit nor afterRollback: nobody knows which happened.
          if (isOutcomeUnknown(committed)) {
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

const rollbackRootBlock = (level: Level): Effect.Effect<void> => {
  closeRootBlock(level)
  return rollbackAndRelease(level.root, level.handle.options)
}

/**
 * Commits the outermost transaction. A COMMIT that does not answer within the manager's `commitTimeout` has its
 * connection closed under it (a deadline on the shared timer of `deadlines.ts`, not a fiber: this runs for every
 * transaction), which fails it: its outcome is then unknown.
 */
const commitRoot = (level: Level): Effect.Effect<Exit.Exit<void, Failure>> => {
  closeRootBlock(level)
  const { root } = level
  const { dialect } = root
  const unknown = (code: string | undefined, cause: unknown) =>
    Effect.as(
      releaseConnection(root, true),
      Exit.fail(new TransactionError.CommitOutcomeUnknown({ dialect: dialect.name, code, cause }))
    )
  let expired = false
  const abandon = dialect.abandon
  // Past `setTimeout`'s limit, no deadline: such a bound is no bound.
  const timer = abandon === undefined ? undefined : deadlines.add(Duration.toMillis(root.manager.commitTimeout), () => {
    expired = true
    abandon(root.conn)
  })
  return Effect.matchCauseEffect(dialect.commit(root.conn, level.handle.options), {
    onSuccess: (outcome): Effect.Effect<Exit.Exit<void, Failure>> => {
      deadlines.cancel(timer)
      // A statement of another fiber, sent before the COMMIT, met an error that rolled the transaction back (a
      // MySQL deadlock): the COMMIT then ran in autocommit and committed nothing.
      const doomed = root.doomed
      return Effect.as(
        releaseConnection(root, false),
        doomed !== undefined
          ? Exit.fail(classifyError(dialect, doomed))
          : outcome === "committed"
          ? Exit.void
          : Exit.fail(abortedBy(root))
      )
    },
    onFailure: (cause): Effect.Effect<Exit.Exit<void, Failure>> => {
      deadlines.cancel(timer)
      const failure = Cause.failureOption(cause)
      // A defect or an interruption during COMMIT: nobody knows what was sent; the connection is destroyed.
      if (Option.isNone(failure)) return Effect.as(releaseConnection(root, true), Exit.failCause(cause))
      const error = failure.value
      if (expired) return unknown("commitTimeout", error)
      const classified = classifyError(dialect, error)
      if (classified._tag === "ConnectionLost") return unknown(classified.code, error)
      // A COMMIT refused by the database (a deferred constraint, a serialization failure) may leave the
      // transaction open (SQLite does): roll back, which is harmless where it is already over.
      return Effect.as(rollbackRootBlock(level), Exit.fail(classified))
    }
  })
}

const rootEnding: Ending = { commit: commitRoot, rollback: rollbackRootBlock }

const closeRoot = <A, E>(level: Level, exit: Exit.Exit<A, E>): Effect.Effect<A, E | Failure> => {
  forgetSavepoints(level)
  // Already uninterruptible: recording after `exit` costs fewer steps than `onExit`. Whatever `finish` did (a
  // failure, a defect, an interruption of any step), the connection is released once: destroyed if it was not.
  return Effect.flatMap(Effect.exit(Effect.suspend(() => finish(level, exit, rootEnding))), (result) => {
    record(level, result)
    return level.root.released ? result : Effect.zipRight(releaseConnection(level.root, true), result)
  })
}

/** Records the end of an outermost transaction: metrics, span, registry. */
const record = <A, E>(level: Level, result: Exit.Exit<A, E>): void => {
  const { root } = level
  // Tell the enclosing withRetry which transaction a retry is for (its metric's tag), whether one committed (the
  // attempt must not run again) and what the transaction ended with.
  noteEnded(root.retry, level.handle.name, root.outcome === "committed", result)
  const now = root.manager.clock.unsafeCurrentTimeNanos()
  root.recorder.ended(root.outcome, errorTag(result), Number(now - root.startNanos) / 1e9)
  if (root.entry !== undefined) root.manager.registry.remove(root.entry)
  if (root.span !== undefined) {
    root.span.attribute("db.transaction.outcome", root.outcome)
    root.span.attribute("db.transaction.savepoints", root.savepointCounter)
    root.span.event(root.outcome === "committed" ? "db.transaction.commit" : "db.transaction.rollback", now)
    root.span.end(now, result)
  }
}

const errorTag = <A, E>(exit: Exit.Exit<A, E>): string | undefined => {
  if (Exit.isSuccess(exit)) return undefined
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const tag = (failure.value as { readonly _tag?: unknown } | null)?._tag
    return typeof tag === "string" ? tag : "failure"
  }
  return Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "defect"
}

/**
 * Rolls back to the savepoint of a block (and releases it). If that fails (or dies), the block's writes may still
 * be there: the transaction is doomed, so that it cannot commit them.
 */
const rollbackToBlock = (level: Level): Effect.Effect<Exit.Exit<void, Failure>> => {
  level.closed = true
  const { root } = level
  const { dialect } = root
  return Effect.zipRight(dialect.cancel(root.conn), dialect.rollbackAndReleaseSavepoint(root.conn, level.savepoint!))
    .pipe(
      Effect.matchCause({
        onSuccess: (): Exit.Exit<void, Failure> => Exit.void,
        onFailure: (cause): Exit.Exit<void, Failure> => {
          const failure = Cause.failureOption(cause)
          const error = Option.isSome(failure)
            ? failure.value
            : new SqlError({ cause: Cause.squash(cause), message: "ROLLBACK TO SAVEPOINT did not complete" })
          root.doomed ??= error
          return Exit.fail(classifyError(dialect, error))
        }
      })
    )
}

/**
 * The error a transaction (or savepoint) aborted by an earlier error ends with: that error, as the guard saw it
 * (PostgreSQL), else `TransactionAborted`.
 */
const abortedBy = (root: Root): Failure =>
  root.lastError === undefined
    ? new TransactionError.TransactionAborted({ dialect: root.dialect.name, code: "25P02", cause: undefined })
    : classifyError(root.dialect, root.lastError)

/** Releases the savepoint of a block, that is commits it into its parent. */
const releaseBlock = (level: Level): Effect.Effect<Exit.Exit<void, Failure>> => {
  level.closed = true
  const { root } = level
  const { dialect } = root
  return Effect.matchCauseEffect(dialect.releaseSavepoint(root.conn, level.savepoint!), {
    onSuccess: () => Effect.succeed(Exit.void),
    // PostgreSQL refuses to release a savepoint after a failed statement whose error was caught (25P02).
    onFailure: (cause) =>
      Effect.map(
        rollbackToBlock(level),
        (rolledBack) => {
          if (Exit.isFailure(rolledBack)) return rolledBack
          // 25P02: the savepoint was aborted by an earlier error, which the block ends with.
          return Exit.failCause(Cause.map(cause, (error) => {
            const classified = classifyError(dialect, error)
            return classified._tag === "TransactionAborted" ? abortedBy(root) : classified
          }))
        }
      )
  })
}

/** A block joined to a foreign `sql.withTransaction` is all the transaction this library sees. */
const foreignEnding: Ending = { commit: releaseBlock, rollback: (level) => Effect.asVoid(rollbackToBlock(level)) }

/** A nested block committed into its parent: so are its hooks (a block rolled back to its savepoint discards them). */
const promoteHooks = (level: Level, parent: Level): void => {
  if (level.hooks !== undefined && level.hooks.length > 0) (parent.hooks ??= []).push(...level.hooks)
}

/** How a nested block ends: RELEASE, or ROLLBACK TO; nothing when the database rolled the transaction back. */
const endNested = <A, E>(level: Level, exit: Exit.Exit<A, E>, parent: Level): Effect.Effect<A, E | Failure> => {
  const { root } = level
  if (root.doomed !== undefined) {
    // The savepoint is gone with the transaction (MySQL would answer ROLLBACK TO with 1305): send nothing.
    level.closed = true
    return failureOf(level, exit) ?? classifyExit(root.dialect, exit)
  }
  if (Exit.isFailure(exit) || level.rollbackOnly) {
    return Effect.flatMap(rollbackToBlock(level), (rolledBack): Exit.Exit<A, E | Failure> =>
      Exit.isFailure(rolledBack)
        ? Exit.failCause(rolledBack.cause)
        : failureOf(level, exit) ?? (Exit.isFailure(exit) ? classifyExit(root.dialect, exit) : exit))
  }
  if (!level.failedStatement) {
    // No RELEASE: the savepoint stays defined until the outermost COMMIT or ROLLBACK (or a ROLLBACK TO an enclosing
    // savepoint) ends it, which is all RELEASE would do here (names are unique, and a released savepoint's work
    // already belonged to the transaction). Saves a round trip per successful block.
    level.closed = true
    promoteHooks(level, parent)
    return exit
  }
  // A statement of the block failed on PostgreSQL: RELEASE says whether the block is still aborted (25P02).
  return Effect.flatMap(releaseBlock(level), (released): Exit.Exit<A, E | Failure> => {
    if (Exit.isFailure(released)) return Exit.failCause(released.cause)
    promoteHooks(level, parent)
    return exit
  })
}

const closeNested = <A, E>(level: Level, exit: Exit.Exit<A, E>): Effect.Effect<A, E | Failure> => {
  const { root } = level
  const parent = level.parent
  const done = () => {
    level.closed = true
    forgetSavepoints(level)
    if (root.entry !== undefined) root.entry.depth = level.handle.depth - 1
    parent?.lock?.release()
  }
  const result = parent === undefined ? finish(level, exit, foreignEnding) : endNested(level, exit, parent)
  // A block that ends with no statement (a success needs no RELEASE) is done at once: no step for the cleanup.
  if (Exit.isExit(result)) {
    done()
    return result
  }
  return Effect.ensuring(result, Effect.sync(done))
}

const close = <A, E>(level: Level, exit: Exit.Exit<A, E>): Effect.Effect<A, E | Failure> =>
  level.savepoint === undefined ? closeRoot(level, exit) : closeNested(level, exit)

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
                  Effect.locallyScopedWith(FiberRef.currentContext, (context) => inTransaction(level, context))
                ),
                Effect.as(level.handle)
              ))
      )
    )
