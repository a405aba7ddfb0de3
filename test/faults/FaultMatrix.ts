/**
 * The fault matrix: for each step of a transaction (waiting for a connection, BEGIN, a body statement, a nested
 * block's SAVEPOINT, a beforeCommit hook, COMMIT, ROLLBACK, an afterCommit hook) and each fault (the caller
 * interrupted there, the server killing the connection there, an injected driver error, an injected defect), on a
 * pool of one connection: the outcome is the one the table says, no row of a rolled-back transaction is visible,
 * no committed row is lost, afterCommit hooks run exactly when the transaction committed, and the connection is
 * back in the pool outside any transaction (the next transaction works).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Option, type Scope } from "effect"
import { type Dialect, Transaction, TransactionManager } from "../../src/index.js"
import { Boom, makeTable, outside } from "../suites/TransactionSuite.js"

export type Step =
  | "acquire"
  | "begin"
  | "statement"
  | "savepoint"
  | "beforeCommit"
  | "commit"
  | "rollback"
  | "afterCommit"
export type Fault = "interrupt" | "kill" | "error" | "defect"

export const steps: ReadonlyArray<Step> = [
  "acquire",
  "begin",
  "statement",
  "savepoint",
  "beforeCommit",
  "commit",
  "rollback",
  "afterCommit"
]
export const faults: ReadonlyArray<Fault> = ["interrupt", "kill", "error", "defect"]

/** What a cell must end with: the rows of the transaction, and how `atomic` ends for its caller. */
export interface Expected {
  readonly rows: "all" | "none" | "either"
  readonly exit: "success" | "interrupted" | "defect" | "Boom" | "SqlError" | "ConnectionLost" | "CommitOutcomeUnknown"
}

/** The matrix (README "Reliability" shows it): `undefined` where the fault has no meaning at that step. */
export const expected = (step: Step, fault: Fault): Expected | undefined => {
  if (step === "acquire" && fault === "kill") return undefined
  const failed = (exit: Expected["exit"]): Expected => ({ rows: "none", exit })
  switch (step) {
    case "acquire":
    case "begin":
    case "statement":
    case "savepoint":
      return failed(
        fault === "interrupt"
          ? "interrupted"
          : fault === "kill"
          ? "ConnectionLost"
          : fault === "error"
          ? "SqlError"
          : "defect"
      )
    case "beforeCommit":
      // The body succeeded: closing is uninterruptible, so an interruption there lets the transaction commit.
      return fault === "interrupt" ? { rows: "all", exit: "interrupted" } : failed(
        fault === "kill" ? "ConnectionLost" : fault === "error" ? "SqlError" : "defect"
      )
    case "commit":
      return fault === "interrupt" ? { rows: "all", exit: "interrupted" } : failed(
        fault === "kill" ? "CommitOutcomeUnknown" : fault === "error" ? "SqlError" : "defect"
      )
    case "rollback":
      // The body failed with Boom: whatever ROLLBACK meets (an interruption waits for it), Boom is the result; the
      // connection is discarded when ROLLBACK did not complete.
      return failed("Boom")
    case "afterCommit":
      return { rows: "all", exit: fault === "interrupt" ? "interrupted" : "success" }
  }
}

export interface FaultTarget {
  readonly name: "pg" | "mysql" | "sqlite"
  readonly layer: Layer.Layer<SqlClient.SqlClient, unknown>
  /** Whether the connection that plain statements get is inside a transaction. */
  readonly inTransaction: Effect.Effect<boolean, SqlError, SqlClient.SqlClient>
  /** PostgreSQL, MariaDB: a client outside the pool, a statement that sleeps, and how to kill a connection. */
  readonly server?: {
    readonly admin: Effect.Effect<SqlClient.SqlClient, unknown, Scope.Scope>
    readonly connectionId: Effect.Effect<number, SqlError, SqlClient.SqlClient>
    readonly sleep: (seconds: number) => string
    readonly kill: (connectionId: number) => string
  }
}

/** The fault of the cell running now, read by the faulty dialect and client. */
interface Plan {
  step: Step | undefined
  fault: Fault | undefined
  /** Completed when the faulty step is reached (with the connection's server id, where there is one). */
  reached: Deferred.Deferred<number> | undefined
  admin: SqlClient.SqlClient | undefined
}

