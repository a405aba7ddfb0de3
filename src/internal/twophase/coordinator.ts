/**
 * The coordinator of two-phase transactions: participants, phase one (bodies and PREPARE), the decision in the
 * log, phase two, and the recovery scan. See the design notes at the top of `TwoPhaseCommit.ts`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberRef from "effect/FiberRef"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import type { Dialect, Fate } from "../../Dialect.js"
import * as IsolationLevel from "../../IsolationLevel.js"
import * as TransactionError from "../../TransactionError.js"
import * as TransactionManager from "../../TransactionManager.js"
import type * as TwoPhaseCommit from "../../TwoPhaseCommit.js"
import {
  InvalidTwoPhaseConfig,
  PreparedTransactionsDisabled,
  PrepareFailed,
  TwoPhaseAborted,
  TwoPhaseForbidden,
  TwoPhaseOutcomeUnknown,
  TwoPhaseUnsupported
} from "../../TwoPhaseCommit.js"
import { afterRollbackHooks, currentRetryAttempt, noteEnded, withoutTransaction } from "../context.js"
import { property } from "../dialect/common.js"
import { checkDuration } from "../options.js"
import * as Metrics from "./metrics.js"
import * as Protocol from "./protocol.js"

// ---------------------------------------------------------------------------------------------------------------
// participants

interface Member {
  readonly name: string
  /**
   * Its place among the coordinator's participants: branches are opened in this order (two transactions never
   * wait for each other's pools), and it ends the gids of its branches (a scan keeps only its own).
   */
  readonly rank: number
  readonly context: Context.Context<SqlClient.SqlClient | TransactionManager.TransactionManager>
  readonly sql: SqlClient.SqlClient
  readonly dialect: Dialect
  readonly protocol: Protocol.Protocol
}

const identifier = /^[A-Za-z0-9_-]+$/

const invalid = (option: string, value: unknown, reason: string) => new InvalidTwoPhaseConfig({ option, value, reason })

/** Builds a participant's context, finds its database, and checks that the database can prepare transactions. */
const member = (
  participant: TwoPhaseCommit.Participant<any, any>,
  rank: number
): Effect.Effect<Member, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const built = Context.isContext(participant.source)
      ? participant.source as Context.Context<SqlClient.SqlClient>
      : yield* (Layer.build(participant.source as Layer.Layer<SqlClient.SqlClient, unknown>) as Effect.Effect<
        Context.Context<SqlClient.SqlClient>,
        unknown,
        Scope.Scope
      >)
    const sql = Context.get(built, SqlClient.SqlClient)
    const dialectName = sql.onDialectOrElse({
      pg: () => "pg" as const,
      mysql: () => "mysql" as const,
      sqlite: () => "sqlite" as const,
      mssql: () => "mssql" as const,
      orElse: () => "unknown" as const
    })
    if (dialectName !== "pg" && dialectName !== "mysql") {
      return yield* new TwoPhaseUnsupported({ participant: participant.name, dialect: dialectName })
    }
    const existing = Context.getOption(built, TransactionManager.TransactionManager)
    const manager = Option.isSome(existing)
      ? existing.value
      : yield* Effect.provideService(TransactionManager.make(), SqlClient.SqlClient, sql)
    const protocol = dialectName === "pg" ? Protocol.pg : Protocol.mysql
    if (dialectName === "mysql") {
      const [row] = yield* outside(sql<{ version: string }>`SELECT VERSION() AS version`)
      const version = String(row?.version ?? "")
      const [major, minor] = version.split(".").map(Number)
      const mariadb = /mariadb/i.test(version)
      // Before MariaDB 10.5 (and MySQL 5.7.7), a prepared XA branch was rolled back when its session ended.
      if (mariadb ? major! * 100 + minor! < 1005 : major! * 100 + minor! < 507) {
        yield* Effect.logWarning(
          "effect-sql-tx: this server rolls back prepared XA transactions when their session ends: " +
            "two-phase commit needs MariaDB 10.5 or later (MySQL 5.7.7 or later) to survive a coordinator crash"
        ).pipe(Effect.annotateLogs({ participant: participant.name, version }))
      }
    }
    if (dialectName === "pg") {
      const rows = yield* outside(sql<{ max_prepared_transactions: string }>`SHOW max_prepared_transactions`)
      if (Number(rows[0]?.max_prepared_transactions) === 0) {
        return yield* new PreparedTransactionsDisabled({ participant: participant.name, cause: undefined })
      }
    }
    return {
      name: participant.name,
      rank,
      context: Context.add(
        Context.add(built, SqlClient.SqlClient, sql),
        TransactionManager.TransactionManager,
        manager
      ),
      sql,
      dialect: manager.dialect,
      protocol
    }
  })

/** Runs an effect with no transaction of the caller in its context: its statements take pooled connections. */
const outside = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(effect, (context: Context.Context<R>) => withoutTransaction(context))

// ---------------------------------------------------------------------------------------------------------------
// the log

type Decision = "commit" | "abort"

/**
 * The coordinator log: a table of the log participant, written on one connection that the coordinator keeps. A
 * decision must never wait for a pooled connection: the branches of the transactions running at that moment may
 * hold every connection of that pool, each waiting for its own decision (a deadlock). Statements on it are
 * serialized (a decision is one short INSERT).
 */
interface Log {
  readonly member: Member
  readonly table: string
  readonly lock: Effect.Semaphore
  conn: Connection | undefined
  connScope: Scope.CloseableScope | undefined
  /** The coordinator's scope has closed: its connection is back in the pool, and no statement may use it. */
  closed: boolean
}

/** Drops the log's connection (destroyed: its state is unknown); the next statement reserves another. */
const dropLogConnection = (log: Log): Effect.Effect<void> =>
  Effect.suspend(() => {
    const { conn, connScope } = log
    log.conn = undefined
    log.connScope = undefined
    if (conn === undefined || connScope === undefined) return Effect.void
    return Effect.zipRight(Effect.ignore(log.member.dialect.destroy(conn)), Scope.close(connScope, Exit.void))
  })

/**
 * Runs statements of the log's client on the log's own connection, one caller at a time, uninterruptibly (they are
 * short, and an interrupted statement would leave the connection in an unknown state). A failure other than the
 * database's answer (a lost connection) drops the connection.
 */
