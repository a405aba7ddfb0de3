/**
 * The behaviour every database must show, written once and run against each real server by a one-line test file.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import {
  Cause,
  Chunk,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  FiberId,
  FiberRef,
  Layer,
  Option,
  Request,
  RequestResolver,
  TestClock,
  TestContext
} from "effect"
import { Transaction, TransactionError, TransactionLayer, TransactionManager } from "../../src/index.js"
import type { PoolOptions } from "../utils/databases.js"
import { uniqueTable } from "../utils/databases.js"
import { SentStatements, spy } from "../utils/spy.js"

export interface Target {
  readonly name: "pg" | "mysql" | "sqlite"
  readonly layer: (options?: PoolOptions) => Layer.Layer<SqlClient.SqlClient, unknown>
  /** Whether the connection that plain statements get is inside a transaction. */
  readonly inTransaction: Effect.Effect<boolean, SqlError, SqlClient.SqlClient>
  /** The server's id of the connection statements run on (0 where there is only one). */
  readonly connectionId: Effect.Effect<number, SqlError, SqlClient.SqlClient>
  /** Whether another connection can commit while a transaction is open (not SQLite: one connection). */
  readonly concurrentConnections: boolean
  /** SQL that leaves a connection inside a transaction, in a state where the next BEGIN fails. */
  readonly leakTransaction: string
  /** Makes the table's `v` column unique, checked at COMMIT (where the database has deferred constraints). */
  readonly deferredUnique?: ((table: string) => string) | undefined
}

/** Runs an effect outside the current transaction: its statements take a pooled connection. */
export const outside = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.mapInputContext(
    effect,
    (context: Context.Context<R>) =>
      Context.omit(SqlClient.TransactionConnection, Transaction.Transaction)(context) as Context.Context<R>
  )

/** A table of its own for one test, dropped at the end of the test's scope. */
export const makeTable = (prefix: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const name = uniqueTable(prefix)
    yield* Effect.acquireRelease(
      sql.unsafe(`CREATE TABLE ${name} (id INTEGER PRIMARY KEY, v INTEGER NOT NULL DEFAULT 0)`),
      () => Effect.ignore(sql.unsafe(`DROP TABLE IF EXISTS ${name}`))
    )
    const insert = (id: number) => sql.unsafe(`INSERT INTO ${name} (id, v) VALUES (${id}, ${id})`)
    const ids = outside(
      Effect.map(sql.unsafe<{ id: number }>(`SELECT id FROM ${name} ORDER BY id`), (rows) => rows.map((r) => r.id))
    )
    const idsHere = Effect.map(
      sql.unsafe<{ id: number }>(`SELECT id FROM ${name} ORDER BY id`),
      (rows) => rows.map((r) => Number(r.id))
    )
    return { name, insert, ids: Effect.map(ids, (ids) => ids.map(Number)), idsHere }
  })

/** A request answered after 300 ms, in batches: a body that makes one under request batching blocks on it. */
interface Slow extends Request.Request<number> {
  readonly _tag: "Slow"
  readonly id: number
}
const Slow = Request.tagged<Slow>("Slow")
const slowResolver = RequestResolver.makeBatched((requests: ReadonlyArray<Slow>) =>
  Effect.zipRight(
    Effect.sleep("300 millis"),
    Effect.forEach(requests, (r) => Request.succeed(r, r.id), { discard: true })
  )
)

/** A typed failure of a body, for the suites. */
export class Boom {
  readonly _tag = "Boom"
}

/** A deadlock as the classifier makes it, for the suites' retry scripts. */
export const deadlock = new TransactionError.DeadlockDetected({ dialect: "pg", code: "40P01", cause: undefined })

/**
 * Holds the pool's one connection in a transaction until `release`, which lets it commit and waits for it: the
 * pool-of-one tests make the next transaction wait for a connection with it.
 */
const holdTheConnection = Effect.gen(function*() {
  const holding = yield* Deferred.make<void>()
  const releaseHolder = yield* Deferred.make<void>()
  const holder = yield* Deferred.succeed(holding, undefined).pipe(
    Effect.zipRight(Deferred.await(releaseHolder)),
    Transaction.atomic(),
    Effect.fork
  )
  yield* Deferred.await(holding)
  return { release: Effect.zipRight(Deferred.succeed(releaseHolder, undefined), Fiber.join(holder)) }
})

const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const failure = Cause.failureOption((exit as Exit.Failure<A, E>).cause)
  assert.isTrue(Option.isSome(failure), `expected a typed failure, got ${Cause.pretty((exit as any).cause)}`)
  assert.isFalse(Cause.isDie((exit as Exit.Failure<A, E>).cause), "expected no defect")
  return (failure as Option.Some<E>).value
}