const plan: Plan = { step: undefined, fault: undefined, reached: undefined, admin: undefined }

const injectedError = () => new SqlError({ cause: new Error("injected driver error"), message: "injected" })

/** The fault of `step`, if the plan has one there, before `effect` (the real step) runs. */
const inject = <A>(
  step: Step,
  dialect: Dialect.Dialect,
  conn: unknown,
  kill: ((id: number) => string) | undefined,
  effect: Effect.Effect<A, SqlError>
): Effect.Effect<A, SqlError> =>
  Effect.suspend(() => {
    if (plan.step !== step) return effect
    const id = dialect.connectionId(conn as any) ?? 0
    switch (plan.fault) {
      case "error":
        return Effect.fail(injectedError())
      case "defect":
        return Effect.dieMessage(`injected defect at ${step}`)
      case "kill":
        // The server ends the connection, then the real step runs on it. (Outside the transaction's context: in
        // @effect/sql 3 its connection would serve the admin client's statement too.)
        return Effect.zipRight(outside(plan.admin!.unsafe(kill!(id))).pipe(Effect.orDie), effect)
      case "interrupt":
        // The caller is interrupted while the step runs (the test does it when told the step is reached).
        return Effect.zipRight(
          Effect.zipRight(Deferred.succeed(plan.reached!, id), Effect.sleep("100 millis")),
          effect
        )
      default:
        return effect
    }
  })

/** A dialect whose BEGIN, SAVEPOINT (of nested blocks), COMMIT and ROLLBACK meet the plan's fault. */
const faulty = (kill: ((id: number) => string) | undefined) => (dialect: Dialect.Dialect): Dialect.Dialect => ({
  ...dialect,
  begin: (conn, options, label) => inject("begin", dialect, conn, kill, dialect.begin(conn, options, label)),
  savepoint: (conn, name) =>
    name.startsWith("effect_sql_tx_")
      ? inject("savepoint", dialect, (conn as any).level?.root.conn ?? conn, kill, dialect.savepoint(conn, name))
      : dialect.savepoint(conn, name),
  commit: (conn, options) => inject("commit", dialect, conn, kill, dialect.commit(conn, options)),
  rollback: (conn, options) => inject("rollback", dialect, conn, kill, dialect.rollback(conn, options))
})

/** A client whose reservation of a connection meets the plan's error or defect. */
const faultyClient = Layer.effect(
  SqlClient.SqlClient,
  Effect.map(SqlClient.SqlClient, (sql) =>
    Object.assign((...args: Array<any>) => (sql as any)(...args), sql, {
      reserve: Effect.suspend(() =>
        plan.step === "acquire" && plan.fault === "error"
          ? Effect.fail(injectedError())
          : plan.step === "acquire" && plan.fault === "defect"
          ? Effect.dieMessage("injected defect at acquire")
          : sql.reserve
      )
    }) as SqlClient.SqlClient)
)

const outcomeOf = <A, E>(exit: Exit.Exit<A, E>): Expected["exit"] | string => {
  if (Exit.isSuccess(exit)) return "success"
  if (Cause.isInterruptedOnly(exit.cause)) return "interrupted"
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = failure.value as { readonly _tag?: string }
    return error instanceof Boom ? "Boom" : error._tag ?? String(error)
  }
  return Cause.isInterrupted(exit.cause) ? "interrupted" : "defect"
}

