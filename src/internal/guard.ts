/**
 * The connection a block provides to its body: statements reach the transaction's connection only while the block
 * runs and the transaction can still commit them.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as TransactionError from "../TransactionError.js"
import { closedError, type Level } from "./state.js"

/** A SQLSTATE: the server refused the statement (a driver-side error has no such code). */
const sqlState = /^[0-9A-Z]{5}$/

/** The refusal of a statement on a block that has ended, as the `SqlError` a connection fails with. */
const closedStatement = (cause: TransactionError.TransactionClosed) =>
  new SqlError({ cause, message: "The transaction of this statement has ended" })

/**
 * @internal
 * Closes the outermost block before its COMMIT or ROLLBACK is sent: its guards refuse statements, and so does the
 * transaction's statements connection for those still waiting to be sent (of fibers that outlived the block).
 */
export const closeRoot = (level: Level): void => {
  level.closed = true
  level.root.closed ??= () => closedStatement(closedError(level, "statement")!)
}

/**
 * @internal
 * Why a statement of `level` may not run, if it may not: the block (or an enclosing one) has ended or is being
 * stopped (`TransactionClosed`); the whole transaction was rolled back by the database (the error that did it).
 */
export const refusal = (level: Level, stopped: boolean): SqlError | undefined => {
  // A stopped body is refused as if its block had ended.
  const closed = closedError(stopped ? { ...level, closed: true } : level, "statement")
  return closed !== undefined ? closedStatement(closed) : level.root.doomed
}

/**
 * PostgreSQL: an error of the server aborts the innermost savepoint (of a block, a manual one, or one of a nested
 * `sql.withTransaction`), or the transaction; until it is rolled back, every statement fails with 25P02. The last
 * such error is remembered: a statement refused with 25P02 fails with it instead (it says why), and so does a
 * transaction whose COMMIT the server answers with ROLLBACK (a retryable error caught by the body stays
 * retryable). Whether a savepoint recovered it is the server's business: nothing is refused here.
 */
const remember = (level: Level, error: SqlError): SqlError => {
  const code = (error.cause as { readonly code?: unknown } | undefined)?.code
  if (typeof code !== "string" || !sqlState.test(code)) return error
  const { root } = level
  if (code === inFailedTransaction) return root.lastError ?? error
  root.lastError = error
  return error
}

/** SQLSTATE 25P02: the transaction (or savepoint) was aborted by an earlier error. */
const inFailedTransaction = "25P02"

/**
 * @internal
 * The guard of a block: a `Connection` whose statements run on the transaction's statements connection while the
 * block runs, and fail with a typed error otherwise (see {@link refusal}). A block's body gets one; its hooks get
 * another, so that stopping the body does not stop the hooks.
 */
export class BlockConnection implements Connection {
  /** Set when the block stops its body (a timeout, an interruption): the body may send nothing more. */
  stopped = false
  constructor(readonly level: Level) {}

  private watch<A>(effect: Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> {
    if (!this.level.root.dialect.errorAbortsBlock) return effect
    return Effect.catchAll(effect, (error) => {
      this.level.failedStatement = true
      return Effect.fail(remember(this.level, error))
    })
  }

  /** Sends a statement through the guard: refused, or sent on the transaction's statements connection. */
  private send<A>(statement: (statements: Connection) => Effect.Effect<A, SqlError>): Effect.Effect<A, SqlError> {
    const refused = refusal(this.level, this.stopped)
    return refused !== undefined ? Effect.fail(refused) : this.watch(statement(this.level.root.statements))
  }

  execute(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    return this.send((statements) => statements.execute(sql, params, transformRows))
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    return this.send((statements) => statements.executeRaw(sql, params))
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    return this.send((statements) => statements.executeValues(sql, params))
  }
  executeUnprepared(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    return this.send((statements) => statements.executeUnprepared(sql, params, transformRows))
  }
  executeStream(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    return Stream.suspend(() => {
      const refused = refusal(this.level, this.stopped)
      return refused !== undefined
        ? Stream.fail(refused)
        : this.level.root.statements.executeStream(sql, params, transformRows)
    })
  }
}
