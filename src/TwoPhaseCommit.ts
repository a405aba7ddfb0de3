/**
 * Atomic commits across databases, through the databases' own two-phase commit: PostgreSQL
 * `PREPARE TRANSACTION` / `COMMIT PREPARED`, MySQL/MariaDB `XA`.
 *
 * ## Design
 *
 * - **Participants.** A participant is a database as the application sees it: a name and the layer (or the built
 *   context) of its own `SqlClient`, with its own `TransactionManager` if it has one (a manager with the defaults
 *   is made otherwise): `TwoPhaseCommit.participant("billing", PgLive)`. The coordinator's layer builds each
 *   participant's layer once, in its own scope: its pools live as long as the coordinator.
 * - **Bodies.** `TwoPhaseCommit.run({ billing: debit, ledger: credit }, options)` runs one effect per participant.
 *   `@effect/sql` 3 keeps one global `TransactionConnection` key, so each body is given its participant's context
 *   only: that participant's `SqlClient` and `TransactionManager`, and `TransactionConnection` set to a connection
 *   reserved from that participant's pool, on which its branch was begun. Any transaction or transaction connection
 *   of the caller is removed from the body's context. A body's statements can therefore only run on its own
 *   participant's connection; a nested `Transaction.atomic` or `sql.withTransaction` inside a body becomes a
 *   savepoint of that branch. Bodies run one after the other (default) or concurrently (`concurrent: true`), each
 *   on its own connection.
 * - **Connections.** A run reserves every branch's connection before its bodies start, in the order of the
 *   coordinator's participants: two runs never hold a connection of one pool while waiting for a pool the other
 *   holds (runs may name their participants in any order). The log is written on one connection that the
 *   coordinator keeps: a decision never waits for a pool that the branches of running transactions may fill.
 *   Two participants should not share one pool (a run would then take two connections of it).
 * - **Phase one.** Each branch is begun as the database wants it: PostgreSQL `BEGIN [ISOLATION LEVEL …]`,
 *   MySQL/MariaDB `[SET TRANSACTION ISOLATION LEVEL …;] XA START 'gid'` (instead of START TRANSACTION). When every
 *   body has succeeded, every branch is prepared instead of committed: `PREPARE TRANSACTION 'gid'`, or
 *   `XA END 'gid'; XA PREPARE 'gid'`. Any failure (a body, a timeout, an interruption, a PREPARE) rolls back every
 *   branch: `ROLLBACK` / `XA END; XA ROLLBACK` for those not prepared, `ROLLBACK PREPARED` / `XA ROLLBACK` for
 *   those prepared.
 * - **Decision.** The commit decision is one row, inserted in autocommit into the coordinator log (a table in the
 *   database of the participant named by `log`, created if missing, on the coordinator's own connection), keyed by
 *   (coordinator id, transaction id).
 *   The first decision written for a transaction wins: the recovery scan, before it presumes a transaction aborted,
 *   inserts an `abort` row under the same key, so that a coordinator that comes back late finds its commit refused
 *   and rolls back instead of committing half of it.
 * - **Phase two.** Every branch is committed (`COMMIT PREPARED` / `XA COMMIT`), on the connection that prepared it
 *   (MariaDB keeps a prepared XA branch attached to its session while the session lives), else on a pooled one.
 *   The decision is final: a branch that fails keeps being retried, in the background once `run` has returned
 *   (`run` succeeds once the decision is logged), and by the recovery scan. When all are committed, the row is
 *   deleted.
 * - **Global ids.** `<prefix>.<coordinatorId>.<transactionId>.<rank>`, the rank being the participant's place in
 *   the configuration (a database may list other participants' branches: `XA RECOVER` lists the whole server's;
 *   each participant's scan keeps its own): at most 64 bytes (XA's gtrid limit; PostgreSQL allows 200). The coordinator id is configured, not generated, so that a new process recovers what
 *   an old one left. The transaction id begins with its start time (base 36 milliseconds).
 * - **Recovery.** The layer scans at start and every `recoveryInterval`: prepared transactions carrying this
 *   coordinator's prefix, older than `recoveryThreshold`, that this process is not running, are committed when the
 *   log holds a commit decision and rolled back otherwise (presumed abort). Finished decisions are deleted.
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type { DialectName } from "./Dialect.js"
import * as internal from "./internal/twophase/coordinator.js"
import type { IsolationLevel } from "./IsolationLevel.js"
import type { Transaction } from "./Transaction.js"
import { type TransactionError, TypeId } from "./TransactionError.js"
import type { TransactionManager } from "./TransactionManager.js"

// ---------------------------------------------------------------------------------------------------------------
// participants

/**
 * A database that takes part in two-phase transactions: a name (stable: it is written in the coordinator log) and
 * where its `SqlClient` (and optionally its `TransactionManager`) come from.
 *
 * @since 0.1.0
 * @category models
 */
