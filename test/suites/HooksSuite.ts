/**
 * Hooks, independent transactions and rollback-only, on every database.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Duration, Effect, Either, FastCheck, Layer, Option } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionError,
  TransactionLayer,
  TransactionManager,
  TransactionMetrics,
  withRetry
} from "../../src/index.js"
import type { Target } from "./TransactionSuite.js"
import { Boom, deadlock, makeTable } from "./TransactionSuite.js"

export const suite = (target: Target) => {
  const live = TransactionLayer.pipe(Layer.provideMerge(target.layer()))

  describe(`${target.name}: hooks`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("run in registration order: beforeCommit inside, afterCommit after the COMMIT, outside", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("hooks_order")
          const events: Array<string> = []
          const note = (event: string) => Effect.sync(() => events.push(event))
          yield* Effect.gen(function*() {
            yield* Transaction.afterCommit(Effect.gen(function*() {
              // Outside: no transaction, and a pooled connection that sees the committed rows.
              const current = yield* Transaction.current
              const rows = yield* sql.unsafe<{ id: number }>(`SELECT id FROM ${t.name}`)
              events.push(`after1 in=${Option.isSome(current)} rows=${rows.length}`)
            }))
            yield* Transaction.beforeCommit(Effect.zipRight(t.insert(2), note("before1")))
            yield* Transaction.afterCommit(note("after2"))
            yield* Transaction.beforeCommit(Effect.gen(function*() {
              const current = yield* Transaction.current
              events.push(`before2 depth=${Option.map(current, (c) => c.depth).pipe(Option.getOrElse(() => -1))}`)
            }))
            yield* t.insert(1)
            yield* note("body")
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(events, ["body", "before1", "before2 depth=0", "after1 in=false rows=2", "after2"])
          assert.deepStrictEqual(yield* t.ids, [1, 2])
        }))

      it.scoped("a failing beforeCommit rolls back and is the result; afterRollback runs, afterCommit does not", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("hooks_before_fail")
          const events: Array<string> = []
          const exit = yield* Effect.gen(function*() {
            yield* t.insert(1)
            yield* Transaction.afterCommit(Effect.sync(() => events.push("afterCommit")))
            yield* Transaction.afterRollback(Effect.sync(() => events.push("afterRollback")))
            yield* Transaction.beforeCommit(Effect.fail(deadlock))
          }).pipe(Transaction.atomic(), Effect.either)
          assert.isTrue(Either.isLeft(exit) && exit.left._tag === "DeadlockDetected" && exit.left.code === "40P01")
          assert.deepStrictEqual(events, ["afterRollback"])
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("beforeRollback runs inside the transaction before ROLLBACK, afterRollback after it", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("hooks_rollback")
          const seen: Array<string> = []
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            yield* Transaction.beforeRollback(Effect.map(t.idsHere, (ids) => seen.push(`before ${ids}`)))
            yield* Transaction.afterRollback(Effect.map(t.idsHere, (ids) => seen.push(`after ${ids}`)))
            return yield* Effect.fail(new Boom())
          }).pipe(Transaction.atomic(), Effect.either)
          assert.deepStrictEqual(seen, ["before 1", "after "])
        }))

      it.scoped("setRollbackOnly: the value is returned, afterRollback runs, afterCommit does not", () =>
        Effect.gen(function*() {
          const events: Array<string> = []
          const value = yield* Effect.gen(function*() {
            yield* Transaction.afterCommit(Effect.sync(() => events.push("afterCommit")))
            yield* Transaction.afterRollback(Effect.sync(() => events.push("afterRollback")))
            yield* Transaction.setRollbackOnly
            return "value"
          }).pipe(Transaction.atomic())
          assert.strictEqual(value, "value")
          assert.deepStrictEqual(events, ["afterRollback"])
        }))

      it.scoped("hooks of a nested block run at the outermost end, or are discarded with its savepoint", () =>
        Effect.gen(function*() {
          const events: Array<string> = []
          const hooksOf = (name: string) =>
            Effect.zipRight(
              Transaction.afterCommit(Effect.sync(() => events.push(`${name}:afterCommit`))),
              Transaction.afterRollback(Effect.sync(() => events.push(`${name}:afterRollback`)))
            )
          yield* Effect.gen(function*() {
            yield* hooksOf("outer")
            yield* hooksOf("kept").pipe(Transaction.atomic())
            events.push("after kept block")
            yield* hooksOf("dropped").pipe(
              Effect.zipRight(Effect.fail(new Boom())),
              Transaction.atomic(),
              Effect.either
            )
            yield* Effect.gen(function*() {
              yield* hooksOf("deep")
              yield* hooksOf("deeper").pipe(Transaction.atomic())
            }).pipe(Transaction.atomic())
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(events, [
            "after kept block",
            "outer:afterCommit",
            "kept:afterCommit",
            "deep:afterCommit",
            "deeper:afterCommit"
          ])
        }))

      it.scoped("failures and defects of afterCommit hooks are counted and never change the outcome", () =>
        Effect.gen(function*() {
          const hookFailures = Effect.map(
            TransactionMetrics.snapshot,
            (snapshot) => snapshot.byName["hook_failures"]?.hookFailures ?? 0
          )
          const before = yield* hookFailures
          const events: Array<string> = []
          const value = yield* Effect.gen(function*() {
            yield* Transaction.afterCommit(Effect.fail("nope"))
            yield* Transaction.afterCommit(Effect.dieMessage("boom"))
            yield* Transaction.afterCommit(Effect.sync(() => events.push("still runs")))
            return 7
          }).pipe(Transaction.atomic({ name: "hook_failures" }))
          assert.strictEqual(value, 7)
          assert.deepStrictEqual(events, ["still runs"])
          assert.strictEqual((yield* hookFailures) - before, 2)
        }))

      it.scoped("under withRetry, the hooks of a failed attempt are discarded: each runs once", () =>
        Effect.gen(function*() {
          const events: Array<string> = []
          let attempt = 0
          const value = yield* Effect.gen(function*() {
            attempt++
            const mine = attempt
            yield* Transaction.afterCommit(Effect.sync(() => events.push(`afterCommit ${mine}`)))
            yield* Transaction.afterRollback(Effect.sync(() => events.push(`afterRollback ${mine}`)))
            const info = yield* Transaction.current
            if (mine < 3) return yield* Effect.fail(deadlock)
            return Option.map(info, (i) => i.attempt)
          }).pipe(Transaction.atomic(), withRetry(RetryPolicy.exponential({ base: "1 millis" })))
          assert.deepStrictEqual(value, Option.some(3))
          assert.deepStrictEqual(events, ["afterCommit 3"])
        }))

      it.scoped("under withRetry, when every attempt fails, afterRollback runs once, for the last attempt", () =>
        Effect.gen(function*() {
          const events: Array<string> = []
          let attempt = 0
          const result = yield* Effect.gen(function*() {
            attempt++
            const mine = attempt
            yield* Transaction.afterRollback(Effect.sync(() => events.push(`afterRollback ${mine}`)))
            return yield* Effect.fail(deadlock)
          }).pipe(
            Transaction.atomic(),
            withRetry(RetryPolicy.exponential({ base: "1 millis", times: 2 })),
            Effect.either
          )
          assert.isTrue(Either.isLeft(result))
          assert.deepStrictEqual(events, ["afterRollback 3"])
        }))

      it.scoped("global hooks receive the transaction's info, outcome and attempt", () =>
        Effect.gen(function*() {
          const seen: Array<string> = []
          const manager = yield* TransactionManager.make({
            hooks: {
              beforeCommit: (info) => Effect.sync(() => seen.push(`beforeCommit ${info.name} ${info.outcome}`)),
              afterCommit: (info) =>
                Effect.sync(() => seen.push(`afterCommit ${info.name} ${info.outcome} attempt=${info.attempt}`)),
              afterRollback: (info) =>
                Effect.sync(() =>
                  seen.push(`afterRollback ${info.name} ${info.outcome} ${Duration.isFinite(info.duration)}`)
                )
            }
          })
          const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.provideService(effect, TransactionManager.TransactionManager, manager)
          yield* Transaction.atomic(Effect.void, { name: "ok" }).pipe(run)
          yield* Transaction.atomic(Effect.fail(new Boom()), { name: "ko" }).pipe(run, Effect.either)
          assert.deepStrictEqual(seen, [
            "beforeCommit ok undefined",
            "afterCommit ok committed attempt=1",
            "afterRollback ko rolledBack true"
          ])
        }))

      it.scoped("a global beforeCommit's failure is typed: it rolls back and is atomic's error, no cast", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("global_before_commit")
          const manager = yield* TransactionManager.make({
            hooks: { beforeCommit: (info) => info.name === "refused" ? Effect.fail(deadlock) : Effect.void }
          })
          const run = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.provideService(effect, TransactionManager.TransactionManager, manager)
          const error: TransactionError.TransactionError | SqlError = yield* t.insert(1).pipe(
            Transaction.atomic({ name: "refused" }),
            run,
            Effect.flip
          )
          assert.strictEqual(error._tag, "DeadlockDetected")
          yield* t.insert(2).pipe(Transaction.atomic({ name: "accepted" }), run)
          assert.deepStrictEqual(yield* t.ids, [2])
          // The types: beforeCommit fails only as atomic can (like Transaction.beforeCommit), the others with anything.
          const hooks: TransactionManager.TransactionHooks = {
            // @ts-expect-error an error of its own would not appear in the error type of atomic
            beforeCommit: () => Effect.fail(new Boom()),
            afterCommit: () => Effect.fail(new Boom()),
            beforeRollback: () => Effect.fail(new Boom()),
            afterRollback: () => Effect.fail(new Boom())
          }
          assert.isDefined(hooks)
        }))
    })
  })

  describe(`${target.name}: independent transactions`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      // SQLite has one connection per client: there an independent transaction inside another cannot have one (the
      // pool-of-one test below shows what it does instead).
      if (!target.concurrentConnections) return
      it.scoped("an independent transaction commits on its own connection and survives the outer rollback", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("independent")
          const log = yield* makeTable("independent_audit")
          const exit = yield* Effect.gen(function*() {
            yield* t.insert(1)
            const inner = yield* Effect.zipRight(log.insert(1), Transaction.current).pipe(Transaction.independent())
            assert.isTrue(Option.isSome(inner) && inner.value.depth === 0)
            return yield* Effect.fail(new Boom())
          }).pipe(Transaction.atomic(), Effect.either)
          assert.isTrue(Either.isLeft(exit))
          assert.deepStrictEqual(yield* t.ids, [])
          assert.deepStrictEqual(yield* log.ids, [1])
        }))
    })

    const single = TransactionLayer.pipe(Layer.provideMerge(target.layer({ maxConnections: 1 })))
    layer(single, { excludeTestServices: true })((it) => {
      it.scoped(
        "with no connection to give, independent fails with ConnectionUnavailable instead of hanging",
        () =>
          Effect.gen(function*() {
            const manager = yield* TransactionManager.make({ acquireTimeout: "200 millis" })
            const error = yield* Transaction.independent(Effect.void).pipe(
              Effect.flip,
              Transaction.atomic(),
              Effect.provideService(TransactionManager.TransactionManager, manager)
            )
            assert.strictEqual(error._tag, "ConnectionUnavailable")
            // Without an acquireTimeout on the manager, independent still does not wait forever (5 s).
            const start = Date.now()
            const fallback = yield* Transaction.independent(Effect.void).pipe(Effect.flip, Transaction.atomic())
            assert.strictEqual(fallback._tag, "ConnectionUnavailable")
            assert.isBelow(Date.now() - start, 20_000)
          }),
        30_000
      )
    })
  })
}

/** A block of the generated trees: it writes row `id`, registers hooks, runs its children, then fails or not. */
interface Block {
  readonly id: number
  readonly fails: boolean
  /** When this block fails, its parent catches the failure and goes on. */
  readonly caught: boolean
  readonly children: ReadonlyArray<Block>
}

