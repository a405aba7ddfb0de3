/**
 * PostgreSQL-specific behaviour: the modes really in effect, COMMIT answered with ROLLBACK, serialization failures
 * at COMMIT, deferred constraints, a killed backend.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import { assert, describe, layer } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer } from "effect"
import {
  RetryPolicy,
  Transaction,
  TransactionError,
  TransactionLayer,
  TransactionManager,
  TransactionMetrics,
  withRetry
} from "../src/index.js"
import { makeTable, outside } from "./suites/TransactionSuite.js"
import * as Databases from "./utils/databases.js"
import { SentStatements, spy } from "./utils/spy.js"

const live = TransactionLayer.pipe(Layer.provideMerge(spy(Databases.pg())))

const setting = (name: string) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) => Effect.map(sql<{ value: string }>`SELECT current_setting(${name}) AS value`, (rows) => rows[0]!.value)
  )

describe("pg: modes", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.effect("each isolation level is the one in effect", () =>
      Effect.gen(function*() {
        for (const isolation of ["read uncommitted", "read committed", "repeatable read", "serializable"] as const) {
          const value = yield* setting("transaction_isolation").pipe(Transaction.atomic({ isolation }))
          assert.strictEqual(value, isolation)
        }
      }))

    it.effect("read only and deferrable are in effect, folded into one BEGIN", () =>
      Effect.gen(function*() {
        const log = yield* SentStatements
        log.length = 0
        const [readOnly, deferrable] = yield* Effect.all([
          setting("transaction_read_only"),
          setting("transaction_deferrable")
        ]).pipe(Transaction.atomic({ isolation: "serializable", readOnly: true, deferrable: true }))
        assert.deepStrictEqual([readOnly, deferrable], ["on", "on"])
        assert.strictEqual(log[0], "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE")
        assert.strictEqual(log.at(-1), "COMMIT")
        assert.strictEqual(log.length, 4)
      }))
  })
})

describe("pg: aborted transactions", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.scoped("an error caught at depth 0 aborts the transaction: later statements and the end fail with it", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("aborted")
        const error = yield* Effect.gen(function*() {
          yield* t.insert(1)
          const failed = yield* Effect.either(sql`SELECT 1 / 0`)
          assert.isTrue(Either.isLeft(failed))
          // PostgreSQL answers 25P02: the statement fails with the error that aborted the transaction instead.
          const later = yield* Effect.flip(t.insert(2))
          assert.strictEqual((later as any).cause.code, "22012")
          return "looks fine"
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.instanceOf(error, SqlError)
        assert.strictEqual((error as any).cause.code, "22012")
        assert.deepStrictEqual(yield* t.ids, [])
      }))

    it.scoped("a caught serialization failure at depth 0 ends the transaction with it: retryable", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const error = yield* Effect.gen(function*() {
          yield* Effect.either(
            sql`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = 'serialization_failure'; END $$`
          )
          return "looks fine"
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.strictEqual(error._tag, "SerializationFailure")
        assert.isTrue(TransactionError.isRetryable(error))
      }))

    it.scoped("a COMMIT the server answers with ROLLBACK fails with the error that aborted the transaction", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("aborted_commit")
        const error = yield* Effect.gen(function*() {
          yield* t.insert(1)
          // A manual savepoint the code could roll back to, and does not.
          yield* Transaction.savepoint("before")
          const failed = yield* Effect.either(sql`SELECT 1 / 0`)
          assert.isTrue(Either.isLeft(failed))
          return "looks fine"
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.instanceOf(error, SqlError)
        assert.strictEqual((error as any).cause.code, "22012")
        assert.deepStrictEqual(yield* t.ids, [])
      }))

    it.scoped("a nested block that caught a statement error fails with it and rolls back to its savepoint", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("aborted_nested")
        yield* Effect.gen(function*() {
          yield* t.insert(1)
          const inner = yield* Effect.gen(function*() {
            yield* t.insert(2)
            yield* Effect.either(sql`SELECT 1 / 0`)
          }).pipe(Transaction.atomic(), Effect.flip)
          assert.instanceOf(inner, SqlError)
          assert.strictEqual((inner as any).cause.code, "22012")
          yield* t.insert(3)
        }).pipe(Transaction.atomic())
        assert.deepStrictEqual(yield* t.ids, [1, 3])
      }))

    it.scoped("a nested block that recovered from a statement error with a manual savepoint commits its work", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("recovered_nested")
        yield* Effect.gen(function*() {
          yield* t.insert(1)
          yield* Effect.gen(function*() {
            yield* t.insert(2)
            const savepoint = yield* Transaction.savepoint()
            yield* Effect.either(sql`SELECT 1 / 0`)
            yield* Transaction.rollbackTo(savepoint)
            yield* t.insert(3)
          }).pipe(Transaction.atomic())
          yield* t.insert(4)
        }).pipe(Transaction.atomic())
        assert.deepStrictEqual(yield* t.ids, [1, 2, 3, 4])
      }))

    it.scoped("a deferred constraint failing at COMMIT is a typed error, not a defect", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("deferred")
        yield* sql.unsafe(`ALTER TABLE ${t.name} ADD CONSTRAINT ${t.name}_v UNIQUE (v) DEFERRABLE INITIALLY DEFERRED`)
        const error = yield* Effect.gen(function*() {
          yield* sql.unsafe(`INSERT INTO ${t.name} (id, v) VALUES (1, 7), (2, 7)`)
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.instanceOf(error, SqlError)
        assert.strictEqual((error as any).cause.code, "23505")
        assert.deepStrictEqual(yield* t.ids, [])
      }))
  })
})

describe("pg: serializable", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.scoped("a write skew fails with a typed SerializationFailure raised at COMMIT", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("skew")
        yield* sql.unsafe(`INSERT INTO ${t.name} (id, v) VALUES (1, 1), (2, 1)`)
        const bothRead = [yield* Deferred.make<void>(), yield* Deferred.make<void>()] as const
        const bothWrote = [yield* Deferred.make<void>(), yield* Deferred.make<void>()] as const
        const firstCommitted = yield* Deferred.make<void>()
        let bodiesDone = 0
        const doctor = (me: 0 | 1) =>
          Effect.gen(function*() {
            yield* sql.unsafe(`SELECT sum(v) AS total FROM ${t.name}`)
            yield* Deferred.succeed(bothRead[me], undefined)
            yield* Deferred.await(bothRead[1 - me]!)
            yield* sql.unsafe(`UPDATE ${t.name} SET v = 0 WHERE id = ${me + 1}`)
            yield* Deferred.succeed(bothWrote[me], undefined)
            yield* Deferred.await(bothWrote[1 - me]!)
            if (me === 1) yield* Deferred.await(firstCommitted)
            bodiesDone++
          }).pipe(Transaction.atomic({ isolation: "serializable" }))
        const second = yield* Effect.fork(Effect.either(doctor(1)))
        const first = yield* Effect.either(doctor(0))
        yield* Deferred.succeed(firstCommitted, undefined)
        const secondResult = yield* Fiber.join(second)
        assert.isTrue(Either.isRight(first))
        assert.isTrue(Either.isLeft(secondResult))
        if (Either.isLeft(secondResult)) {
          assert.strictEqual(secondResult.left._tag, "SerializationFailure")
          assert.strictEqual((secondResult.left as any).code, "40001")
        }
        // Both bodies ran to their end: the second failed at COMMIT.
        assert.strictEqual(bodiesDone, 2)
        const rows = yield* outside(sql.unsafe<{ v: number }>(`SELECT v FROM ${t.name} ORDER BY id`))
        assert.deepStrictEqual(rows.map((r) => r.v), [0, 1])
      }))
  })
})

describe("pg: a killed backend", () => {
  layer(TransactionLayer.pipe(Layer.provideMerge(Databases.pg({ maxConnections: 1 }))), {
    excludeTestServices: true
  })((it) => {
    it.scoped("fails with ConnectionLost, and the pool of one serves the next transaction", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const admin = yield* Databases.pgAdmin
        const t = yield* makeTable("killed")
        const error = yield* Effect.gen(function*() {
          const [{ pid }] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
          yield* t.insert(1)
          yield* outside(admin`SELECT pg_terminate_backend(${pid})`) // outside: the connection tag is one for every client
          yield* t.insert(2)
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.strictEqual(error._tag, "ConnectionLost")
        yield* t.insert(3).pipe(Transaction.atomic())
        assert.deepStrictEqual(yield* t.ids, [3])
      }))
  })
})

describe("pg: classification and limits", () => {
  layer(TransactionLayer.pipe(Layer.provideMerge(spy(Databases.pg({ maxConnections: 1 })))), {
    excludeTestServices: true
  })((it) => {
    it.effect("statement_timeout cancelling a statement is a StatementTimeout (57014)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const error = yield* Effect.zipRight(sql`SET LOCAL statement_timeout = 50`, sql`SELECT pg_sleep(2)`).pipe(
          Transaction.atomic(),
          Effect.flip
        )
        assert.strictEqual(error._tag, "StatementTimeout")
        assert.strictEqual((error as any).code, "57014")
      }))

    it.effect("lockTimeout is SET LOCAL, folded into the BEGIN round trip, and gone after the transaction", () =>
      Effect.gen(function*() {
        const log = yield* SentStatements
        log.length = 0
        const inside = yield* setting("lock_timeout").pipe(Transaction.atomic({ lockTimeout: "1500 millis" }))
        assert.strictEqual(inside, "1500ms")
        assert.strictEqual(log[0], "BEGIN; SET LOCAL lock_timeout = 1500")
        assert.strictEqual(yield* setting("lock_timeout"), "0")
      }))

    it.effect("a session closed by idle_in_transaction_session_timeout is ConnectionLost; the pool recovers", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const error = yield* Effect.gen(function*() {
          yield* sql`SET LOCAL idle_in_transaction_session_timeout = 50`
          yield* Effect.sleep("300 millis")
          yield* sql`SELECT 1`
        }).pipe(Transaction.atomic(), Effect.flip)
        assert.strictEqual(error._tag, "ConnectionLost")
        assert.strictEqual(
          yield* Effect.map(sql`SELECT 1 AS one`, (rows) => rows[0]!.one).pipe(Transaction.atomic()),
          1
        )
      }))
  })
})

describe("pg: retrying", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.scoped("a write skew is retried to success: the retry reads again and decides again", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const t = yield* makeTable("skew_retry")
        yield* sql.unsafe(`INSERT INTO ${t.name} (id, v) VALUES (1, 1), (2, 1)`)
        const bothRead = [yield* Deferred.make<void>(), yield* Deferred.make<void>()] as const
        let attempts = 0
        // Go off call only if someone else stays on call.
        const offCall = (me: 0 | 1) =>
          Effect.gen(function*() {
            attempts++
            const [{ total }] = yield* sql.unsafe<{ total: number }>(`SELECT sum(v)::int AS total FROM ${t.name}`)
            yield* Deferred.succeed(bothRead[me], undefined)
            yield* Deferred.await(bothRead[1 - me]!)
            if (total >= 2) yield* sql.unsafe(`UPDATE ${t.name} SET v = 0 WHERE id = ${me + 1}`)
          }).pipe(Transaction.atomic({ isolation: "serializable" }), withRetry())
        yield* Effect.all([offCall(0), offCall(1)], { concurrency: 2 })
        const rows = yield* sql.unsafe<{ v: number }>(`SELECT v FROM ${t.name} ORDER BY id`)
        assert.strictEqual(rows.reduce((sum, r) => sum + r.v, 0), 1)
        assert.strictEqual(attempts, 3)
      }))

    it.scoped("a connection lost during COMMIT is CommitOutcomeUnknown, retried only by an idempotent policy", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const admin = yield* Databases.pgAdmin
        const t = yield* makeTable("commit_unknown")
        // A deferred constraint trigger runs during COMMIT: this one sleeps there.
        yield* Effect.acquireRelease(
          sql.unsafe(`
            CREATE FUNCTION ${t.name}_slow() RETURNS trigger LANGUAGE plpgsql AS
              $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER ${t.name}_slow AFTER INSERT ON ${t.name}
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${t.name}_slow();`),
          () => Effect.ignore(sql.unsafe(`DROP TABLE ${t.name}; DROP FUNCTION ${t.name}_slow()`))
        )
        const run = (policy: RetryPolicy.RetryPolicy, id: number) =>
          Effect.gen(function*() {
            let attempts = 0
            const result = yield* Effect.gen(function*() {
              attempts++
              const [{ pid }] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
              yield* t.insert(id)
              if (attempts === 1) {
                // Terminate the backend while its COMMIT sleeps in the trigger (from outside the transaction: the
                // connection tag of @effect/sql is one for every client).
                yield* Effect.forkDaemon(
                  outside(Effect.zipRight(Effect.sleep("300 millis"), admin`SELECT pg_terminate_backend(${pid})`))
                )
              }
            }).pipe(Transaction.atomic(), withRetry(policy), Effect.either)
            return { result, attempts }
          })
        const once = yield* run(RetryPolicy.default, 1)
        assert.isTrue(Either.isLeft(once.result) && once.result.left._tag === "CommitOutcomeUnknown")
        assert.strictEqual(once.attempts, 1)
        const retried = yield* run(RetryPolicy.exponential({ idempotent: true }), 2)
        assert.isTrue(Either.isRight(retried.result))
        assert.strictEqual(retried.attempts, 2)
        assert.deepStrictEqual(yield* t.ids, [2])
      }))
  })
})

describe("pg: observability", () => {
  layer(live, { excludeTestServices: true })((it) => {
    it.scoped("past 64 savepoints a transaction is reported once and counted, or refused when configured", () =>
      Effect.gen(function*() {
        const t = yield* makeTable("budget")
        const savepoints = (n: number, from: number) =>
          Effect.forEach(Array.from({ length: n }, (_, i) => from + i), (i) => t.insert(i).pipe(Transaction.atomic()), {
            discard: true
          })
        yield* savepoints(70, 0).pipe(Transaction.atomic({ name: "many_savepoints" }))
        const figures = (yield* TransactionMetrics.snapshot).byName["many_savepoints"]
        assert.strictEqual(figures?.savepoints, 70)
        assert.strictEqual(figures?.savepointBudgetExceeded ?? -1, 1)
        const strict = yield* TransactionManager.make({ failOnSavepointBudget: true })
        const error = yield* savepoints(70, 100).pipe(
          Transaction.atomic(),
          Effect.flip,
          Effect.provideService(TransactionManager.TransactionManager, strict)
        )
        assert.strictEqual(error._tag, "SavepointError")
      }))

    it.effect("serverLabel shows the transaction's name in pg_stat_activity, in the BEGIN round trip", () =>
      Effect.gen(function*() {
        const log = yield* SentStatements
        const labelled = yield* TransactionManager.make({ serverLabel: true })
        log.length = 0
        const seen = yield* setting("application_name").pipe(
          Transaction.atomic({ name: "checkout" }),
          Effect.provideService(TransactionManager.TransactionManager, labelled)
        )
        assert.strictEqual(seen, "effect-sql-tx:checkout")
        assert.strictEqual(log[0], "BEGIN; SET LOCAL application_name = 'effect-sql-tx:checkout'")
        assert.notStrictEqual(yield* setting("application_name"), "effect-sql-tx:checkout")
      }))

    it.effect("round trips: a flat transaction with every option is its statements + 2; a successful nested block adds 1 (its SAVEPOINT)", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const log = yield* SentStatements
        const labelled = yield* TransactionManager.make({ serverLabel: true })
        log.length = 0
        yield* Effect.zipRight(sql`SELECT 1`, sql`SELECT 2`).pipe(
          Transaction.atomic({
            name: "all_options",
            isolation: "serializable",
            readOnly: true,
            deferrable: true,
            timeout: "5 seconds",
            lockTimeout: "1 second"
          }),
          Effect.provideService(TransactionManager.TransactionManager, labelled)
        )
        assert.strictEqual(log.length, 2 + 2, log.join(" | "))
        log.length = 0
        yield* sql`SELECT 1`.pipe(Transaction.atomic(), Transaction.atomic(), Transaction.atomic())
        assert.strictEqual(log.length, 1 + 2 + 2 * 1, log.join(" | "))
        assert.isFalse(log.some((s) => s.startsWith("RELEASE")), log.join(" | "))
      }))
  })
})

describe("pg: a COMMIT that does not answer", () => {
  const bounded = TransactionManager.layer({ commitTimeout: "300 millis" }).pipe(
    Layer.provideMerge(Databases.pg({ maxConnections: 1 }))
  )
  layer(bounded, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.scoped("past commitTimeout the connection is destroyed: CommitOutcomeUnknown, the pool goes on", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const admin = yield* Databases.pgAdmin
        const t = yield* makeTable("commit_hang")
        // A deferred constraint trigger runs at COMMIT: this one sleeps there for 20 s.
        yield* sql.unsafe(
          `CREATE FUNCTION ${t.name}_sleep() RETURNS trigger LANGUAGE plpgsql AS ` +
            `$$ BEGIN PERFORM pg_sleep(20); RETURN NULL; END $$`
        )
        yield* Effect.addFinalizer(() => Effect.ignore(sql.unsafe(`DROP FUNCTION IF EXISTS ${t.name}_sleep() CASCADE`)))
        yield* sql.unsafe(
          `CREATE CONSTRAINT TRIGGER ${t.name}_at_commit AFTER INSERT ON ${t.name} ` +
            `DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${t.name}_sleep()`
        )
        let pid = 0
        const error = yield* Effect.gen(function*() {
          const [row] = yield* sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`
          pid = row!.pid
          yield* t.insert(1)
        }).pipe(Transaction.atomic(), Effect.flip, Effect.timeout("10 seconds"))
        assert.strictEqual(error._tag, "CommitOutcomeUnknown")
        // The server still runs the COMMIT of the abandoned session: end it (the row is then never committed).
        yield* admin`SELECT pg_terminate_backend(${pid})`
        // The pool's one connection was replaced: the next transaction runs on a new backend.
        const next = yield* Transaction.atomic(sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`)
        assert.notStrictEqual(next[0]!.pid, pid)
        yield* sql.unsafe(`DROP TRIGGER ${t.name}_at_commit ON ${t.name}`)
      }))
  })
})