export interface Participant<E = never, R = never> {
  readonly _tag: "Participant"
  readonly name: string
  readonly source:
    | Layer.Layer<SqlClient.SqlClient, E, R>
    | Layer.Layer<SqlClient.SqlClient | TransactionManager, E, R>
    | Context.Context<SqlClient.SqlClient>
    | Context.Context<SqlClient.SqlClient | TransactionManager>
}

/**
 * Describes a participant: its name (letters, digits, `_` and `-`, at most 64) and the layer of its `SqlClient`
 * (with its `TransactionManager`, if it needs one configured), or a context holding them already built (to share
 * a pool with the rest of the application). SQLite cannot take part: the coordinator's layer fails with
 * `TwoPhaseUnsupported`.
 *
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { MysqlClient } from "@effect/sql-mysql2"
 * import { Redacted } from "effect"
 * import { TwoPhaseCommit } from "effect-sql-tx"
 *
 * const Billing = TwoPhaseCommit.participant("billing", PgClient.layer({ url: Redacted.make(process.env.PG_URL!) }))
 * const Ledger = TwoPhaseCommit.participant("ledger", MysqlClient.layer({ url: Redacted.make(process.env.MY_URL!) }))
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const participant = <E = never, R = never>(
  name: string,
  source: Participant<E, R>["source"]
): Participant<E, R> => ({ _tag: "Participant", name, source })

// ---------------------------------------------------------------------------------------------------------------
// configuration

/**
 * Where the coordinator stands in the protocol, for `probe`.
 *
 * @since 0.1.0
 * @category models
 */
export type ProbePoint = "prepared-first" | "prepared-all" | "decided" | "committed-first"

/**
 * What hooks receive.
 *
 * @since 0.1.0
 * @category models
 */
export interface TwoPhaseInfo {
  /** The transaction id (part of every branch's global id). */
  readonly id: string
  readonly name: string
  readonly participants: ReadonlyArray<string>
  readonly startedAt: Date
}

/**
 * Hooks run for every two-phase transaction of the coordinator. `beforeCommit` runs after every body succeeded,
 * before PREPARE, outside the branches: its failure rolls every branch back and is the result. `afterCommit` (once
 * the decision is logged) and `afterRollback` run after the outcome; their failures and defects are logged and
 * counted in `two_phase_hook_failures_total`, and never change it.
 *
 * @since 0.1.0
 * @category models
 */
export interface TwoPhaseHooks {
  readonly beforeCommit?: ((info: TwoPhaseInfo) => Effect.Effect<unknown, TransactionError | SqlError>) | undefined
  readonly afterCommit?: ((info: TwoPhaseInfo) => Effect.Effect<unknown, unknown>) | undefined
  readonly afterRollback?: ((info: TwoPhaseInfo) => Effect.Effect<unknown, unknown>) | undefined
}

