/**
 * Manual savepoints: names validated before anything is sent, and a stack per block.
 */
import * as Effect from "effect/Effect"
import type { Savepoint } from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import { classifyError, countSavepoint, type Failure, type Level, lockOf, nextSavepointName } from "./state.js"

// ---------------------------------------------------------------------------------------------------------------
// manual savepoints

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const reservedPrefix = "effect_sql"

const refuse = (savepoint: string, reason: string) =>
  Effect.fail(new TransactionError.SavepointError({ savepoint, reason }))

/** @internal */
export const createSavepoint = (level: Level, name: string | undefined): Effect.Effect<Savepoint, Failure> =>
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
      if (root.liveSavepoints?.has(actual)) return refuse(actual, "a savepoint of that name is already defined")
      return Effect.zipRight(countSavepoint(root), root.dialect.savepoint(root.conn, actual)).pipe(
        Effect.mapError((error) => classifyError(root.dialect, error)),
        Effect.map(() => {
          const savepoint: Savepoint = { _tag: "Savepoint", name: actual, transactionId: level.handle.id }
          level.manual.push(savepoint)
          ;(root.liveSavepoints ??= new Set()).add(actual)
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
  for (const dropped of level.manual.splice(index)) level.root.liveSavepoints?.delete(dropped.name)
}

/** @internal */
export const rollbackToSavepoint = (level: Level, savepoint: Savepoint): Effect.Effect<void, Failure> =>
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

/** @internal */
export const releaseSavepoint = (level: Level, savepoint: Savepoint): Effect.Effect<void, Failure> =>
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