/** A block before numbering. */
interface Shape {
  readonly fails: boolean
  readonly caught: boolean
  readonly children: ReadonlyArray<Shape>
}

const blockArbitrary = (depth: number): FastCheck.Arbitrary<Shape> =>
  FastCheck.record({
    fails: FastCheck.boolean(),
    caught: FastCheck.boolean(),
    children: depth === 0
      ? FastCheck.constant([])
      : FastCheck.array(blockArbitrary(depth - 1), { maxLength: 3 })
  })

/** Numbers the blocks in the order they run. */
const numbered = (tree: Shape): Block => {
  let next = 0
  const go = (block: Shape): Block => {
    const id = ++next
    return { id, fails: block.fails, caught: block.caught, children: block.children.map(go) }
  }
  return go(tree)
}

/**
 * The model: which rows a block leaves to its parent, and the hooks registered so far (its own first, then those of
 * its committed children), or a failure with the hooks registered until then.
 */
const model = (block: Block): { readonly ok: boolean; readonly rows: Array<number>; readonly hooks: Array<string> } => {
  const rows = [block.id]
  const hooks = [`commit ${block.id}`, `rollback ${block.id}`]
  for (const child of block.children) {
    const result = model(child)
    if (result.ok) {
      rows.push(...result.rows)
      hooks.push(...result.hooks)
    } else if (!child.caught) {
      return { ok: false, rows, hooks }
    }
  }
  return { ok: !block.fails, rows, hooks }
}