/**
 * The coordinator's configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface Config<P extends ReadonlyArray<Participant<any, any>>> {
  /**
   * This coordinator's id, stable across restarts (configure it; never generate it): a new process with the same
   * id recovers what an old one left prepared. Letters, digits, `_` and `-`, at most 24. Two processes running at
   * the same time should have different ids.
   */
  readonly coordinatorId: string
  /**
   * The participants: distinct names. Their order is part of the global ids (each branch's ends with its
   * participant's place): keep it across restarts while transactions may be in doubt, and add new ones at the end.
   * A run takes its branches' connections in this order. The log participant's pool needs 2 connections or more
   * (the coordinator keeps one for the log, and lets branches hold at most the others).
   */
  readonly participants: P
  /** The name of the participant whose database keeps the coordinator log. */
  readonly log: string
  /** The log table (created if missing). Default `effect_sql_tx_2pc_log`. */
  readonly logTable?: string | undefined
  /** The first part of every global id. Letters, digits, `_` and `-`, at most 12. Default `etx2pc`. */
  readonly prefix?: string | undefined
  /** How often the recovery scan runs (it also runs when the layer starts). Default 30 seconds. */
  readonly recoveryInterval?: Duration.DurationInput | undefined
  /**
   * A prepared transaction is recovered only once it is older than this (and not run by this process). It must
   * exceed the time from the start of a run (waiting for its connections included) to its decision: a coordinator
   * that is slower than this rolls back instead of committing. Default 1 minute. At 0 every run of the coordinator
   * rolls back: a coordinator meant only to recover.
   */
  readonly recoveryThreshold?: Duration.DurationInput | undefined
  /**
   * How long an `abort` decision is kept in the log (it protects against a late commit). At least
   * `recoveryThreshold`. Default 24 hours.
   */
  readonly abortRetention?: Duration.DurationInput | undefined
  /** Whether the layer runs the recovery scan (at start and periodically). Default `true`. */
  readonly recovery?: boolean | undefined
  readonly hooks?: TwoPhaseHooks | undefined
  /**
   * Called at each point of the protocol (fault injection: the crash tests kill the process here). Not for
   * production use.
   */
  readonly probe?: ((point: ProbePoint, transactionId: string) => Effect.Effect<void>) | undefined
}

/**
 * The options of one two-phase transaction.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunOptions {
  /** A label for metrics, logs and spans, also kept in the log. Default `"two_phase"`. */
  readonly name?: string | undefined
  /**
   * A bound on phase one's first part, the connections' reservation and the bodies (not on PREPARE or COMMIT): when
   * it expires every branch rolls back. A wait for a pool's connection is not cut short (the pools leak an
   * interrupted one): it ends at the pool's own connect timeout.
   */
  readonly timeout?: Duration.DurationInput | undefined
  /** One isolation level for every branch, or one per participant name. */
  readonly isolation?:
    | IsolationLevel
    | { readonly [participant: string]: IsolationLevel | undefined }
    | undefined
  /** Run the bodies concurrently (each on its own connection). Default `false`: one after the other. */
  readonly concurrent?: boolean | undefined
  /**
   * Hooks of this transaction, run after the coordinator's. (`Transaction.afterCommit` and the like, registered
   * inside a body, belong to that body's branch: they would run when the branch's block ends, before the
   * two-phase outcome is known. Register outcome hooks here.)
   */
  readonly hooks?: TwoPhaseHooks | undefined
}

// ---------------------------------------------------------------------------------------------------------------
// errors

/**
 * A participant whose database has no two-phase commit this library can drive (SQLite, SQL Server).
 *
 * @since 0.1.0
 * @category errors
 */
export class TwoPhaseUnsupported extends Data.TaggedError("TwoPhaseUnsupported")<{
  readonly participant: string
  readonly dialect: DialectName | "mssql" | "unknown"
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Participant "${this.participant}" (${this.dialect}) cannot take part in a two-phase commit: ` +
      "only PostgreSQL and MySQL/MariaDB (XA) can"
  }
}

/**
 * PostgreSQL refuses prepared transactions: `max_prepared_transactions` is 0 (its default).
 *
 * @since 0.1.0
 * @category errors
 */
export class PreparedTransactionsDisabled extends Data.TaggedError("PreparedTransactionsDisabled")<{
  readonly participant: string
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Participant "${this.participant}": PostgreSQL has max_prepared_transactions = 0, so it cannot prepare ` +
      "transactions. Set it to at least the number of two-phase transactions that may run at once (for example " +
      "`ALTER SYSTEM SET max_prepared_transactions = 64`, or in postgresql.conf) and restart the server."
  }
}

