/**
 * The state of a running transaction: its root (one connection) and its blocks, and what every part of the
 * lifecycle shares about them.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as Tracer from "effect/Tracer"
import type { Dialect } from "../Dialect.js"
import type { Savepoint, Transaction } from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import { TransactionManager } from "../TransactionManager.js"
import type { RetryAttempt } from "./context.js"
import type { BlockConnection } from "./guard.js"
import * as Hooks from "./hooks.js"
import { BlockLock } from "./lock.js"
import * as Metrics from "./metrics.js"
import type { ActiveEntry } from "./registry.js"

/** @internal The state shared by all levels of one transaction (one connection). */
export interface Root {
  readonly manager: TransactionManager
  readonly dialect: Dialect
  readonly conn: Connection
  /** The scope holding the reserved connection; `undefined` when joined to a foreign `sql.withTransaction`. */
  readonly connScope: Scope.CloseableScope | undefined
  /**
   * The names of the manual savepoints in use on the connection, made on first use (generated names are unique by
   * construction).
   */
  liveSavepoints: Set<string> | undefined
  savepointCounter: number
  /**
   * The error after which the database had rolled the whole transaction back (a MySQL deadlock, a lost
   * connection, an error at depth 0 on PostgreSQL), or a savepoint could not be rolled back: no statement is sent
   * any more, and the transaction ends with it.
   */
  doomed: SqlError | undefined
  /** PostgreSQL: the last error of the server, which aborted the transaction or a savepoint (see `guard.ts`). */
  lastError: SqlError | undefined
  /** Set when COMMIT or ROLLBACK is about to be sent: statements still waiting to be sent fail with it. */
  closed: (() => SqlError) | undefined
  /** The connection statements are sent on (see `Dialect.statements`); `conn` is the driver's own. */
  statements: Connection
  /** Whether the connection went back to the pool (or was destroyed): the guard of every exit checks it. */
  released: boolean
  /** The metrics of the transaction's name. */
  readonly recorder: Metrics.Recorder
  /** The transaction's span (one per attempt); `undefined` when joined to a foreign transaction. */
  readonly span: Tracer.Span | undefined
  /** The entry of the manager's registry of active transactions. */
  readonly entry: ActiveEntry | undefined
  /** The `withRetry` attempt running the transaction, if any. */
  readonly retry: RetryAttempt | undefined
  /** When the transaction started, on the manager's clock, for its duration. */
  readonly startNanos: bigint
  /** How the transaction ended, for the duration histogram. */
  outcome: Metrics.Outcome
  budgetReported: boolean
}

/**
 * @internal
 * A transaction's root, made with `new` rather than as an object literal: V8 tracks the survival of literals by
 * allocation site and, once most of a site's objects outlive a scavenge, allocates them in the old generation
 * ("pretenuring"). A root outlives scavenges while its transaction runs; once pretenured, every dead root kept its
 * span, statements and strings alive until the next full GC, and those were promoted in turn: measured with
 * `bench/profile.ts --survivors`, 6 KB per transaction promoted instead of 0.8 KB. An instance of a class made by
 * `new` has no allocation site of its own; it is born old only when optimized code allocates it together with a
 * pretenured literal (the block's guard was, beside the block's literal: see `Block` in lifecycle.ts). `new Array()`
 * does have one, and was pretenured.
 */
export class TransactionRoot implements Root {
  readonly dialect: Dialect
  liveSavepoints: Set<string> | undefined = undefined
  savepointCounter = 0
  doomed: SqlError | undefined = undefined
  lastError: SqlError | undefined = undefined
  closed: (() => SqlError) | undefined = undefined
  statements: Connection
  released = false
  outcome: Metrics.Outcome = "rolled_back"
  budgetReported = false
  constructor(
    readonly manager: TransactionManager,
    readonly conn: Connection,
    readonly connScope: Scope.CloseableScope | undefined,
    readonly recorder: Metrics.Recorder,
    readonly span: Tracer.Span | undefined,
    readonly entry: ActiveEntry | undefined,
    readonly retry: RetryAttempt | undefined,
    readonly startNanos: bigint
  ) {
    this.dialect = manager.dialect
    this.statements = this.dialect.statements(conn, this)
  }
}

