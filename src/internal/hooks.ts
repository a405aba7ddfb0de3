/**
 * Transaction hooks: registration (capturing the effect's context), and running them with the rules of each kind.
 */
import * as Cause from "effect/Cause"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import { HookTimeout } from "../TransactionError.js"
import type { HookInfo, TransactionHooks } from "../TransactionManager.js"
import { withoutTransaction } from "./context.js"
import type { Recorder } from "./metrics.js"

/** @internal */
export type HookKind = "beforeCommit" | "afterCommit" | "beforeRollback" | "afterRollback"

/** @internal A registered hook, with the context it was registered in (less the transaction). */
export interface Hook {
  readonly kind: HookKind
  readonly effect: Effect.Effect<void, unknown>
}

/** @internal */
export const capture = <R>(
  kind: HookKind,
  effect: Effect.Effect<unknown, unknown, R>,
  context: Context.Context<R>
) => ({
  kind,
  effect: Effect.asVoid(Effect.provide(effect, withoutTransaction(context)))
})

const recordFailure = (
  kind: HookKind,
  cause: Cause.Cause<unknown>,
  info: HookInfo,
  recorder: Recorder
): Effect.Effect<void> =>
  Effect.zipRight(
    Effect.sync(() => recorder.hookFailed(kind)),
    Effect.logWarning(`effect-sql-tx: a hook failed (${kind}); the transaction's outcome is unchanged`, cause).pipe(
      Effect.annotateLogs({ transaction: info.name, id: info.id })
    )
  )

/**
 * @internal
 * The hooks of one kind, global first, then the registered ones in registration order (including those registered
 * while they run). `beforeCommit` stops at the first failure or defect, which becomes the transaction's; the other
 * kinds log and count each failure and go on. Each hook is interrupted past `timeout` (a `HookTimeout` failure).
 */
export const run = (
  kind: HookKind,
  hooks: ReadonlyArray<Hook>,
  global: TransactionHooks | undefined,
  info: HookInfo,
  inside: (effect: Effect.Effect<void, unknown>) => Effect.Effect<void, unknown>,
  recorder: Recorder,
  timeout: Duration.Duration
): Effect.Effect<void, unknown> => {
  const globalHook = global?.[kind]
  const bounded = (effect: Effect.Effect<void, unknown>): Effect.Effect<void, unknown> =>
    // In a daemon fiber, interruptible there: the transaction closes uninterruptibly, and the caller may have been
    // interrupted (an interruptible region of its fiber would end at once, and its interruption reaches its child
    // fibers, the timeout's included, even while it is uninterruptible). The caller waits for the daemon.
    Effect.disconnect(Effect.timeoutFail(Effect.interruptible(inside(effect)), {
      duration: timeout,
      onTimeout: () => new HookTimeout({ hook: kind, name: info.name, timeout })
    }))
  const one = (effect: Effect.Effect<void, unknown>): Effect.Effect<void, unknown> =>
    kind === "beforeCommit"
      ? bounded(effect)
      : Effect.catchAllCause(bounded(effect), (cause) => recordFailure(kind, cause, info, recorder))
  return Effect.suspend(() => {
    let index = 0
    const next = (): Effect.Effect<void, unknown> => {
      while (index < hooks.length && hooks[index]!.kind !== kind) index++
      if (index >= hooks.length) return Effect.void
      const hook = hooks[index++]!
      return Effect.zipRight(one(hook.effect), Effect.suspend(next))
    }
    return Effect.zipRight(globalHook === undefined ? Effect.void : one(Effect.suspend(() => globalHook(info))), next())
  })
}