/**
 * The database refused a statement or a PREPARE because two-phase commit forbids it: PostgreSQL cannot prepare a
 * transaction that used temporary objects or ran `LISTEN`/`UNLISTEN`/`NOTIFY`; MySQL/MariaDB refuses statements
 * that commit implicitly (DDL, `LOCK TABLES`, `COMMIT`…) inside an XA branch. Every branch was rolled back.
 *
 * @since 0.1.0
 * @category errors
 */
export class TwoPhaseForbidden extends Data.TaggedError("TwoPhaseForbidden")<{
  readonly participant: string
  readonly dialect: DialectName
  readonly code: string
  readonly reason: string
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Participant "${this.participant}" (${this.dialect} ${this.code}): ${this.reason}`
  }
}

/**
 * A participant's PREPARE failed for another reason (the branch had been aborted by an earlier error, the
 * connection was lost…). Every branch was rolled back (or will be, by the recovery scan).
 *
 * @since 0.1.0
 * @category errors
 */
export class PrepareFailed extends Data.TaggedError("PrepareFailed")<{
  readonly participant: string
  readonly dialect: DialectName
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    const cause = this.cause as { readonly message?: unknown } | undefined
    return `PREPARE of participant "${this.participant}" (${this.dialect}) failed` +
      (typeof cause?.message === "string" ? `: ${cause.message}` : "")
  }
}

/**
 * The transaction was decided aborted before this coordinator could log its commit: it took longer than the
 * recovery threshold from its start, or a recovery scan presumed it aborted. Every branch was rolled back, so running it again is safe; `withRetry` does not (the cause is rarely
 * transient): `Effect.retry` with `while: (e) => e._tag === "TwoPhaseAborted"` does.
 *
 * @since 0.1.0
 * @category errors
 */
export class TwoPhaseAborted extends Data.TaggedError("TwoPhaseAborted")<{
  readonly transactionId: string
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Two-phase transaction ${this.transactionId} was rolled back: ${this.reason}`
  }
}

/**
 * The decision could not be written nor read back (or was finished and deleted by a recovery scan before it could
 * be read): the recovery scan commits or rolls back every branch still prepared, all one way, whichever the log
 * says (presumed abort when it holds nothing). Check the outcome before running it again; never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class TwoPhaseOutcomeUnknown extends Data.TaggedError("TwoPhaseOutcomeUnknown")<{
  readonly transactionId: string
  readonly cause: unknown
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `The outcome of two-phase transaction ${this.transactionId} is not known yet: the decision could not be ` +
      "logged; the recovery scan will finish it (all committed or all rolled back)"
  }
}

/**
 * A body named a participant that the coordinator does not have, or the configuration is invalid.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidTwoPhaseConfig extends Data.TaggedError("InvalidTwoPhaseConfig")<{
  readonly option: string
  readonly value: unknown
  readonly reason: string
}> {
  /**
   * @since 0.1.0
   */
  readonly [TypeId]: TypeId = TypeId
  override get message(): string {
    return `Invalid two-phase commit ${this.option} (${String(this.value)}): ${this.reason}`
  }
}

/**
 * The errors of this module.
 *
 * @since 0.1.0
 * @category errors
 */
export type TwoPhaseCommitError =
  | TwoPhaseUnsupported
  | PreparedTransactionsDisabled
  | TwoPhaseForbidden
  | PrepareFailed
  | TwoPhaseAborted
  | TwoPhaseOutcomeUnknown
  | InvalidTwoPhaseConfig

// ---------------------------------------------------------------------------------------------------------------
// the service