const onLog = <A>(log: Log, statements: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> =>
  Effect.uninterruptible(
    log.lock.withPermits(1)(Effect.gen(function*() {
      if (log.closed) {
        return yield* new SqlError({
          cause: new Error("the two-phase coordinator's scope has closed"),
          message: "Two-phase coordinator closed"
        })
      }
      if (log.conn === undefined) {
        // A scope of its own, closed when the connection is dropped or the coordinator closes (`closeLog`).
        const scope = yield* Scope.make()
        log.conn = yield* Effect.onError(
          Effect.provideService(log.member.sql.reserve, Scope.Scope, scope),
          () => Scope.close(scope, Exit.void)
        )
        log.connScope = scope
      }
      const conn = log.conn
      return yield* Effect.mapInputContext(
        statements,
        (context: Context.Context<never>) =>
          Context.add(withoutTransaction(context), SqlClient.TransactionConnection, [conn, 0] as const)
      ).pipe(
        Effect.tapErrorCause((cause) => {
          const error = Cause.failureOption(cause)
          const lost = Option.isNone(error) ||
            TransactionError.classify(error.value, log.member.dialect)._tag === "ConnectionLost"
          return lost ? dropLogConnection(log) : Effect.void
        })
      )
    }))
  )

/** Gives the log's connection back when the coordinator closes, once any statement on it has ended. */
const closeLog = (log: Log): Effect.Effect<void> =>
  Effect.uninterruptible(
    log.lock.withPermits(1)(Effect.suspend(() => {
      log.closed = true
      const scope = log.connScope
      log.conn = undefined
      log.connScope = undefined
      return scope === undefined ? Effect.void : Scope.close(scope, Exit.void)
    }))
  )

const isDuplicate = (error: unknown): boolean => {
  const cause = property(error, "cause")
  const code = property(cause, "code")
  return code === "23505" || property(cause, "errno") === 1062 ||
    (typeof code === "string" && code.startsWith("SQLITE_CONSTRAINT"))
}

const createLog = (log: Log): Effect.Effect<void, SqlError> => {
  const { member: { sql }, table } = log
  const create = sql`CREATE TABLE IF NOT EXISTS ${sql(table)} (
    coordinator VARCHAR(64) NOT NULL,
    txid VARCHAR(64) NOT NULL,
    decision VARCHAR(8) NOT NULL,
    name VARCHAR(200) NOT NULL,
    participants VARCHAR(2000) NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (coordinator, txid)
  )`
  // Two processes creating the table at once: PostgreSQL may answer one with a unique violation on its catalog.
  return onLog(log, Effect.asVoid(Effect.retry(create, { times: 2, while: isDuplicate })))
}

/**
 * Inserts a decision; succeeds with the decision that holds: the one inserted, the one found, or `"vanished"` when
 * another decision was there but was deleted before it could be read (the transaction was finished by a recovery
 * scan, with that decision).
 */
const decide = (
  log: Log,
  coordinatorId: string,
  txid: string,
  decision: Decision,
  name: string,
  participants: ReadonlyArray<string>
): Effect.Effect<Decision | "vanished", SqlError> => {
  const { member: { sql }, table } = log
  const insert = sql`INSERT INTO ${sql(table)} (coordinator, txid, decision, name, participants, decided_at)
    VALUES (${coordinatorId}, ${txid}, ${decision}, ${name}, ${participants.join(",")}, ${Date.now()})`
  return Effect.catchIf(
    onLog(log, Effect.as(insert, decision)),
    isDuplicate,
    () => Effect.map(readDecision(log, coordinatorId, txid), (found) => found ?? "vanished")
  )
}

const readDecision = (log: Log, coordinatorId: string, txid: string): Effect.Effect<Decision | undefined, SqlError> => {
  const { member: { sql }, table } = log
  return onLog(
    log,
    Effect.map(
      sql<{ decision: string }>`SELECT decision FROM ${sql(table)}
        WHERE coordinator = ${coordinatorId} AND txid = ${txid}`,
      (rows) => rows.length === 0 ? undefined : rows[0]!.decision === "commit" ? "commit" : "abort"
    )
  )
}

interface LogRow {
  readonly txid: string
  readonly decision: string
  readonly participants: string
  readonly decided_at: number | string
}

const readLog = (log: Log, coordinatorId: string): Effect.Effect<ReadonlyArray<LogRow>, SqlError> => {
  const { member: { sql }, table } = log
  return onLog(
    log,
    sql<LogRow>`SELECT txid, decision, participants, decided_at FROM ${sql(table)}
      WHERE coordinator = ${coordinatorId}`
  )
}

const forget = (log: Log, coordinatorId: string, txid: string): Effect.Effect<void, SqlError> => {
  const { member: { sql }, table } = log
  return onLog(
    log,
    Effect.asVoid(sql`DELETE FROM ${sql(table)} WHERE coordinator = ${coordinatorId} AND txid = ${txid}`)
  )
}

// ---------------------------------------------------------------------------------------------------------------
// ids

/** A transaction id: its start time (base 36 milliseconds, 9 characters) and 8 random characters. */
const makeTxid = (now: number): string => {
  let random = ""
  while (random.length < 8) random += Math.random().toString(36).slice(2)
  return now.toString(36).padStart(9, "0") + random.slice(0, 8)
}

/** The start time of a transaction id, in milliseconds. */
const txidTime = (txid: string): number => parseInt(txid.slice(0, 9), 36)

/**
 * The transaction id and the participant's rank of a gid of this coordinator (`<prefix>.<coordinator>.<txid>.<rank>`).
 * A database may list the branches of other participants too (XA RECOVER lists the whole server's): a scan keeps
 * those of its participant's rank.
 */
const parseGid = (stem: string, gid: string): { readonly txid: string; readonly rank: string } | undefined => {
  if (!gid.startsWith(stem)) return undefined
  const rest = gid.slice(stem.length).split(".")
  return rest.length === 2 && rest[0]!.length > 0 ? { txid: rest[0]!, rank: rest[1]! } : undefined
}

// ---------------------------------------------------------------------------------------------------------------
// branches

type BranchState = "idle" | "active" | "preparing" | "prepared" | "finished"

interface Branch {
  readonly member: Member
  readonly key: string
  readonly gid: string
  readonly isolation: IsolationLevel.IsolationLevel | undefined
  readonly scope: Scope.CloseableScope
  conn: Connection | undefined
  readonly fate: Fate
  state: BranchState
  /** The connection must not go back to the pool (its state is unknown, or a prepared XA branch is attached). */
  destroy: boolean
  /** The log participant's gate (its branches may hold all of its pool but one connection, the log's). */
  readonly gate: Effect.Semaphore | undefined
  holdsGate: boolean
}

/** Sends SQL on a branch's own connection (PostgreSQL: the raw result, with its command tag). */
const send = (branch: Branch, text: string): Effect.Effect<unknown, SqlError> =>
  branch.member.protocol.name === "pg"
    ? branch.conn!.executeRaw(text, [])
    : branch.conn!.executeUnprepared(text, [], undefined)

/** Sends SQL on a pooled connection of the participant. */
const sendPooled = (member: Member, text: string): Effect.Effect<unknown, SqlError> =>
  outside(member.sql.unsafe(text).unprepared)

const closedError = () =>
  new SqlError({ cause: new Error("the two-phase branch has ended"), message: "Two-phase branch closed" })

/** Reserves the branch's connection (uninterruptibly: the pools leak a connection whose wait is interrupted). */
const open = (branch: Branch): Effect.Effect<void, unknown> =>
  Effect.uninterruptible(Effect.gen(function*() {
    if (branch.gate !== undefined) {
      yield* branch.gate.take(1)
      branch.holdsGate = true
    }
    const conn = yield* Effect.mapError(
      Effect.provideService(branch.member.sql.reserve, Scope.Scope, branch.scope),
      (error) => TransactionError.classify(error, branch.member.dialect)
    )
    branch.conn = conn
    branch.state = "active"
    yield* Effect.mapError(
      send(branch, branch.member.protocol.begin(branch.gid, branch.isolation)),
      (error) => classifyFor(branch, error)
    )
  }))

const classifyFor = (branch: Branch, error: SqlError) => {
  const forbidden = branch.member.protocol.forbidden(error.cause)
  if (forbidden !== undefined) {
    return new TwoPhaseForbidden({
      participant: branch.member.name,
      dialect: branch.member.protocol.name,
      code: forbidden.code,
      reason: forbidden.reason,
      cause: error
    })
  }
  return TransactionError.classify(error, branch.member.dialect)
}

/** Runs a body on its branch, with its participant's context only. */
const runBody = <A, E, R>(
  branch: Branch,
  body: Effect.Effect<A, E, R>
): Effect.Effect<A, unknown, unknown> => {
  const statements = branch.member.dialect.statements(branch.conn!, branch.fate)
  return Effect.mapInputContext(body, (outer: Context.Context<unknown>) =>
    Context.add(
      Context.merge(withoutTransaction(outer), branch.member.context),
      SqlClient.TransactionConnection,
      [statements, 0] as const
    ) as Context.Context<R>).pipe(
      Effect.mapError((error) => TransactionError.isSqlError(error) ? classifyFor(branch, error) : error),
      Effect.flatMap((value) =>
        Effect.suspend(() => {
          // A statement failed in a way that ended the branch on the server (a MySQL deadlock), and the body went on.
          const doomed = branch.fate.doomed
          return doomed === undefined ? Effect.succeed(value) : Effect.fail(classifyFor(branch, doomed))
        })
      ),
      Effect.ensuring(Effect.sync(() => {
        branch.fate.closed = closedError
      }))
    )
}

/** Rolls back a branch that was not prepared; a failure destroys its connection (which ends the branch). */
const rollbackActive = (branch: Branch): Effect.Effect<void> =>
  Effect.suspend(() => {
    const statements = branch.member.protocol.rollbackActive(branch.gid)
    const last = statements[statements.length - 1]!
    return Effect.forEach(statements.slice(0, -1), (text) => Effect.ignore(send(branch, text)), { discard: true })
      .pipe(
        Effect.zipRight(send(branch, last)),
        Effect.zipRight(Effect.sync(() => {
          branch.state = "finished"
        })),
        Effect.catchAllCause(() =>
          Effect.sync(() => {
            branch.destroy = true
            branch.state = "finished"
          })
        )
      )
  })

/**
 * Finishes a prepared branch on a pooled connection (COMMIT PREPARED or ROLLBACK PREPARED): succeeds when the
 * branch is no longer prepared. "Unknown id" is believed only when the database no longer lists the branch
 * (MariaDB answers it too for a branch still attached to a live session).
 */
const finishPooled = (
  member: Member,
  gid: string,
  decision: Decision
): Effect.Effect<void, SqlError> =>
  Effect.catchIf(
    Effect.asVoid(
      sendPooled(
        member,
        decision === "commit" ? member.protocol.commitPrepared(gid) : member.protocol.rollbackPrepared(gid)
      )
    ),
    (error) => member.protocol.isUnknownId(error.cause),
    (error) =>
      Effect.flatMap(outside(member.protocol.scan(member.sql, gid)), (listed) =>
        listed.some((prepared) => prepared.gid === gid) ? Effect.fail(error) : Effect.void)
  )

/**
 * Finishes a prepared branch on its own connection: succeeds with whether it did. When it did not, the connection
 * is marked for destruction (closing its session detaches a MariaDB branch, which other sessions can then finish).
 */
const finishOwn = (branch: Branch, decision: Decision): Effect.Effect<boolean> =>
  Effect.suspend(() => {
    const { member } = branch
    if (branch.conn === undefined) return Effect.succeed(false)
    const text = decision === "commit"
      ? member.protocol.commitPrepared(branch.gid)
      : member.protocol.rollbackPrepared(branch.gid)
    return Effect.match(send(branch, text), {
      onSuccess: () => {
        branch.state = "finished"
        // Finished on its own session: the session is clean and goes back to the pool.
        branch.destroy = false
        return true
      },
      onFailure: (error) => {
        if (member.protocol.isUnknownId(error.cause) && !member.protocol.attached) {
          branch.state = "finished"
          branch.destroy = false
          return true
        }
        branch.destroy = true
        return false
      }
    })
  })

/**
 * Finishes prepared branches with a decision: each on its own connection first; then, if some failed, every
 * connection of the run (`all`) is given back before those are retried on pooled connections, so that a run never
 * holds a connection while it waits for one. Succeeds with the branches left unfinished.
 */
const finishAll = (
  branches: ReadonlyArray<Branch>,
  all: ReadonlyArray<Branch>,
  decision: Decision,
  retry: Schedule.Schedule<unknown, unknown>,
  onFinished: () => Effect.Effect<void> = () => Effect.void
): Effect.Effect<ReadonlyArray<Branch>> =>
  Effect.gen(function*() {
    const left: Array<Branch> = []
    for (const branch of branches) {
      if (yield* finishOwn(branch, decision)) yield* onFinished()
      else left.push(branch)
    }
    if (left.length === 0) return left
    yield* Effect.forEach(all, releaseBranch, { discard: true })
    const failed: Array<Branch> = []
    for (const branch of left) {
      const pooled = Effect.tapError(
        finishPooled(branch.member, branch.gid, decision),
        () => Metric.increment(Metrics.commitRetries)
      )
      const exit = yield* Effect.exit(Effect.retry(pooled, retry))
      if (Exit.isFailure(exit)) {
        failed.push(branch)
        continue
      }
      branch.state = "finished"
      yield* onFinished()
    }
    return failed
  })

/** Gives a branch's connection back (destroyed when it must be), and its place at the log's pool gate, once. */
const releaseBranch = (branch: Branch): Effect.Effect<void> =>
  Effect.suspend(() => {
    const conn = branch.conn
    const destroy = conn !== undefined && branch.destroy ? branch.member.dialect.destroy(conn) : Effect.void
    branch.conn = undefined
    const gate = branch.holdsGate ? Effect.asVoid(branch.gate!.release(1)) : Effect.void
    branch.holdsGate = false
    return Effect.zipRight(Effect.zipRight(Effect.ignore(destroy), Scope.close(branch.scope, Exit.void)), gate)
  })

// ---------------------------------------------------------------------------------------------------------------
// the coordinator

interface Settings {
  readonly coordinatorId: string
  readonly stem: string
  readonly members: ReadonlyMap<string, Member>
  readonly log: Log
  /**
   * Lets the branches of running transactions hold at most all but one connection of the log participant's pool
   * (when its size is known): the log's own connection, if lost, can always be replaced.
   */
  readonly logGate: Effect.Semaphore | undefined
  readonly recoveryThreshold: Duration.Duration
  readonly abortRetention: Duration.Duration
  readonly hooks: TwoPhaseCommit.TwoPhaseHooks | undefined
  readonly probe: ((point: TwoPhaseCommit.ProbePoint, txid: string) => Effect.Effect<void>) | undefined
  /** The transactions this process is running (the recovery scan leaves them alone). */
  readonly running: Set<string>
  /** Where phase two goes on once `run` has returned. */
  readonly scope: Scope.Scope
}

const inlineRetry: Schedule.Schedule<unknown, unknown> = Schedule.intersect(
  Schedule.exponential("50 millis", 2),
  Schedule.recurs(5)
)

const backgroundRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("200 millis", 2).pipe(
  Schedule.union(Schedule.spaced("30 seconds"))
)

const probe = (settings: Settings, point: TwoPhaseCommit.ProbePoint, txid: string): Effect.Effect<void> =>
  settings.probe === undefined ? Effect.void : settings.probe(point, txid)

const errorTag = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) {
    const tag = property(failure.value, "_tag")
    return typeof tag === "string" ? tag : "failure"
  }
  return Cause.isInterruptedOnly(cause) ? "interrupted" : "defect"
}