export const suite = (target: Target) => {
  const live = TransactionLayer.pipe(Layer.provideMerge(spy(target.layer())))

  describe(`${target.name}: commit and rollback`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("success commits", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("commit")
          const result = yield* Effect.as(Effect.zipRight(t.insert(1), t.insert(2)), "done").pipe(Transaction.atomic())
          assert.strictEqual(result, "done")
          assert.deepStrictEqual(yield* t.ids, [1, 2])
        }))

      it.scoped("statements inside run on the transaction's one connection", () =>
        Effect.gen(function*() {
          const ids = yield* Effect.all([target.connectionId, target.connectionId, target.connectionId]).pipe(
            Transaction.atomic()
          )
          assert.strictEqual(new Set(ids).size, 1)
        }))

      it.scoped("a typed failure rolls back and is returned unchanged", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("fail")
          const exit = yield* t.insert(1).pipe(
            Effect.zipRight(Effect.fail(new Boom())),
            Transaction.atomic(),
            Effect.exit
          )
          assert.instanceOf(failureOf(exit), Boom)
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("a defect rolls back and stays a defect", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("die")
          const exit = yield* t.insert(1).pipe(
            Effect.zipRight(Effect.dieMessage("boom")),
            Transaction.atomic(),
            Effect.exit
          )
          assert.isTrue(Exit.isFailure(exit) && Cause.isDie(exit.cause))
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("an interruption rolls back", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("interrupt")
          const inserted = yield* Deferred.make<void>()
          const fiber = yield* t.insert(1).pipe(
            Effect.zipRight(Deferred.succeed(inserted, undefined)),
            Effect.zipRight(Effect.never),
            Transaction.atomic(),
            Effect.fork
          )
          yield* Deferred.await(inserted)
          const exit = yield* Fiber.interrupt(fiber)
          assert.isTrue(Exit.isInterrupted(exit))
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("setRollbackOnly returns the value and rolls back", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("rollback_only")
          const value = yield* t.insert(1).pipe(
            Effect.zipRight(Transaction.setRollbackOnly),
            Effect.as(42),
            Transaction.atomic()
          )
          assert.strictEqual(value, 42)
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("Transaction.current tells whether a transaction runs", () =>
        Effect.gen(function*() {
          assert.isTrue(Option.isNone(yield* Transaction.current))
          const [outer, inner] = yield* Effect.zip(
            Transaction.current,
            Transaction.current.pipe(Transaction.atomic({ name: "inner" }))
          ).pipe(Transaction.atomic({ name: "outer" }))
          assert.isTrue(Option.isSome(outer) && outer.value.depth === 0 && outer.value.name === "outer")
          assert.isTrue(Option.isSome(inner) && inner.value.depth === 1 && inner.value.name === "inner")
        }))

      it.scoped("begin: the scope's end commits, and statements of the fiber use its connection", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("begin")
          yield* Effect.scoped(Effect.gen(function*() {
            const tx = yield* Transaction.begin({ name: "scoped" })
            assert.strictEqual(tx.depth, 0)
            yield* t.insert(1)
            assert.isTrue(yield* target.inTransaction)
          }))
          assert.deepStrictEqual(yield* t.ids, [1])
          const exit = yield* Effect.scoped(Effect.gen(function*() {
            yield* Transaction.begin()
            yield* t.insert(2)
            return yield* Effect.fail(new Boom())
          })).pipe(Effect.exit)
          assert.instanceOf(failureOf(exit), Boom)
          assert.deepStrictEqual(yield* t.ids, [1])
        }))

      it.scoped("a flat transaction sends BEGIN, its statements and COMMIT, nothing else", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("wire")
          const log = yield* SentStatements
          log.length = 0
          yield* t.insert(1).pipe(Transaction.atomic({ name: "wire" }))
          assert.strictEqual(log.length, 3, log.join(" | "))
          assert.match(log[0]!, /BEGIN|START TRANSACTION/)
          assert.strictEqual(log[2], "COMMIT")
        }))
    })
  })

  describe(`${target.name}: nesting`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      for (const depth of [2, 3, 5]) {
        it.scoped(`${depth} levels commit together, each a savepoint, with no RELEASE (COMMIT ends them)`, () =>
          Effect.gen(function*() {
            const t = yield* makeTable(`nest${depth}`)
            const log = yield* SentStatements
            let program: Effect.Effect<void, unknown, SqlClient.SqlClient | TransactionManager.TransactionManager> = t
              .insert(depth)
            for (let level = depth - 1; level >= 1; level--) {
              program = Effect.zipRight(t.insert(level), program.pipe(Transaction.atomic()))
            }
            log.length = 0
            yield* Transaction.atomic(program)
            assert.deepStrictEqual(yield* t.ids, Array.from({ length: depth }, (_, i) => i + 1))
            const savepoints = log.filter((s) => s.startsWith("SAVEPOINT")).length
            const releases = log.filter((s) => s.startsWith("RELEASE SAVEPOINT")).length
            assert.strictEqual(savepoints, depth - 1)
            assert.strictEqual(releases, 0)
            assert.strictEqual(log.length, 2 + depth + (depth - 1), log.join(" | "))
          }))
      }

      it.scoped("an inner failure caught by the outer block keeps the outer work", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("caught")
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            const inner = yield* t.insert(2).pipe(
              Effect.zipRight(t.insert(3).pipe(Transaction.atomic())),
              Effect.zipRight(Effect.fail(new Boom())),
              Transaction.atomic(),
              Effect.either
            )
            assert.isTrue(Either.isLeft(inner))
            assert.deepStrictEqual(yield* t.idsHere, [1])
            yield* t.insert(4)
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1, 4])
        }))

      it.scoped("an inner defect and an inner interruption roll back to the savepoint", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("inner_die")
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            const died = yield* t.insert(2).pipe(
              Effect.zipRight(Effect.dieMessage("x")),
              Transaction.atomic(),
              Effect.exit
            )
            assert.isTrue(Exit.isFailure(died) && Cause.isDie(died.cause))
            const started = yield* Deferred.make<void>()
            const fiber = yield* t.insert(3).pipe(
              Effect.zipRight(Deferred.succeed(started, undefined)),
              Effect.zipRight(Effect.never),
              Transaction.atomic(),
              Effect.fork
            )
            yield* Deferred.await(started)
            yield* Fiber.interrupt(fiber)
            yield* t.insert(4)
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1, 4])
        }))

      it.scoped("the outer rollback discards committed inner blocks", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("outer_fail")
          const exit = yield* t.insert(1).pipe(
            Effect.zipRight(t.insert(2).pipe(Transaction.atomic())),
            Effect.zipRight(Effect.fail(new Boom())),
            Transaction.atomic(),
            Effect.exit
          )
          assert.instanceOf(failureOf(exit), Boom)
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("setRollbackOnly in a nested block rolls back that block only", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("nested_rollback_only")
          const value = yield* Effect.gen(function*() {
            yield* t.insert(1)
            return yield* t.insert(2).pipe(
              Effect.zipRight(Transaction.setRollbackOnly),
              Effect.as("kept"),
              Transaction.atomic()
            )
          }).pipe(Transaction.atomic())
          assert.strictEqual(value, "kept")
          assert.deepStrictEqual(yield* t.ids, [1])
        }))

      it.scoped("nested blocks of concurrent fibers are serialized, never interleaved", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("concurrent")
          let active = 0
          let most = 0
          const block = (id: number) =>
            Effect.gen(function*() {
              active++
              most = Math.max(most, active)
              yield* t.insert(id)
              yield* Effect.sleep("2 millis")
              yield* t.insert(id + 100)
              active--
              if (id % 2 === 0) return yield* Effect.fail(new Boom())
            }).pipe(
              Effect.onExit(() => Effect.sync(() => active = Math.max(0, active))),
              Transaction.atomic(),
              Effect.either
            )
          const results = yield* Effect.forEach(Array.from({ length: 8 }, (_, i) => i + 1), block, {
            concurrency: "unbounded"
          }).pipe(Transaction.atomic())
          assert.strictEqual(results.filter(Either.isLeft).length, 4)
          assert.strictEqual(most, 1)
          assert.deepStrictEqual(yield* t.ids, [1, 3, 5, 7, 101, 103, 105, 107])
        }))

      it.scoped("sql.withTransaction inside atomic is a savepoint on the same connection", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("with_tx")
          const log = yield* SentStatements
          log.length = 0
          yield* Effect.gen(function*() {
            const outerId = yield* target.connectionId
            const innerId = yield* sql.withTransaction(Effect.zipRight(t.insert(1), target.connectionId))
            assert.strictEqual(innerId, outerId)
            const failed = yield* sql.withTransaction(Effect.zipRight(t.insert(2), Effect.fail(new Boom()))).pipe(
              Effect.either
            )
            assert.isTrue(Either.isLeft(failed))
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1])
          assert.isTrue(log.some((s) => s.startsWith("SAVEPOINT effect_sql_1")), log.join(" | "))
        }))

      it.scoped("atomic inside a plain sql.withTransaction joins it with a savepoint", () =>
        Effect.gen(function*() {
          const sql = yield* SqlClient.SqlClient
          const t = yield* makeTable("foreign")
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            const failed = yield* t.insert(2).pipe(
              Effect.zipRight(Effect.fail(new Boom())),
              Transaction.atomic(),
              Effect.either
            )
            assert.isTrue(Either.isLeft(failed))
            yield* t.insert(3).pipe(Transaction.atomic())
          }).pipe(sql.withTransaction)
          assert.deepStrictEqual(yield* t.ids, [1, 3])
        }))
    })
  })

  describe(`${target.name}: manual savepoints`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("rollbackTo undoes the work after the savepoint, release keeps it", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("manual")
          yield* Effect.gen(function*() {
            yield* t.insert(1)
            const a = yield* Transaction.savepoint("a")
            yield* t.insert(2)
            const b = yield* Transaction.savepoint()
            yield* t.insert(3)
            yield* Transaction.rollbackTo(a)
            assert.deepStrictEqual(yield* t.idsHere, [1])
            // b was made after a: rolling back to a destroyed it.
            const gone = yield* Effect.flip(Transaction.release(b))
            assert.strictEqual(gone._tag, "SavepointError")
            yield* t.insert(4)
            yield* Transaction.release(a)
            const released = yield* Effect.flip(Transaction.rollbackTo(a))
            assert.strictEqual(released._tag, "SavepointError")
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1, 4])
        }))

      it.scoped("invalid, duplicate, reserved and foreign savepoint names fail with SavepointError, sending nothing", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("bad_names")
          const log = yield* SentStatements
          yield* Effect.gen(function*() {
            log.length = 0
            for (const name of ["x; DROP TABLE users", "1abc", "", "a".repeat(64), "with space", "effect_sql_tx_1"]) {
              const error = yield* Effect.flip(Transaction.savepoint(name))
              assert.strictEqual(error._tag, "SavepointError", name)
            }
            yield* Transaction.savepoint("dup")
            const dup = yield* Effect.flip(Transaction.savepoint("dup"))
            assert.strictEqual(dup._tag, "SavepointError")
            const other = yield* Transaction.savepoint("other").pipe(Transaction.atomic())
            const foreign = yield* Effect.flip(Transaction.rollbackTo(other))
            assert.strictEqual(foreign._tag, "SavepointError")
            const forged = yield* Effect.flip(
              Transaction.release({ _tag: "Savepoint", name: "dup", transactionId: "forged" })
            )
            assert.strictEqual(forged._tag, "SavepointError")
            // Only the two valid savepoints (and the nested block's own) reached the server.
            assert.deepStrictEqual(
              log.filter((s) => s.startsWith("SAVEPOINT")).map((s) =>
                s.split(" ")[1]!.replace(/^effect_sql_tx_\d+$/, "N")
              ),
              ["dup", "N", "other"]
            )
            yield* t.insert(1)
          }).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [1])
        }))
    })
  })

  describe(`${target.name}: options`, () => {
    layer(live, { excludeTestServices: true })((it) => {
      it.scoped("read-only transactions refuse writes with ReadOnlyViolation", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("read_only")
          const error = yield* t.insert(1).pipe(Transaction.atomic({ readOnly: true }), Effect.flip)
          assert.strictEqual(error._tag, "ReadOnlyViolation")
          assert.strictEqual((error as TransactionError.ReadOnlyViolation).dialect, target.name)
          assert.deepStrictEqual(yield* t.idsHere.pipe(Transaction.atomic({ readOnly: true })), [])
          // The connection is writable again afterwards.
          yield* t.insert(2).pipe(Transaction.atomic())
          assert.deepStrictEqual(yield* t.ids, [2])
        }))

      it.scoped("every isolation level is accepted and commits", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("levels")
          const levels = ["read uncommitted", "read committed", "repeatable read", "serializable"] as const
          for (const [i, isolation] of levels.entries()) {
            yield* t.insert(i).pipe(Transaction.atomic({ isolation }))
          }
          assert.deepStrictEqual(yield* t.ids, [0, 1, 2, 3])
        }))

      if (target.concurrentConnections) {
        for (
          const [isolation, seesConcurrentCommit] of [["repeatable read", false], ["read committed", true]] as const
        ) {
          it.scoped(`${isolation} is in effect: a concurrent commit is ${seesConcurrentCommit ? "" : "not "}seen`, () =>
            Effect.gen(function*() {
              const t = yield* makeTable("snapshot")
              yield* t.insert(1)
              const [before, after] = yield* Effect.gen(function*() {
                const before = yield* t.idsHere
                yield* outside(t.insert(2))
                const after = yield* t.idsHere
                return [before, after] as const
              }).pipe(Transaction.atomic({ isolation }))
              assert.deepStrictEqual(before, [1])
              assert.deepStrictEqual(after, seesConcurrentCommit ? [1, 2] : [1])
            }))
        }
      }

      it.effect("invalid options fail with InvalidTransactionOptions before anything is sent", () =>
        Effect.gen(function*() {
          const log = yield* SentStatements
          log.length = 0
          const bad: ReadonlyArray<Transaction.TransactionOptions> = [
            { isolation: "snapshot" as any },
            { isolation: "SERIALIZABLE" as any },
            { timeout: -1 },
            { timeout: Number.NaN },
            { timeout: Number.POSITIVE_INFINITY },
            { timeout: "-5 seconds" },
            { timeout: 0 },
            { lockTimeout: "forever" as any },
            { readOnly: "yes" as any },
            { name: "" },
            { name: "bad\nname" }
          ]
          for (const options of bad) {
            const error = yield* Effect.flip(Transaction.atomic(Effect.void, options))
            assert.strictEqual(error._tag, "InvalidTransactionOptions", JSON.stringify(options))
          }
          assert.deepStrictEqual(log, [])
        }))

      it.effect("deferrable is refused unless PostgreSQL, serializable and read-only", () =>
        Effect.gen(function*() {
          const plain = yield* Effect.flip(Transaction.atomic(Effect.void, { deferrable: true }))
          assert.strictEqual(plain._tag, "InvalidTransactionOptions")
          const full = yield* Effect.either(
            Transaction.atomic(Effect.void, { deferrable: true, isolation: "serializable", readOnly: true })
          )
          assert.strictEqual(Either.isRight(full), target.name === "pg")
          if (Either.isLeft(full)) assert.strictEqual(full.left._tag, "InvalidTransactionOptions")
        }))

      it.effect("a nested block cannot change the isolation level or the access mode", () =>
        Effect.gen(function*() {
          const conflicts = yield* Effect.gen(function*() {
            const isolation = yield* Effect.flip(Transaction.atomic(Effect.void, { isolation: "serializable" }))
            const readWrite = yield* Effect.flip(Transaction.atomic(Effect.void, { readOnly: false }))
            const same = yield* Transaction.atomic(Effect.succeed("ok"), {
              isolation: "repeatable read",
              readOnly: true
            })
            return { isolation, readWrite, same }
          }).pipe(Transaction.atomic({ isolation: "repeatable read", readOnly: true }))
          assert.strictEqual(conflicts.isolation._tag, "TransactionOptionsConflict")
          assert.strictEqual(conflicts.readWrite._tag, "TransactionOptionsConflict")
          assert.strictEqual(conflicts.same, "ok")
          const readOnlyInReadWrite = yield* Transaction.atomic(Effect.void, { readOnly: true }).pipe(
            Effect.flip,
            Transaction.atomic()
          )
          assert.strictEqual(readOnlyInReadWrite._tag, "TransactionOptionsConflict")
        }))

      it.effect("manager defaults apply to outermost transactions and are validated", () =>
        Effect.gen(function*() {
          const manager = yield* TransactionManager.make({ defaults: { name: "dflt", readOnly: true } })
          const info = yield* Transaction.current.pipe(
            Transaction.atomic(),
            Effect.provideService(TransactionManager.TransactionManager, manager)
          )
          assert.isTrue(Option.isSome(info) && info.value.name === "dflt" && info.value.options.readOnly)
          const invalid = yield* Effect.flip(TransactionManager.make({ defaults: { isolation: "chaos" as any } }))
          assert.strictEqual(invalid._tag, "InvalidTransactionOptions")
        }))

      it.scoped("a timeout follows the fiber's Clock: under a TestClock it expires when the clock says so", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("test_clock")
          const liveSleep = Effect.sleep(5).pipe(Effect.withClock(Clock.make()))
          const waitForSleep = Effect.repeat(Effect.zipRight(liveSleep, TestClock.sleeps()), {
            until: (sleeps) => Chunk.isNonEmpty(sleeps)
          })
          const error = yield* Effect.gen(function*() {
            const fiber = yield* Effect.fork(Effect.flip(
              Effect.zipRight(t.insert(1), Effect.never).pipe(Transaction.atomic({ timeout: "10 seconds" }))
            ))
            yield* waitForSleep
            yield* TestClock.adjust("9999 millis")
            yield* Effect.repeatN(liveSleep, 3)
            assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), "still running before the deadline")
            yield* TestClock.adjust("1 millis")
            return yield* Fiber.join(fiber)
          }).pipe(Effect.provide(TestContext.TestContext))
          assert.strictEqual(error._tag, "TransactionTimeout")
          if (error._tag === "TransactionTimeout") {
            assert.strictEqual(Duration.toMillis(error.elapsed), 10_000)
          }
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      // A body under a timeout runs in the caller's fiber; the deadline interrupts that fiber, and the block takes
      // the interruption back off it. These pin what must not leak out of that.
      const fiberId = Effect.map(Effect.fiberId, (id) => FiberId.threadName(id))
      /** A block that inserts 1 and never ends, under a 100 ms timeout: its error, and the fibers of caller and body. */
      const timedOutBlock = (t: Effect.Effect.Success<ReturnType<typeof makeTable>>) =>
        Effect.gen(function*() {
          const caller = yield* fiberId
          let body: string | undefined
          const error = yield* Effect.flip(
            Effect.gen(function*() {
              body = yield* fiberId
              yield* t.insert(1)
              yield* Effect.never
            }).pipe(Transaction.atomic({ timeout: "100 millis" }))
          )
          return { caller, body, error }
        })

      it.scoped("a timed-out body ran in the caller's fiber, which goes on uninterrupted", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_in_place")
          const { body, caller, error } = yield* timedOutBlock(t)
          assert.strictEqual(error._tag, "TransactionTimeout")
          assert.strictEqual(body, caller)
          assert.isTrue(Cause.isEmpty(yield* FiberRef.get(FiberRef.interruptedCause)))
          yield* Effect.sleep("1 millis") // an interruptible step: an interrupted fiber would end here
          yield* t.insert(2).pipe(Transaction.atomic({ timeout: "10 seconds" }))
          assert.deepStrictEqual(yield* t.ids, [2])
        }))

      it.scoped("a caller with a child fiber gets a fiber for a timed body: the deadline leaves its child running", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_child")
          const child = yield* Effect.fork(Effect.never)
          const { body, caller, error } = yield* timedOutBlock(t)
          assert.strictEqual(error._tag, "TransactionTimeout")
          assert.notStrictEqual(body, caller)
          yield* Effect.sleep("50 millis")
          assert.isNull(child.unsafePoll(), "the caller's child still runs")
          yield* Fiber.interrupt(child)
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("the body's own fibers are stopped with it at the deadline, and awaited before the block ends", () =>
        Effect.gen(function*() {
          let forkedEnded = false
          const forked = yield* Deferred.make<Fiber.RuntimeFiber<never>>()
          const error = yield* Effect.flip(
            Effect.gen(function*() {
              const slowToStop = Effect.onInterrupt(
                Effect.never,
                () => Effect.zipRight(Effect.sleep("200 millis"), Effect.sync(() => forkedEnded = true))
              )
              yield* Deferred.succeed(forked, yield* Effect.fork(slowToStop))
              yield* Effect.never
            }).pipe(Transaction.atomic({ timeout: "100 millis" }))
          )
          assert.strictEqual(error._tag, "TransactionTimeout")
          assert.isTrue(forkedEnded, "the body's fiber had ended when the block did")
          assert.isTrue(Exit.isInterrupted(yield* Fiber.await(yield* Deferred.await(forked))))
        }))

      it.scoped("a timed body under request batching: the deadline stops the body, not a sibling of the batch", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_batching")
          const [timed, sibling] = yield* Effect.all([
            Effect.either(
              Effect.zipRight(t.insert(1), Effect.request(Slow({ id: 1 }), slowResolver)).pipe(
                Transaction.atomic({ timeout: "100 millis" })
              )
            ),
            Effect.exit(Effect.sleep("200 millis"))
          ], { batching: true })
          assert.isTrue(Either.isLeft(timed) && timed.left._tag === "TransactionTimeout", String(timed))
          assert.isTrue(Exit.isSuccess(sibling), String(sibling))
          assert.isTrue(Cause.isEmpty(yield* FiberRef.get(FiberRef.interruptedCause)))
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("a timed block in a finalizer of an interrupted fiber: TransactionTimeout, the fiber stays interrupted", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_finalizer")
          const started = yield* Deferred.make<void>()
          let outcome: string | undefined
          const fiber = yield* Effect.fork(
            Effect.zipRight(Deferred.succeed(started, undefined), Effect.never).pipe(
              Effect.ensuring(
                Effect.zipRight(t.insert(1), Effect.sleep("300 millis")).pipe(
                  Transaction.atomic({ timeout: "100 millis" }),
                  Effect.matchCause({
                    onFailure: (cause) =>
                      outcome = Option.match(Cause.failureOption(cause), {
                        onNone: () => Cause.pretty(cause),
                        onSome: (error) => error._tag
                      }),
                    onSuccess: () => outcome = "success"
                  })
                )
              )
            )
          )
          yield* Deferred.await(started)
          const exit = yield* Fiber.interrupt(fiber)
          assert.strictEqual(outcome, "TransactionTimeout")
          assert.isTrue(Exit.isInterrupted(exit))
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("a deadline that falls while the body is uninterruptible: TransactionTimeout when the body ends", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_uninterruptible")
          const error = yield* Effect.flip(
            Effect.zipRight(t.insert(1), Effect.uninterruptible(Effect.sleep("300 millis"))).pipe(
              Transaction.atomic({ timeout: "100 millis" })
            )
          )
          assert.strictEqual(error._tag, "TransactionTimeout")
          if (error._tag === "TransactionTimeout") assert.isAtLeast(Duration.toMillis(error.elapsed), 250)
          assert.isTrue(Cause.isEmpty(yield* FiberRef.get(FiberRef.interruptedCause)))
          yield* Effect.sleep("1 millis")
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("interrupted by another fiber after its deadline fell: TransactionTimeout, then that interruption", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_and_interrupt")
          const started = yield* Deferred.make<void>()
          const fiber = yield* Effect.fork(
            Effect.zipRight(
              t.insert(1),
              Effect.zipRight(Deferred.succeed(started, undefined), Effect.uninterruptible(Effect.sleep("400 millis")))
            ).pipe(Transaction.atomic({ timeout: "100 millis" }))
          )
          yield* Deferred.await(started)
          yield* Effect.sleep("200 millis") // the deadline has fallen; the body cannot be stopped yet
          const interruptor = yield* Effect.fiberId
          const exit = yield* Fiber.interrupt(fiber)
          assert.isTrue(Exit.isFailure(exit), String(exit))
          if (Exit.isFailure(exit)) {
            // Only the other fiber's interruption: the deadline's was taken back.
            assert.deepStrictEqual([...Cause.interruptors(exit.cause)], [interruptor])
            const failure = Cause.failureOption(exit.cause)
            assert.isTrue(Option.isSome(failure) && failure.value._tag === "TransactionTimeout", String(exit))
          }
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("both deadlines fell: the inner block's timeout is not the outer body's to catch, it is stopped", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_both")
          let caught = false
          const error = yield* Effect.flip(
            Effect.zipRight(
              t.insert(1),
              Effect.zipRight(t.insert(2), Effect.uninterruptible(Effect.sleep("300 millis"))).pipe(
                Transaction.atomic({ timeout: "100 millis" }),
                Effect.catchAll(() => Effect.sync(() => caught = true))
              )
            ).pipe(Transaction.atomic({ timeout: "150 millis" }))
          )
          assert.strictEqual(error._tag, "TransactionTimeout")
          if (error._tag === "TransactionTimeout") assert.strictEqual(Duration.toMillis(error.timeout), 150)
          assert.isFalse(caught)
          assert.isTrue(Cause.isEmpty(yield* FiberRef.get(FiberRef.interruptedCause)))
          assert.deepStrictEqual(yield* t.ids, [])
        }))

      it.scoped("an outer deadline that falls inside a nested timed block ends the outer block timed out", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("timeout_outer")
          const error = yield* Effect.flip(
            Effect.zipRight(
              t.insert(1),
              Effect.zipRight(t.insert(2), Effect.never).pipe(Transaction.atomic({ timeout: "10 seconds" }))
            ).pipe(Transaction.atomic({ timeout: "150 millis" }))
          )
          assert.strictEqual(error._tag, "TransactionTimeout")
          if (error._tag === "TransactionTimeout") assert.strictEqual(Duration.toMillis(error.timeout), 150)
          assert.isTrue(Cause.isEmpty(yield* FiberRef.get(FiberRef.interruptedCause)))
          yield* Effect.sleep("1 millis")
          assert.deepStrictEqual(yield* t.ids, [])
        }))
    })
  })

  describe(`${target.name}: a pool of one connection`, () => {
    const single = TransactionLayer.pipe(Layer.provideMerge(spy(target.layer({ maxConnections: 1 }))))
    layer(single, { excludeTestServices: true })((it) => {
      it.scoped("is reused cleanly after every kind of exit", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("pool1")
          let beginFailure: unknown = undefined
          const exits: Array<
            Effect.Effect<unknown, unknown, SqlClient.SqlClient | TransactionManager.TransactionManager>
          > = [
            t.insert(1).pipe(Transaction.atomic()),
            t.insert(2).pipe(Effect.zipRight(Effect.fail(new Boom())), Transaction.atomic()),
            t.insert(3).pipe(Effect.zipRight(Effect.dieMessage("x")), Transaction.atomic()),
            t.insert(4).pipe(Effect.zipRight(Transaction.setRollbackOnly), Transaction.atomic()),
            t.insert(5).pipe(Transaction.atomic({ readOnly: true })),
            t.insert(1).pipe(Transaction.atomic()), // duplicate key: a statement error
            Effect.gen(function*() {
              const started = yield* Deferred.make<void>()
              const fiber = yield* t.insert(6).pipe(
                Effect.zipRight(Deferred.succeed(started, undefined)),
                Effect.zipRight(Effect.never),
                Transaction.atomic(),
                Effect.fork
              )
              yield* Deferred.await(started)
              yield* Fiber.interrupt(fiber)
            }),
            t.insert(7).pipe(Transaction.atomic(), Transaction.atomic()),
            // A failed BEGIN: a connection leaked into the pool inside a transaction (by code that is not ours).
            Effect.scoped(Effect.flatMap(SqlClient.SqlClient, (sql) =>
              Effect.flatMap(sql.reserve, (conn) =>
                Effect.ignore(conn.executeUnprepared(target.leakTransaction, [], undefined))))).pipe(
                Effect.zipRight(
                  t.insert(8).pipe(
                    Transaction.atomic({ isolation: "serializable" }),
                    Effect.tapError((error) =>
                      Effect.sync(() => beginFailure = error)
                    )
                  )
                )
              )
          ]
          if (target.deferredUnique !== undefined) {
            const sql = yield* SqlClient.SqlClient
            yield* sql.unsafe(target.deferredUnique(t.name))
            // A failed COMMIT: the deferred unique constraint is checked then.
            exits.push(
              sql.unsafe(`INSERT INTO ${t.name} (id, v) VALUES (9, 500), (10, 500)`).pipe(Transaction.atomic())
            )
          }
          for (const [i, program] of exits.entries()) {
            yield* Effect.exit(program)
            assert.isFalse(yield* target.inTransaction, `left inside a transaction after exit #${i}`)
          }
          assert.isDefined(beginFailure, "the BEGIN on a connection leaked inside a transaction should fail")
          assert.deepStrictEqual(yield* t.ids, [1, 7])
        }))

      it.scoped("with acquireTimeout, a transaction that cannot get a connection fails with ConnectionUnavailable", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("acquire_timeout")
          const bounded = yield* TransactionManager.make({ acquireTimeout: "200 millis" })
          const holder = yield* holdTheConnection
          const withBound = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.provideService(effect, TransactionManager.TransactionManager, bounded)
          const error = yield* t.insert(1).pipe(Transaction.atomic(), withBound, Effect.flip)
          assert.strictEqual(error._tag, "ConnectionUnavailable")
          // An interruption of the wait takes effect at once.
          const waiter = yield* t.insert(2).pipe(Transaction.atomic(), withBound, Effect.fork)
          yield* Effect.sleep("20 millis")
          assert.isTrue(Exit.isInterrupted(yield* Fiber.interrupt(waiter)))
          yield* holder.release
          yield* t.insert(3).pipe(Transaction.atomic(), withBound)
          assert.deepStrictEqual(yield* t.ids, [3])
        }))

      it.scoped("interrupting a transaction that waits for the pool does not leak the connection", () =>
        Effect.gen(function*() {
          const t = yield* makeTable("pool_wait")
          const holder = yield* holdTheConnection
          const waiter = yield* t.insert(1).pipe(Transaction.atomic(), Effect.fork)
          yield* Effect.sleep("50 millis")
          // The reservation cannot be interrupted half-way (pg, mysql2): the interruption completes once the
          // connection arrives, and the connection is then released.
          const interrupting = yield* Effect.fork(Fiber.interrupt(waiter))
          yield* holder.release
          const exit = yield* Fiber.join(interrupting)
          assert.isTrue(Exit.isInterrupted(exit))
          // The one connection is back: the next transaction gets it.
          yield* t.insert(2).pipe(Transaction.atomic(), Effect.timeout("5 seconds"))
          assert.deepStrictEqual(yield* t.ids, [2])
        }))
    })
  })
}