/**
 * A prepared transaction of this coordinator that is waiting for its second phase, as `inDoubt` lists it.
 *
 * @since 0.1.0
 * @category models
 */
export interface InDoubtTransaction {
  readonly participant: string
  readonly gid: string
  readonly transactionId: string
  /** Seconds since it was prepared (PostgreSQL) or since its transaction began (XA). */
  readonly ageSeconds: number
  /** What the log says: `commit`, `abort`, or `none` (presumed abort once older than the threshold). */
  readonly decision: "commit" | "abort" | "none"
  /** Whether this process is running it now (the scan leaves it alone). */
  readonly running: boolean
}

/**
 * What one recovery scan did.
 *
 * @since 0.1.0
 * @category models
 */
export interface RecoveryReport {
  /** Prepared transactions older than the threshold, not run by this process. */
  readonly found: number
  readonly committed: number
  readonly rolledBack: number
  /** Those that could not be finished in this scan (they stay in doubt until a later one). */
  readonly failed: number
  /** Decisions deleted from the log (all their branches finished). */
  readonly forgotten: number
}

/**
 * The result of `run`: each body's value under its participant's name.
 *
 * @since 0.1.0
 * @category models
 */
export type Results<B extends Record<string, Effect.Effect<any, any, any>>> = {
  -readonly [K in keyof B]: Effect.Effect.Success<B[K]>
}

/**
 * What a body may require that its participant provides.
 *
 * @since 0.1.0
 * @category models
 */
export type Provided = SqlClient.SqlClient | TransactionManager

/**
 * What a body's requirement of `Transaction` becomes in the requirements of `run`: a service nobody provides, so
 * that such a program does not compile. A body runs in a branch of its own, outside any transaction of the caller
 * (which is removed from its context); inside a body, `Transaction.atomic` makes a savepoint of the branch.
 *
 * @since 0.1.0
 * @category models
 */
export interface BodyCannotRequireTransaction {
  readonly "a two-phase body runs in its own branch: it cannot require Transaction": unique symbol
}

/**
 * The requirements of `run` for its bodies: theirs, less what the participants provide (`Transaction` refused).
 *
 * @since 0.1.0
 * @category models
 */
export type BodiesContext<B extends Record<string, Effect.Effect<any, any, any>>> =
  | Exclude<Effect.Effect.Context<B[keyof B]>, Provided | Transaction>
  | ([Extract<Effect.Effect.Context<B[keyof B]>, Transaction>] extends [never] ? never : BodyCannotRequireTransaction)

/**
 * The coordinator service: its participants, and {@link run}, {@link recover} and {@link inDoubt} bound to them.
 *
 * @since 0.1.0
 * @category models
 */