const runHook = (
  kind: "afterCommit" | "afterRollback",
  hook: ((info: TwoPhaseCommit.TwoPhaseInfo) => Effect.Effect<unknown, unknown>) | undefined,
  info: TwoPhaseCommit.TwoPhaseInfo
): Effect.Effect<void> =>
  hook === undefined ? Effect.void : Effect.catchAllCause(
    // Outside any transaction of the caller, like the bodies.
    outside(Effect.suspend(() => hook(info))),
    (cause) =>
      Effect.zipRight(
        Metric.increment(Metric.tagged(Metrics.hookFailures, "hook", kind)),
        Effect.logWarning(`effect-sql-tx: a two-phase hook failed (${kind})`, cause)
      )
  ).pipe(Effect.asVoid)

/**
 * The coordinator's hook of a kind, then the run's; outside the attempt of an enclosing withRetry (a transaction
 * a hook runs is not the attempt's).
 */
const afterHooks = (
  kind: "afterCommit" | "afterRollback",
  first: ((info: TwoPhaseCommit.TwoPhaseInfo) => Effect.Effect<unknown, unknown>) | undefined,
  second: ((info: TwoPhaseCommit.TwoPhaseInfo) => Effect.Effect<unknown, unknown>) | undefined,
  info: TwoPhaseCommit.TwoPhaseInfo
): Effect.Effect<void> =>
  first === undefined && second === undefined ? Effect.void : Effect.locally(
    Effect.zipRight(runHook(kind, first, info), runHook(kind, second, info)),
    currentRetryAttempt,
    undefined
  )

