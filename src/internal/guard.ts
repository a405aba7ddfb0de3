/**
 * The connection a block provides to its body: statements reach the transaction's connection only while the block
 * runs and the transaction can still commit them.
 */
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Stream from "effect/Stream"
import * as TransactionError from "../TransactionError.js"
import type { Level } from "./state.js"

/** A SQLSTATE: the server refused the statement (a driver-side error has no such code). */
const sqlState = /^[0-9A-Z]{5}$/

/** @internal The refusal of a statement on a block that has ended, as the `SqlError` a connection fails with. */
export const closedError = (level: Level, operation: TransactionError.TransactionClosed["operation"]) =>
  new SqlError({
    cause: new TransactionError.TransactionClosed({
      transactionId: level.handle.id,
      name: level.handle.name,
      operation
    }),
    message: "The transaction of this statement has ended"
  })

/**
 * @internal
 * Why a statement of `level` may not run, if it may not: the block (or an enclosing one) has ended or is being
 * stopped (`TransactionClosed`); the whole transaction was rolled back by the database (the error that did it);
 * PostgreSQL aborted the block or an enclosing one (the error that did it: later statements would fail with 25P02).
 */
export const refusal = (level: Level, stopped: boolean): SqlError | undefined => {
  if (stopped) return closedError(level, "statement")
  for (let block: Level | undefined = level; block !== undefined; block = block.parent) {
    if (block.closed) return closedError(block, "statement")
  }
  const { root } = level
  if (root.doomed !== undefined) return root.doomed
  for (let block: Level | undefined = level; block !== undefined; block = block.parent) {
    if (block.aborted !== undefined) return block.aborted
  }
  return undefined
}

/**
 * PostgreSQL: an error aborts the innermost savepoint, or the transaction at depth 0; until it is rolled back,
 * every statement fails with 25P02. A block with manual savepoints may still roll back to one: left alone.
 */
const noteAbort = (level: Level, error: SqlError): void => {
  const code = (error.cause as { readonly code?: unknown } | undefined)?.code
  if (typeof code !== "string" || !sqlState.test(code) || level.manual.length > 0 || level.closed) return
  if (level.savepoint === undefined) level.root.doomed ??= error
  else level.aborted ??= error
}

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
      noteAbort(this.level, error)
      return Effect.fail(error)
    })
  }

  execute(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    const refused = refusal(this.level, this.stopped)
    return refused !== undefined
      ? Effect.fail(refused)
      : this.watch(this.level.root.statements.execute(sql, params, transformRows))
  }
  executeRaw(sql: string, params: ReadonlyArray<unknown>) {
    const refused = refusal(this.level, this.stopped)
    return refused !== undefined ? Effect.fail(refused) : this.watch(this.level.root.statements.executeRaw(sql, params))
  }
  executeValues(sql: string, params: ReadonlyArray<unknown>) {
    const refused = refusal(this.level, this.stopped)
    return refused !== undefined
      ? Effect.fail(refused)
      : this.watch(this.level.root.statements.executeValues(sql, params))
  }
  executeUnprepared(
    sql: string,
    params: ReadonlyArray<unknown>,
    transformRows: (<A extends object>(row: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined
  ) {
    const refused = refusal(this.level, this.stopped)
    return refused !== undefined
      ? Effect.fail(refused)
      : this.watch(this.level.root.statements.executeUnprepared(sql, params, transformRows))
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