/** @internal One block: the outermost transaction or a savepoint. */
export interface Level {
  readonly root: Root
  readonly parent: Level | undefined
  readonly handle: Transaction
  /** The block's savepoint, `undefined` for the outermost transaction. */
  readonly savepoint: string | undefined
  /** The manual savepoints of this block, oldest first; made on first use (most blocks have none). */
  manual: Array<ManualSavepoint> | undefined
  /** The guard its body's statements go through. */
  readonly connection: BlockConnection
  /** Set when the block's ending statement is about to run: its guards refuse statements from then on. */
  closed: boolean
  /** Serializes the nested blocks and manual savepoint operations of this block; made on first use. */
  lock: BlockLock | undefined
  rollbackOnly: boolean
  /**
   * Whether a statement of this block failed on a database where an error aborts the block (PostgreSQL): its
   * RELEASE then tells whether the block recovered (a manual or nested savepoint rolled back to) or ends aborted.
   */
  failedStatement: boolean
  /**
   * Hooks registered in this block (and promoted from its committed nested blocks), in order; made on first use
   * (most blocks have none).
   */
  hooks: Array<Hooks.Hook> | undefined
}

/** @internal A manual savepoint, and how many hooks its block had when it was made. */
export interface ManualSavepoint {
  readonly savepoint: Savepoint
  readonly hooks: number
}

/** @internal Where a handle keeps its block (a symbol: not part of the public `Transaction`). */
export const LevelKey: unique symbol = Symbol.for("effect-sql-tx/Level")

/** @internal */
export interface HandleWithLevel extends Transaction {
  readonly [LevelKey]: Level
}

/** @internal */
export const levelOf = (handle: Transaction): Level => (handle as HandleWithLevel)[LevelKey]

/**
 * @internal
 * Registers a hook on the block of a handle; refused once the block (or an enclosing one) has ended: it would never
 * run.
 */
export const registerHook = (
  handle: Transaction,
  hook: Hooks.Hook
): Effect.Effect<void, TransactionError.TransactionClosed> => {
  const level = levelOf(handle)
  const closed = closedError(level, "hook")
  if (closed !== undefined) return Effect.fail(closed)
  ;(level.hooks ??= []).push(hook)
  return Effect.void
}

/** @internal Whether a block or an enclosing one has ended: the error for an operation refused because of it. */
export const closedError = (
  level: Level,
  operation: TransactionError.TransactionClosed["operation"]
): TransactionError.TransactionClosed | undefined => {
  for (let block: Level | undefined = level; block !== undefined; block = block.parent) {
    if (block.closed) {
      return new TransactionError.TransactionClosed({
        transactionId: block.handle.id,
        name: block.handle.name,
        operation
      })
    }
  }
  return undefined
}

/** @internal */
export const lockOf = (level: Level): BlockLock => level.lock ??= new BlockLock()

/** @internal */
export type Failure = TransactionError.TransactionError | SqlError

/** @internal */
export const classifyError = <E>(
  dialect: Dialect,
  error: E
): E | TransactionError.DatabaseError | TransactionError.TransactionClosed =>
  TransactionError.isSqlError(error) ? TransactionError.classify(error, dialect) as E : error

/** @internal */
export const classifyExit = <A, E>(dialect: Dialect, exit: Exit.Exit<A, E>) =>
  Exit.mapError(exit, (error) => classifyError(dialect, error))

/** @internal */
export const nextSavepointName = (root: Root): string => `effect_sql_tx_${++root.savepointCounter}`

/**
 * @internal
 * Counts a savepoint about to be made. PostgreSQL keeps 64 subtransactions per backend in shared memory; past
 * that, snapshot checks of the whole server fall back to pg_subtrans: report it once, or refuse (configurable).
 * Returns what must run before the savepoint is made, if anything: a plain call in the common case (every nested
 * block makes one).
 */
export const noteSavepoint = (root: Root): Effect.Effect<void, TransactionError.SavepointError> | undefined => {
  root.recorder.savepoint()
  root.span?.event("db.transaction.savepoint", root.manager.clock.unsafeCurrentTimeNanos())
  const limit = root.dialect.subtransactionCache
  if (limit === undefined || root.savepointCounter < limit) return undefined
  if (root.manager.failOnSavepointBudget) {
    return Effect.fail(
      new TransactionError.SavepointError({
        savepoint: `#${root.savepointCounter + 1}`,
        reason: `more than ${limit} savepoints in one transaction (PostgreSQL's subtransaction cache)`
      })
    )
  }
  if (root.budgetReported) return undefined
  root.budgetReported = true
  root.recorder.savepointBudgetExceeded()
  return Effect.logWarning(
    `effect-sql-tx: more than ${limit} savepoints in one transaction; past PostgreSQL's subtransaction cache the ` +
      "whole server slows down"
  ).pipe(Effect.annotateLogs({ transaction: root.entry?.name ?? "", id: root.entry?.id ?? "" }))
}

/** @internal {@link noteSavepoint} as an effect. */
export const countSavepoint = (root: Root): Effect.Effect<void, TransactionError.SavepointError> =>
  Effect.suspend(() => noteSavepoint(root) ?? Effect.void)