const validIsolation = (
  options: TwoPhaseCommit.RunOptions | undefined,
  key: string
): IsolationLevel.IsolationLevel | undefined => {
  const isolation = options?.isolation
  if (isolation === undefined || typeof isolation === "string") return isolation
  return isolation[key]
}

const validateRun = (
  settings: Settings,
  keys: ReadonlyArray<string>,
  options: TwoPhaseCommit.RunOptions | undefined
): InvalidTwoPhaseConfig | undefined => {
  if (keys.length === 0) return invalid("bodies", "{}", "a two-phase transaction needs at least one body")
  for (const key of keys) {
    if (!settings.members.has(key)) {
      return invalid("bodies", key, `no participant has this name (${[...settings.members.keys()].join(", ")})`)
    }
  }
  const name = options?.name
  if (name !== undefined && (typeof name !== "string" || name.length === 0 || name.length > 200)) {
    return invalid("name", name, "a non-empty string of at most 200 characters")
  }
  const isolation = options?.isolation
  if (isolation !== undefined) {
    const levels = typeof isolation === "string" ? [isolation] : Object.values(isolation)
    for (const level of levels) {
      if (level !== undefined && !IsolationLevel.isIsolationLevel(level)) {
        return invalid("isolation", level, `one of ${IsolationLevel.all.join(", ")}`)
      }
    }
    if (typeof isolation !== "string") {
      for (const key of Object.keys(isolation)) {
        if (!settings.members.has(key)) return invalid("isolation", key, "no participant has this name")
      }
    }
  }
  if (options?.timeout !== undefined) {
    const checked = checkDuration(options.timeout, false)
    if (typeof checked === "string") return invalid("timeout", options.timeout, checked)
  }
  return undefined
}