export interface Coordinator {
  readonly coordinatorId: string
  /** The participants' names. */
  readonly participants: ReadonlyArray<string>
  /** See {@link run}. */
  readonly run: <const B extends Record<string, Effect.Effect<any, any, any>>>(
    bodies: B,
    options?: RunOptions
  ) => Effect.Effect<
    Results<B>,
    Effect.Effect.Error<B[keyof B]> | TwoPhaseCommitError | TransactionError | SqlError,
    BodiesContext<B>
  >
  /** See {@link recover}. */
  readonly recover: Effect.Effect<RecoveryReport>
  /** See {@link inDoubt}. */
  readonly inDoubt: Effect.Effect<ReadonlyArray<InDoubtTransaction>, SqlError>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const Coordinator: Context.Tag<Coordinator, Coordinator> = Context.GenericTag<Coordinator>(
  "effect-sql-tx/TwoPhaseCommit/Coordinator"
)

/**
 * Builds a coordinator in the current scope: builds each participant's layer, checks that each database can
 * prepare transactions, creates the log table if missing, and (unless `recovery: false`) runs the recovery scan
 * now and every `recoveryInterval` while the scope lives.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <const P extends ReadonlyArray<Participant<any, any>>>(
  config: Config<P>
) => Effect.Effect<
  Coordinator,
  | TwoPhaseUnsupported
  | PreparedTransactionsDisabled
  | InvalidTwoPhaseConfig
  | SqlError
  | ErrorOf<P[number]>,
  import("effect/Scope").Scope | ContextOf<P[number]>
> = internal.make as any

/**
 * The error type of a participant's layer.
 *
 * @since 0.1.0
 * @category models
 */
export type ErrorOf<P> = P extends Participant<infer E, any> ? E : never

/**
 * The requirements of a participant's layer.
 *
 * @since 0.1.0
 * @category models
 */
export type ContextOf<P> = P extends Participant<any, infer R> ? R : never

/**
 * The coordinator as a layer.
 *
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { MysqlClient } from "@effect/sql-mysql2"
 * import { Redacted } from "effect"
 * import { TwoPhaseCommit } from "effect-sql-tx"
 *
 * const CoordinatorLive = TwoPhaseCommit.layer({
 *   coordinatorId: "billing-1",
 *   participants: [
 *     TwoPhaseCommit.participant("billing", PgClient.layer({ url: Redacted.make(process.env.PG_URL!) })),
 *     TwoPhaseCommit.participant("ledger", MysqlClient.layer({ url: Redacted.make(process.env.MY_URL!) }))
 *   ],
 *   log: "billing"
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <const P extends ReadonlyArray<Participant<any, any>>>(
  config: Config<P>
): Layer.Layer<
  Coordinator,
  TwoPhaseUnsupported | PreparedTransactionsDisabled | InvalidTwoPhaseConfig | SqlError | ErrorOf<P[number]>,
  ContextOf<P[number]>
> => Layer.scoped(Coordinator, make(config))

/**
 * Runs one effect per participant, each in a branch of one two-phase transaction on its own connection, and
 * commits all of them or none. Each body sees only its participant's `SqlClient` and `TransactionManager`. Body
 * errors roll every branch back and are the result (classified, as with `Transaction.atomic`); so do PREPARE
 * failures (`TwoPhaseForbidden`, `PrepareFailed`). Once the commit decision is logged the result is success, even
 * if a branch's COMMIT PREPARED has to be retried in the background.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { SqlClient } from "@effect/sql"
 * import { TwoPhaseCommit } from "effect-sql-tx"
 *
 * const transfer = (id: string, amount: number) =>
 *   TwoPhaseCommit.run({
 *     billing: Effect.flatMap(SqlClient.SqlClient, (sql) =>
 *       sql`UPDATE accounts SET balance = balance - ${amount} WHERE id = 1`),
 *     ledger: Effect.flatMap(SqlClient.SqlClient, (sql) =>
 *       sql`INSERT INTO credits (transfer, amount) VALUES (${id}, ${amount})`)
 *   }, { name: "transfer", timeout: "5 seconds", isolation: { billing: "serializable" } })
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const run = <const B extends Record<string, Effect.Effect<any, any, any>>>(
  bodies: B,
  options?: RunOptions
): Effect.Effect<
  Results<B>,
  Effect.Effect.Error<B[keyof B]> | TwoPhaseCommitError | TransactionError | SqlError,
  BodiesContext<B> | Coordinator
> => Effect.flatMap(Coordinator, (coordinator) => coordinator.run(bodies, options))

/**
 * Runs one recovery scan now (the layer runs one at start and every `recoveryInterval`).
 *
 * @since 0.1.0
 * @category recovery
 */
export const recover: Effect.Effect<RecoveryReport, never, Coordinator> = Effect.flatMap(
  Coordinator,
  (coordinator) => coordinator.recover
)

/**
 * The prepared transactions of this coordinator waiting for their second phase, on every participant, with what
 * the log says of each: for a dashboard, or an operator.
 *
 * @since 0.1.0
 * @category recovery
 */
export const inDoubt: Effect.Effect<ReadonlyArray<InDoubtTransaction>, SqlError, Coordinator> = Effect.flatMap(
  Coordinator,
  (coordinator) => coordinator.inDoubt
)