export const propertySuite = (target: Target, runs: number) => {
  describe(`${target.name}: hooks and savepoints against a model`, () => {
    layer(TransactionLayer.pipe(Layer.provideMerge(target.layer())), { excludeTestServices: true })((it) => {
      it.scoped.prop(
        `random trees of nested blocks (${runs} cases)`,
        { tree: blockArbitrary(3) },
        ({ tree }) =>
          Effect.gen(function*() {
            const root = numbered(tree)
            const t = yield* makeTable("prop")
            const events: Array<string> = []
            const run = (block: Block): Effect.Effect<void, Boom | unknown, any> =>
              Effect.gen(function*() {
                yield* t.insert(block.id)
                yield* Transaction.afterCommit(Effect.sync(() => events.push(`commit ${block.id}`)))
                yield* Transaction.afterRollback(Effect.sync(() => events.push(`rollback ${block.id}`)))
                for (const child of block.children) {
                  const nested = run(child).pipe(Transaction.atomic())
                  yield* child.caught ? Effect.ignore(nested) : nested
                }
                if (block.fails) return yield* Effect.fail(new Boom())
              })
            const outcome = yield* Effect.either(run(root).pipe(Transaction.atomic()))
            const expected = model(root)
            assert.strictEqual(Either.isRight(outcome), expected.ok)
            assert.deepStrictEqual(yield* t.ids, expected.ok ? [...expected.rows].sort((a, b) => a - b) : [])
            assert.deepStrictEqual(
              events,
              expected.hooks.filter((hook) => hook.startsWith(expected.ok ? "commit" : "rollback"))
            )
          }),
        { fastCheck: { numRuns: runs }, timeout: 300_000 }
      )
    })
  })
}