const run = (settings: Settings) =>
<B extends Record<string, Effect.Effect<any, any, any>>>(
  bodies: B,
  options?: TwoPhaseCommit.RunOptions
): Effect.Effect<any, any, any> =>
  Effect.suspend(() => {
    const keys = Object.keys(bodies)
    const refused = validateRun(settings, keys, options)
    if (refused !== undefined) return Effect.fail(refused)
    const name = options?.name ?? "two_phase"
    const startedAt = Date.now()
    const txid = makeTxid(startedAt)
    const info: TwoPhaseCommit.TwoPhaseInfo = {
      id: txid,
      name,
      participants: keys,
      startedAt: new Date(startedAt)
    }
    const tagged = <Type, In, Out>(metric: Metric.Metric<Type, In, Out>): Metric.Metric<Type, In, Out> =>
      Metric.tagged(Metric.tagged(metric, "transaction", name), "coordinator", settings.coordinatorId)
    return Effect.uninterruptibleMask((restore) =>
      Effect.gen(function*() {
        const branches: Array<Branch> = []
        for (let i = 0; i < keys.length; i++) {
          const member = settings.members.get(keys[i]!)!
          branches.push({
            member,
            key: keys[i]!,
            gid: `${settings.stem}${txid}.${member.rank}`,
            isolation: validIsolation(options, keys[i]!),
            scope: yield* Scope.make(),
            conn: undefined,
            fate: { doomed: undefined, closed: undefined },
            state: "idle",
            destroy: false,
            gate: member === settings.log.member ? settings.logGate : undefined,
            holdsGate: false
          })
        }
        settings.running.add(txid)
        yield* Metric.increment(tagged(Metrics.started))
        const exit = yield* Effect.exit(protocol(settings, txid, name, keys, branches, bodies, options, restore, info))
        settings.running.delete(txid)
        yield* Effect.forEach(branches, releaseBranch, { discard: true })
        // Tell an enclosing withRetry, as an outermost transaction does: after a commit it must not run the attempt
        // again; a failure of this transaction (not of a caller's) is one it may retry.
        const attempt = yield* FiberRef.get(currentRetryAttempt)
        noteEnded(attempt, name, Exit.isSuccess(exit), exit)
        const seconds = (Date.now() - startedAt) / 1000
        if (Exit.isSuccess(exit)) {
          yield* Metric.increment(tagged(Metrics.committed))
          yield* Metric.update(Metric.tagged(tagged(Metrics.duration), "outcome", "committed"), seconds)
          yield* afterHooks("afterCommit", settings.hooks?.afterCommit, options?.hooks?.afterCommit, info)
        } else {
          const outcome = Cause.failureOption(exit.cause).pipe(
              Option.map((error) => property(error, "_tag") === "TwoPhaseOutcomeUnknown"),
              Option.getOrElse(() => false)
            )
            ? "unknown"
            : "rolled_back"
          yield* Metric.increment(Metric.tagged(tagged(Metrics.failed), "error", errorTag(exit.cause)))
          yield* Metric.update(Metric.tagged(tagged(Metrics.duration), "outcome", outcome), seconds)
          if (outcome === "rolled_back") {
            yield* Metric.increment(tagged(Metrics.rolledBack))
            // As for a transaction of `atomic`: inside withRetry they run when it stops, and not at all if it runs
            // the attempt again.
            yield* afterRollbackHooks(
              attempt,
              afterHooks("afterRollback", settings.hooks?.afterRollback, options?.hooks?.afterRollback, info)
            )
          }
        }
        return yield* exit
      })
    ).pipe(
      Effect.withSpan("effect_sql_tx.two_phase_commit", {
        kind: "client",
        captureStackTrace: false,
        attributes: {
          "db.transaction.name": name,
          "db.two_phase.transaction_id": txid,
          "db.two_phase.coordinator": settings.coordinatorId,
          "db.two_phase.participants": keys.join(",")
        }
      })
    )
  })

/**
 * Rolls back every branch: those not prepared on their connection, then the prepared ones (or maybe prepared: a
 * PREPARE whose answer was lost) with ROLLBACK PREPARED, on their connection or else on pooled ones once the run's
 * connections are given back. What cannot be rolled back now is left to the recovery scan (no commit decision:
 * presumed abort).
 */
const rollbackAll = (branches: ReadonlyArray<Branch>): Effect.Effect<void> =>
  Effect.gen(function*() {
    for (const branch of branches) if (branch.state === "active") yield* rollbackActive(branch)
    const prepared = branches.filter((branch) => branch.state === "preparing" || branch.state === "prepared")
    if (prepared.length === 0) return
    const failed = yield* finishAll(prepared, branches, "abort", inlineRetry)
    for (const branch of failed) {
      yield* Effect.logWarning("effect-sql-tx: a prepared branch could not be rolled back; the recovery scan will")
        .pipe(Effect.annotateLogs({ gid: branch.gid, participant: branch.member.name }))
    }
  })

