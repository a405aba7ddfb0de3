/**
 * Manual savepoints: names validated before anything is sent, a stack per block, and operations allowed only on
 * the handle of the innermost block running in the fiber.
 */
import * as Effect from "effect/Effect"
import type { Savepoint } from "../Transaction.js"
import * as TransactionError from "../TransactionError.js"
import { TransactionTag } from "./context.js"
import {
  classifyError,
  closedError,
  countSavepoint,
  type Failure,
  type Level,
  lockOf,
  nextSavepointName
} from "./state.js"

// ---------------------------------------------------------------------------------------------------------------
// manual savepoints

const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const reservedPrefix = "effect_sql"

const refuse = (savepoint: string, reason: string) =>
  Effect.fail(new TransactionError.SavepointError({ savepoint, reason }))

/**
 * Runs a savepoint operation of a block's handle, if the handle may be used here: its block (and every enclosing
 * one) still runs, and it is the innermost block of the fiber. A parent's handle captured before a nested block
 * began would otherwise wait for the lock its child holds, for ever.
 */
const usable = <A>(level: Level, savepoint: string, f: () => Effect.Effect<A, Failure>): Effect.Effect<A, Failure> =>
  Effect.withFiberRuntime((fiber) => {
    const closed = closedError(level, "savepoint")
    if (closed !== undefined) return Effect.fail(closed)
    if (fiber.currentContext.unsafeMap.get(TransactionTag.key) !== level.handle) {
      return refuse(
        savepoint,
        "this handle is not the innermost running block of this fiber (a nested block runs inside it): use the " +
          "handle of the innermost block, or Transaction.savepoint"
      )
    }
    return f()
  })

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
    return usable(
      level,
      name ?? "(new)",
      () =>
        lockOf(level).withLock(Effect.suspend((): Effect.Effect<Savepoint, Failure> => {
          const actual = name ?? nextSavepointName(root)
          if (root.liveSavepoints?.has(actual)) return refuse(actual, "a savepoint of that name is already defined")
          // Through the block's guard: refused once the block ended or the transaction was rolled back.
          return Effect.zipRight(countSavepoint(root), root.dialect.savepoint(level.connection, actual)).pipe(
            Effect.mapError((error) => classifyError(root.dialect, error)),
            Effect.map(() => {
              const savepoint: Savepoint = { _tag: "Savepoint", name: actual, transactionId: level.handle.id }
              ;(level.manual ??= []).push({ savepoint, hooks: level.hooks?.length ?? 0 })
              ;(root.liveSavepoints ??= new Set()).add(actual)
              return savepoint
            })
          )
        }))
    )
  })

const withOwnSavepoint = (
  level: Level,
  savepoint: Savepoint,
  f: (index: number) => Effect.Effect<void, Failure>
): Effect.Effect<void, Failure> =>
  usable(level, savepoint?.name ?? String(savepoint), () =>
    lockOf(level).withLock(Effect.suspend(() => {
      const index = level.manual?.findIndex((entry) => entry.savepoint === savepoint) ?? -1
      if (index === -1) {
        return refuse(
          savepoint?.name ?? String(savepoint),
          "unknown here: released, rolled back past, or created by another transaction or block"
        )
      }
      return f(index)
    })))

const dropFrom = (level: Level, index: number): void => {
  for (const dropped of level.manual!.splice(index)) level.root.liveSavepoints?.delete(dropped.savepoint.name)
}

/** @internal */
export const rollbackToSavepoint = (level: Level, savepoint: Savepoint): Effect.Effect<void, Failure> =>
  withOwnSavepoint(
    level,
    savepoint,
    (index) =>
      level.root.dialect.rollbackToSavepoint(level.connection, savepoint.name).pipe(
        Effect.mapError((error) => classifyError(level.root.dialect, error)),
        Effect.tap(() => {
          // The hooks registered since the savepoint are rolled back with it (as Django's on_commit are).
          if (level.hooks !== undefined) level.hooks.length = level.manual![index]!.hooks
          // The savepoint stays defined; the ones created after it are gone.
          dropFrom(level, index + 1)
        })
      )
  )

/** @internal */
export const releaseSavepoint = (level: Level, savepoint: Savepoint): Effect.Effect<void, Failure> =>
  withOwnSavepoint(
    level,
    savepoint,
    (index) =>
      level.root.dialect.releaseSavepoint(level.connection, savepoint.name).pipe(
        Effect.mapError((error) => classifyError(level.root.dialect, error)),
        // Releasing a savepoint releases the ones created after it too.
        Effect.tap(() => dropFrom(level, index))
      )
  )