export const suite = (target: FaultTarget) => {
  const kill = target.server?.kill
  const live = TransactionManager.layer({ dialect: faulty(kill) }).pipe(
    Layer.provideMerge(Layer.provide(faultyClient, target.layer))
  )

  describe(`${target.name}: the fault matrix`, () => {
    layer(live, { excludeTestServices: true, timeout: "120 seconds" })((it) => {
      for (const step of steps) {
        for (const fault of faults) {
          const want = expected(step, fault)
          if (want === undefined || (fault === "kill" && target.server === undefined)) continue
          it.scoped(`${step} × ${fault}: ${want.exit}, rows ${want.rows}`, () =>
            Effect.gen(function*() {
              const sql = yield* SqlClient.SqlClient
              const manager = yield* TransactionManager.TransactionManager
              const t = yield* makeTable(`fault_${step}_${fault}`.toLowerCase())
              const admin = target.server === undefined ? undefined : yield* target.server.admin
              const reached = yield* Deferred.make<number>()
              const hooks = { afterCommit: 0, afterRollback: 0 }
              // A statement the body or a hook runs at the faulty step, for the faults that happen in user code.
              const userStep = (here: Step) =>
                Effect.gen(function*() {
                  if (here !== step) return
                  if (fault === "error") yield* sql.unsafe("SELECT * FROM effect_sql_tx_no_such_table")
                  if (fault === "defect") yield* Effect.dieMessage(`defect at ${step}`)
                  if (fault === "interrupt" || fault === "kill") {
                    const id = target.server === undefined ? 0 : yield* target.server.connectionId
                    yield* Deferred.succeed(reached, id)
                    if (target.server === undefined || (here === "afterCommit" && fault === "interrupt")) {
                      yield* Effect.sleep(fault === "interrupt" && here !== "statement" ? "300 millis" : "5 seconds")
                    } else {
                      yield* sql.unsafe(target.server.sleep(here === "statement" ? 5 : fault === "kill" ? 5 : 0.3))
                    }
                  }
                })
              const body = Effect.gen(function*() {
                yield* Transaction.afterCommit(Effect.sync(() => hooks.afterCommit++))
                yield* Transaction.afterRollback(Effect.sync(() => hooks.afterRollback++))
                yield* t.insert(1)
                yield* userStep("statement")
                yield* t.insert(2).pipe(Transaction.atomic())
                yield* Transaction.beforeCommit(userStep("beforeCommit"))
                yield* Transaction.afterCommit(userStep("afterCommit"))
                if (step === "rollback") return yield* Effect.fail(new Boom())
              })
              // Waiting for a connection: another transaction holds the pool's one.
              const holder = step === "acquire" && fault === "interrupt"
                ? yield* Effect.fork(Transaction.atomic(Effect.sleep("400 millis")))
                : undefined
              if (holder !== undefined) yield* Effect.sleep("50 millis")
              plan.step = ["begin", "savepoint", "commit", "rollback", "acquire"].includes(step) ? step : undefined
              plan.fault = fault
              plan.reached = reached
              plan.admin = admin
              const fiber = yield* Effect.fork(Transaction.atomic(body))
              if (fault === "interrupt") {
                if (step === "acquire") yield* Effect.sleep("100 millis")
                else yield* Deferred.await(reached)
                yield* Fiber.interrupt(fiber)
              }
              if (fault === "kill" && plan.step === undefined) {
                const id = yield* Deferred.await(reached)
                yield* Effect.sleep("100 millis")
                yield* admin!.unsafe(kill!(id))
              }
              const exit = yield* Fiber.await(fiber)
              plan.step = undefined
              if (holder !== undefined) yield* Fiber.join(holder)
              // Hooks that the interruption did not wait for (afterCommit runs after the outcome).
              yield* Effect.sleep("400 millis")

              const outcome = outcomeOf(exit)
              assert.strictEqual(
                outcome,
                want.exit,
                `${step} × ${fault}: ${Cause.pretty((exit as any).cause ?? Cause.empty)}`
              )
              const ids = yield* t.ids
              assert.isTrue(ids.length === 0 || ids.length === 2, `half a transaction: ${ids}`)
              if (want.rows === "all") assert.deepStrictEqual(ids, [1, 2])
              if (want.rows === "none") assert.deepStrictEqual(ids, [])
              // afterCommit hooks run exactly when the transaction committed.
              assert.strictEqual(hooks.afterCommit, ids.length === 2 ? 1 : 0)
              if (ids.length === 2) assert.strictEqual(hooks.afterRollback, 0)
              // The pool's one connection is back, outside any transaction, and the next transaction works.
              assert.isFalse(yield* outside(target.inTransaction))
              yield* Transaction.atomic(t.insert(3)).pipe(Effect.timeout("10 seconds"))
              assert.include(yield* t.ids, 3)
              assert.deepStrictEqual(yield* manager.active, [])
            }).pipe(Effect.ensuring(Effect.sync(() => {
              plan.step = undefined
            }))))
        }
      }
    })
  })
}