const protocol = <B extends Record<string, Effect.Effect<any, any, any>>>(
  settings: Settings,
  txid: string,
  name: string,
  keys: ReadonlyArray<string>,
  branches: ReadonlyArray<Branch>,
  bodies: B,
  options: TwoPhaseCommit.RunOptions | undefined,
  restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  info: TwoPhaseCommit.TwoPhaseInfo
): Effect.Effect<any, unknown, unknown> =>
  Effect.gen(function*() {
    // Phase one: the bodies. Every branch's connection is reserved first, in the participants' order: two
    // transactions never hold a connection of one pool while waiting for a connection of a pool the other holds.
    const started = performance.now()
    const inOrder = [...branches].sort((a, b) => a.member.rank - b.member.rank)
    let all: Effect.Effect<Array<unknown>, unknown, unknown> = Effect.zipRight(
      Effect.forEach(inOrder, open, { discard: true }),
      Effect.forEach(branches, (branch) => restore(Effect.suspend(() => runBody(branch, bodies[branch.key]!))), {
        concurrency: options?.concurrent === true ? "unbounded" : 1
      })
    )
    if (options?.timeout !== undefined) {
      const timeout = Duration.decode(options.timeout)
      all = Effect.timeoutFail(all, {
        duration: timeout,
        onTimeout: () =>
          new TransactionError.TransactionTimeout({
            name,
            timeout,
            elapsed: Duration.millis(performance.now() - started)
          })
      })
    }
    const results = yield* Effect.exit(all)
    if (Exit.isFailure(results)) {
      yield* rollbackAll(branches)
      return yield* results
    }
    // beforeCommit hooks: the coordinator's, then the transaction's.
    for (const hook of [settings.hooks?.beforeCommit, options?.hooks?.beforeCommit]) {
      if (hook === undefined) continue
      const before = yield* Effect.exit(restore(outside(Effect.suspend(() => hook(info)))))
      if (Exit.isFailure(before)) {
        yield* rollbackAll(branches)
        return yield* before
      }
    }
    // Phase one: PREPARE.
    let firstPrepared = 0
    for (const branch of branches) {
      branch.state = "preparing"
      const prepared = yield* Effect.exit(send(branch, branch.member.protocol.prepare(branch.gid)))
      if (Exit.isSuccess(prepared) && branch.member.protocol.preparedAborted(prepared.value)) {
        // PostgreSQL rolled the branch back: an earlier statement had failed and the body caught it.
        branch.state = "finished"
        yield* rollbackAll(branches)
        return yield* new PrepareFailed({
          participant: branch.member.name,
          dialect: branch.member.protocol.name,
          cause: new TransactionError.TransactionAborted({
            dialect: branch.member.protocol.name,
            code: "25P02",
            cause: undefined
          })
        })
      }
      if (Exit.isFailure(prepared)) {
        const failure = Cause.failureOption(prepared.cause)
        const error = Option.getOrUndefined(failure)
        const classified = error === undefined ? undefined : classifyFor(branch, error)
        const lost = classified?._tag === "ConnectionLost"
        // Refused by the database: the branch is not prepared (roll back what is left of it). Lost: it may be.
        branch.state = lost || error === undefined ? "preparing" : "active"
        if (lost) branch.destroy = true
        if (branch.member.protocol.disabled(error?.cause)) {
          yield* rollbackAll(branches)
          return yield* new PreparedTransactionsDisabled({ participant: branch.member.name, cause: error })
        }
        yield* rollbackAll(branches)
        if (error === undefined) return yield* prepared
        // A serialization failure or a deadlock at PREPARE (PostgreSQL checks SERIALIZABLE there): every branch is
        // rolled back, and withRetry may run the transaction again.
        return yield* (classified !== undefined &&
            (classified._tag === "TwoPhaseForbidden" || classified._tag === "SerializationFailure" ||
              classified._tag === "DeadlockDetected")
          ? classified
          : new PrepareFailed({ participant: branch.member.name, dialect: branch.member.protocol.name, cause: error }))
      }
      branch.state = "prepared"
      // A prepared MariaDB branch stays attached to its session: the session must finish it or be closed.
      if (branch.member.protocol.attached) branch.destroy = true
      if (firstPrepared++ === 0) yield* probe(settings, "prepared-first", txid)
    }
    yield* probe(settings, "prepared-all", txid)
    // The decision. A coordinator slower than the recovery threshold may already have been presumed aborted.
    const elapsed = performance.now() - started
    const wanted: Decision = elapsed < Duration.toMillis(settings.recoveryThreshold) ? "commit" : "abort"
    const decided = yield* Effect.exit(decide(settings.log, settings.coordinatorId, txid, wanted, name, keys))
    let decision: Decision
    if (Exit.isSuccess(decided)) {
      // A decision was there before this first insert: a recovery scan's abort (it may since have been forgotten).
      decision = decided.value === "vanished" ? "abort" : decided.value
    } else {
      // The insert may or may not have been written (or the log's connection was found dead and replaced): the
      // first decision written for the transaction wins, so writing the same one again is safe.
      const second = yield* Effect.exit(decide(settings.log, settings.coordinatorId, txid, wanted, name, keys))
      if (Exit.isFailure(second)) {
        // Nobody knows: leave every branch prepared for the recovery scan, which reads the log.
        for (const branch of branches) if (branch.member.protocol.attached) branch.destroy = true
        return yield* new TwoPhaseOutcomeUnknown({
          transactionId: txid,
          cause: Cause.squash(decided.cause)
        })
      }
      if (second.value === "vanished") {
        // The decision found was deleted before it could be read: this coordinator's own commit (the first insert
        // did go through) that a recovery scan finished and forgot, or a scan's abort. Nobody can tell now.
        return yield* new TwoPhaseOutcomeUnknown({ transactionId: txid, cause: Cause.squash(decided.cause) })
      }
      decision = second.value
    }
    if (decision === "abort") {
      yield* rollbackAll(branches)
      return yield* new TwoPhaseAborted({
        transactionId: txid,
        reason: wanted === "abort"
          ? `it took longer than the recovery threshold from its start to its decision (${
            Duration.format(settings.recoveryThreshold)
          })`
          : "a recovery scan presumed it aborted"
      })
    }
    yield* probe(settings, "decided", txid)
    // Phase two: the decision is final.
    let firstCommitted = 0
    const pending = yield* finishAll(
      branches,
      branches,
      "commit",
      inlineRetry,
      () => firstCommitted++ === 0 ? probe(settings, "committed-first", txid) : Effect.void
    )
    if (pending.length === 0) {
      yield* Effect.catchAllCause(
        forget(settings.log, settings.coordinatorId, txid),
        (cause) => Effect.logDebug("effect-sql-tx: a finished decision stays in the log for the scan", cause)
      )
    } else {
      yield* Effect.logWarning("effect-sql-tx: COMMIT PREPARED failed; retrying in the background").pipe(
        Effect.annotateLogs({ transaction: name, id: txid, participants: pending.map((b) => b.member.name).join(",") })
      )
      // Interruptible (this runs inside `run`'s uninterruptible region): closing the coordinator's scope stops it,
      // and the recovery scan of the next coordinator with this id takes over.
      yield* Effect.forkIn(
        Effect.interruptible(
          Effect.forEach(
            pending,
            (branch) => Effect.retry(finishPooled(branch.member, branch.gid, "commit"), backgroundRetry),
            { discard: true, concurrency: "unbounded" }
          ).pipe(Effect.zipRight(Effect.ignore(forget(settings.log, settings.coordinatorId, txid))))
        ),
        settings.scope
      )
    }
    const values: Record<string, unknown> = {}
    for (let i = 0; i < keys.length; i++) values[keys[i]!] = results.value[i]
    return values
  })

// ---------------------------------------------------------------------------------------------------------------
// recovery

interface Found {
  readonly member: Member
  readonly gid: string
  readonly txid: string
  readonly age: number
}

const scanAll = (settings: Settings): Effect.Effect<{
  readonly found: ReadonlyArray<Found>
  /** The transaction ids of every branch listed with this coordinator's stem, whatever its rank. */
  readonly listed: ReadonlySet<string>
  readonly complete: boolean
}> =>
  Effect.map(
    Effect.forEach([...settings.members.values()], (member) =>
      Effect.either(outside(member.protocol.scan(member.sql, settings.stem))).pipe(
        Effect.tap((result) =>
          result._tag === "Left"
            ? Effect.logWarning("effect-sql-tx: the recovery scan could not list prepared transactions").pipe(
              Effect.annotateLogs({ participant: member.name, error: String(result.left) })
            )
            : Effect.void
        ),
        Effect.map((result) => ({ member, result }))
      )),
    (lists) => {
      const now = Date.now()
      const found: Array<Found> = []
      const listed = new Set<string>()
      let complete = true
      for (const { member, result } of lists) {
        if (result._tag === "Left") {
          complete = false
          continue
        }
        for (const prepared of result.right) {
          const parsed = parseGid(settings.stem, prepared.gid)
          if (parsed === undefined) {
            continue
          }
          listed.add(parsed.txid)
          if (parsed.rank !== String(member.rank)) {
            continue
          }
          const txid = parsed.txid
          found.push({
            member,
            gid: prepared.gid,
            txid,
            age: prepared.age ?? Math.max(0, (now - txidTime(txid)) / 1000)
          })
        }
      }
      return { found, listed, complete }
    }
  )

const recover = (settings: Settings): Effect.Effect<TwoPhaseCommit.RecoveryReport> =>
  Effect.gen(function*() {
    const threshold = Duration.toSeconds(settings.recoveryThreshold)
    const { complete, found } = yield* scanAll(settings)
    const eligible = found.filter((f) => !settings.running.has(f.txid) && f.age >= threshold)
    let committed = 0
    let rolledBack = 0
    let failed = 0
    const decisions = new Map<string, Decision>()
    for (const branch of eligible) {
      const outcome = yield* Effect.gen(function*() {
        let decision = decisions.get(branch.txid)
        if (decision === undefined) {
          const found = (yield* readDecision(settings.log, settings.coordinatorId, branch.txid)) ??
            (yield* decide(settings.log, settings.coordinatorId, branch.txid, "abort", "recovery", []))
          if (found === "vanished") {
            // Decided and forgotten between the read and the insert: another scan finished it; the next scan sees.
            return yield* Effect.fail(new Error("its decision was finished by another recovery scan meanwhile"))
          }
          decision = found
          decisions.set(branch.txid, decision)
        }
        yield* finishPooled(branch.member, branch.gid, decision)
        return decision
      }).pipe(Effect.either)
      if (outcome._tag === "Left") {
        failed++
        yield* Effect.logWarning("effect-sql-tx: an in-doubt prepared transaction could not be finished").pipe(
          Effect.annotateLogs({ participant: branch.member.name, gid: branch.gid, error: String(outcome.left) })
        )
        continue
      }
      const label = outcome.right === "commit" ? "committed" : "rolled_back"
      if (outcome.right === "commit") committed++
      else rolledBack++
      yield* Metric.increment(
        Metric.tagged(Metric.tagged(Metrics.resolved, "outcome", label), "coordinator", settings.coordinatorId)
      )
      yield* Effect.logInfo(`effect-sql-tx: in-doubt prepared transaction ${label}`).pipe(
        Effect.annotateLogs({ participant: branch.member.name, gid: branch.gid, age: `${Math.round(branch.age)}s` })
      )
    }
    // A scan that could not list every participant does not know how many are in doubt: the gauge keeps its value.
    if (complete) yield* Metric.set(Metric.tagged(Metrics.inDoubt, "coordinator", settings.coordinatorId), failed)
    // Forget finished decisions: the rows are read before the second scan, and a commit row is written only once
    // every branch is prepared, so a row whose transaction the scan does not list any more is finished.
    const forgotten = yield* Effect.catchAllCause(
      Effect.gen(function*() {
        const rows = yield* readLog(settings.log, settings.coordinatorId)
        if (rows.length === 0) return 0
        const after = yield* scanAll(settings)
        if (!after.complete) return 0
        // Whatever the rank: a branch of a participant configured at another place is still prepared all the same.
        const still = after.listed
        const now = Date.now()
        let count = 0
        for (const row of rows) {
          if (still.has(row.txid) || settings.running.has(row.txid)) continue
          const names = row.participants === "" ? [] : row.participants.split(",")
          if (names.some((n) => !settings.members.has(n))) continue
          const old = now - Number(row.decided_at) >= Duration.toMillis(settings.abortRetention)
          if (row.decision === "commit" || old) {
            yield* forget(settings.log, settings.coordinatorId, row.txid)
            count++
          }
        }
        return count
      }),
      (cause) => Effect.as(Effect.logWarning("effect-sql-tx: cleaning the coordinator log failed", cause), 0)
    )
    return { found: eligible.length, committed, rolledBack, failed, forgotten }
  }).pipe(Effect.withSpan("effect_sql_tx.two_phase_recovery", { captureStackTrace: false }))

const inDoubt = (settings: Settings): Effect.Effect<ReadonlyArray<TwoPhaseCommit.InDoubtTransaction>, SqlError> =>
  Effect.gen(function*() {
    const { found } = yield* scanAll(settings)
    const decisions = new Map<string, TwoPhaseCommit.InDoubtTransaction["decision"]>()
    const listed: Array<TwoPhaseCommit.InDoubtTransaction> = []
    for (const f of found) {
      let decision = decisions.get(f.txid)
      if (decision === undefined) {
        decision = (yield* readDecision(settings.log, settings.coordinatorId, f.txid)) ?? "none"
        decisions.set(f.txid, decision)
      }
      listed.push({
        participant: f.member.name,
        gid: f.gid,
        transactionId: f.txid,
        ageSeconds: f.age,
        decision,
        running: settings.running.has(f.txid)
      })
    }
    return listed
  })

// ---------------------------------------------------------------------------------------------------------------
// construction

const duration = (
  option: string,
  input: Duration.DurationInput | undefined,
  fallback: Duration.DurationInput,
  allowZero = false
): Effect.Effect<Duration.Duration, InvalidTwoPhaseConfig> => {
  const checked = checkDuration(input ?? fallback, allowZero)
  return typeof checked === "string" ? Effect.fail(invalid(option, input, checked)) : Effect.succeed(checked)
}

/** @internal */
export const make = (
  config: TwoPhaseCommit.Config<ReadonlyArray<TwoPhaseCommit.Participant<any, any>>>
): Effect.Effect<TwoPhaseCommit.Coordinator, unknown, unknown> =>
  Effect.gen(function*() {
    const coordinatorId = config.coordinatorId
    if (typeof coordinatorId !== "string" || coordinatorId.length > 24 || !identifier.test(coordinatorId)) {
      return yield* invalid("coordinatorId", coordinatorId, "1 to 24 letters, digits, _ or -")
    }
    const prefix = config.prefix ?? "etx2pc"
    if (typeof prefix !== "string" || prefix.length > 12 || !identifier.test(prefix)) {
      return yield* invalid("prefix", prefix, "1 to 12 letters, digits, _ or -")
    }
    const table = config.logTable ?? "effect_sql_tx_2pc_log"
    if (typeof table !== "string" || table.length > 63 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) {
      return yield* invalid("logTable", table, "a plain identifier of at most 63 characters")
    }
    const names = new Set<string>()
    for (const p of config.participants) {
      if (typeof p.name !== "string" || p.name.length > 64 || !identifier.test(p.name)) {
        return yield* invalid("participants", p.name, "names are 1 to 64 letters, digits, _ or -")
      }
      if (names.has(p.name)) return yield* invalid("participants", p.name, "two participants have this name")
      names.add(p.name)
    }
    if (names.size === 0) return yield* invalid("participants", "[]", "at least one participant")
    if ([...names].join(",").length > 2000) {
      return yield* invalid("participants", names.size, "the names, joined by commas, exceed the log's 2000 characters")
    }
    if (!names.has(config.log)) return yield* invalid("log", config.log, "the name of one of the participants")
    const stem = `${prefix}.${coordinatorId}.`
    // The longest gid: the stem, a transaction id (17) and the last branch's number.
    const longest = stem.length + 17 + 1 + String(names.size - 1).length
    if (longest > 64) return yield* invalid("participants", names.size, `global ids would exceed 64 bytes (${longest})`)
    const recoveryThreshold = yield* duration("recoveryThreshold", config.recoveryThreshold, "1 minute", true)
    const recoveryInterval = yield* duration("recoveryInterval", config.recoveryInterval, "30 seconds")
    const abortRetention = yield* duration("abortRetention", config.abortRetention, "24 hours", true)
    if (Duration.lessThan(abortRetention, recoveryThreshold)) {
      // A forgotten abort would let a late coordinator's commit decision through.
      return yield* invalid("abortRetention", config.abortRetention, "at least the recovery threshold")
    }
    const members = new Map<string, Member>()
    for (const p of config.participants) members.set(p.name, yield* member(p, members.size))
    const scope = yield* Effect.scope
    const logMember = members.get(config.log)!
    // Its configured size, or the driver's default (10 for pg and mysql2).
    const logPool = logMember.dialect.poolSize(logMember.sql) ?? 0
    if (logPool === 1) {
      return yield* invalid(
        "log",
        config.log,
        "its pool needs 2 connections or more: the coordinator keeps one for the log"
      )
    }
    const log: Log = {
      member: logMember,
      table,
      lock: yield* Effect.makeSemaphore(1),
      conn: undefined,
      connScope: undefined,
      closed: false
    }
    // Before the scan is forked: finalizers run in reverse, so the scan (and phase two in the background) stop
    // before the log's connection goes back.
    yield* Effect.addFinalizer(() => closeLog(log))
    yield* createLog(log)
    const settings: Settings = {
      coordinatorId,
      stem,
      members,
      log,
      logGate: logPool > 1 ? yield* Effect.makeSemaphore(logPool - 1) : undefined,
      recoveryThreshold,
      abortRetention,
      hooks: config.hooks,
      probe: config.probe,
      running: new Set(),
      scope
    }
    if (config.recovery !== false) {
      yield* recover(settings)
      // A defect in one scan is logged; the next scan runs all the same.
      const scan = Effect.catchAllCause(
        recover(settings),
        (cause) => Effect.logError("effect-sql-tx: the two-phase recovery scan failed", cause)
      )
      yield* Effect.forkScoped(
        Effect.interruptible(Effect.repeat(Effect.delay(scan, recoveryInterval), Schedule.forever))
      )
    }
    return {
      coordinatorId,
      participants: [...names],
      run: run(settings),
      recover: recover(settings),
      inDoubt: inDoubt(settings)
    } as TwoPhaseCommit.Coordinator
  })
