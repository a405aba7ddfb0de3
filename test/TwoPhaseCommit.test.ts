/**
 * Two-phase commit on PostgreSQL + MariaDB and on two PostgreSQL databases: commit, a failing body, a failing
 * PREPARE, isolation of the participants' connections, timeouts, recovery of prepared transactions left behind.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Metric, Schedule } from "effect"
import { Transaction, TransactionError, TwoPhaseCommit, withRetry } from "../src/index.js"
import * as Protocol from "../src/internal/twophase/protocol.js"
import * as Databases from "./utils/databases.js"
import * as T from "./utils/twophase.js"

class Boom {
  readonly _tag = "Boom"
}

interface Side {
  readonly name: string
  readonly layer: () => Layer.Layer<SqlClient.SqlClient, unknown>
  readonly admin: Effect.Effect<SqlClient.SqlClient, unknown, import("effect/Scope").Scope>
}

interface Pair {
  readonly name: string
  readonly a: Side
  readonly b: Side
}

const pgSide: Side = { name: "pga", layer: T.pgLayer, admin: Databases.pgAdmin }
const pgBSide: Side = { name: "pgb", layer: T.pgBLayer, admin: T.pgBAdmin }
const mysqlSide: Side = { name: "maria", layer: T.mysqlLayer, admin: T.mysqlAdminClient }

const pairs: ReadonlyArray<Pair> = [
  { name: "PostgreSQL + MariaDB", a: pgSide, b: mysqlSide },
  { name: "two PostgreSQL databases", a: pgSide, b: pgBSide }
]

/** A coordinator over the pair, in the test's scope, with the recovery scan off unless asked for. */
const coordinator = (
  pair: Pair,
  config: Partial<TwoPhaseCommit.Config<ReadonlyArray<TwoPhaseCommit.Participant<unknown>>>> = {}
) => {
  const coordinatorId = T.uniqueCoordinator()
  // Before the tables are dropped (finalizers run in reverse): a prepared transaction left would block the DROP.
  return Effect.zipRight(
    Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId)),
    TwoPhaseCommit.make({
      coordinatorId,
      participants: [
        TwoPhaseCommit.participant(pair.a.name, pair.a.layer()),
        TwoPhaseCommit.participant(pair.b.name, pair.b.layer())
      ],
      log: pair.a.name,
      recovery: false,
      ...config
    })
  )
}

const tables = (pair: Pair) =>
  Effect.gen(function*() {
    const a = yield* pair.a.admin
    const b = yield* pair.b.admin
    const name = Databases.uniqueTable("tpc")
    yield* T.table(a, name)
    yield* T.table(b, name)
    return {
      name,
      a,
      b,
      rows: Effect.all([T.ids(a, name), T.ids(b, name)])
    }
  })

describe("two-phase commit", () => {
  it.live("set up the second PostgreSQL database", () => T.ensureSecondPgDatabase)

  for (const pair of pairs) {
    describe(pair.name, () => {
      it.live("commits every branch; the values come back by participant; nothing is left prepared", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair)
          const result = yield* c.run({
            [pair.a.name]: Effect.as(T.insert(t.name, "x1", 10), "a done"),
            [pair.b.name]: Effect.as(T.insert(t.name, "x1", 10), 42)
          }, { name: "commit" })
          assert.deepStrictEqual(result, { [pair.a.name]: "a done", [pair.b.name]: 42 })
          assert.deepStrictEqual(yield* t.rows, [["x1"], ["x1"]])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
          // The decision was deleted once every branch was committed.
          const log = yield* t.a.unsafe<{ n: number }>(
            `SELECT COUNT(*) AS n FROM effect_sql_tx_2pc_log WHERE coordinator = '${c.coordinatorId}'`
          )
          assert.strictEqual(Number(log[0]!.n), 0)
        }).pipe(Effect.scoped))

      it.live("a failure in either body rolls back every branch and is the result", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair)
          for (const failing of [pair.a.name, pair.b.name]) {
            for (const concurrent of [false, true]) {
              const bodies = {
                [pair.a.name]: Effect.zipRight(
                  T.insert(t.name, "y1"),
                  failing === pair.a.name ? Effect.fail(new Boom()) : Effect.void
                ),
                [pair.b.name]: Effect.zipRight(
                  T.insert(t.name, "y1"),
                  failing === pair.b.name ? Effect.fail(new Boom()) : Effect.void
                )
              }
              const error = yield* Effect.flip(c.run(bodies, { concurrent }))
              assert.strictEqual((error as { _tag: string })._tag, "Boom")
              assert.deepStrictEqual(yield* t.rows, [[], []])
            }
          }
          // A defect too.
          const exit = yield* Effect.exit(c.run({
            [pair.a.name]: T.insert(t.name, "y2"),
            [pair.b.name]: Effect.zipRight(T.insert(t.name, "y2"), Effect.die("boom"))
          }))
          assert.isTrue(Exit.isFailure(exit))
          assert.deepStrictEqual(yield* t.rows, [[], []])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
          // The pools are clean: the next transaction commits.
          yield* c.run({ [pair.a.name]: T.insert(t.name, "y3"), [pair.b.name]: T.insert(t.name, "y3") })
          assert.deepStrictEqual(yield* t.rows, [["y3"], ["y3"]])
        }).pipe(Effect.scoped))

      it.live("a statement error is classified; a duplicate key passes through as a SqlError", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair)
          yield* c.run({ [pair.a.name]: T.insert(t.name, "d1"), [pair.b.name]: T.insert(t.name, "d1") })
          const error = yield* Effect.flip(
            c.run({ [pair.a.name]: T.insert(t.name, "d2"), [pair.b.name]: T.insert(t.name, "d1") })
          )
          assert.strictEqual((error as SqlError)._tag, "SqlError")
          assert.deepStrictEqual(yield* t.rows, [["d1"], ["d1"]])
        }).pipe(Effect.scoped))

      it.live("a failed PREPARE of the second branch rolls back the first, which was prepared", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair)
          // The PostgreSQL side (b in the PostgreSQL pair, a otherwise) uses a temporary table: PREPARE refuses it.
          const pgLast = pair.b.name === "pgb"
          const temp = Effect.flatMap(
            SqlClient.SqlClient,
            (sql) => sql.unsafe(`CREATE TEMPORARY TABLE tmp_${Math.random().toString(36).slice(2, 8)} (x INT)`)
          )
          const bodies = pgLast
            ? {
              [pair.a.name]: T.insert(t.name, "p1"),
              [pair.b.name]: Effect.zipRight(T.insert(t.name, "p1"), temp)
            }
            : {
              // MariaDB first, prepared first; then PostgreSQL's PREPARE fails.
              [pair.b.name]: T.insert(t.name, "p1"),
              [pair.a.name]: Effect.zipRight(T.insert(t.name, "p1"), temp)
            }
          const error = yield* Effect.flip(c.run(bodies))
          assert.strictEqual(error._tag, "TwoPhaseForbidden")
          if (error._tag === "TwoPhaseForbidden") {
            assert.strictEqual(error.dialect, "pg")
            assert.strictEqual(error.code, "0A000")
            assert.match(error.message, /temporary/)
          }
          assert.deepStrictEqual(yield* t.rows, [[], []])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
          yield* c.run({ [pair.a.name]: T.insert(t.name, "p2"), [pair.b.name]: T.insert(t.name, "p2") })
          assert.deepStrictEqual(yield* t.rows, [["p2"], ["p2"]])
        }).pipe(Effect.scoped))

      it.live("each body runs on its own participant's connection, even concurrently, and nests with savepoints", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair)
          const where = Effect.flatMap(SqlClient.SqlClient, (sql) =>
            sql.onDialectOrElse({
              pg: () =>
                Effect.map(
                  sql<{ db: string; pid: number; xact: string }>`
                    SELECT current_database() AS db, pg_backend_pid() AS pid, txid_current_if_assigned()::text AS xact`,
                  (rows) => `pg:${rows[0]!.db}:${rows[0]!.xact !== null}`
                ),
              orElse: () =>
                Effect.map(
                  sql<{ db: string; state: string }>`
                    SELECT DATABASE() AS db, (SELECT COUNT(*) FROM information_schema.INNODB_TRX
                      WHERE trx_mysql_thread_id = CONNECTION_ID()) AS state`,
                  (rows) => `mysql:${rows[0]!.db}:${Number(rows[0]!.state) > 0}`
                )
            }))
          const body = Effect.gen(function*() {
            yield* T.insert(t.name, "c1")
            // A nested block: a savepoint of this branch, rolled back.
            yield* Effect.flip(Transaction.atomic(Effect.zipRight(T.insert(t.name, "c2"), Effect.fail(new Boom()))))
            yield* Effect.sleep("20 millis")
            return yield* where
          })
          const result = yield* c.run({ [pair.a.name]: body, [pair.b.name]: body }, { concurrent: true })
          assert.strictEqual(result[pair.a.name], "pg:test:true")
          assert.strictEqual(result[pair.b.name], pair.b.name === "pgb" ? "pg:test2pc_b:true" : "mysql:test:true")
          assert.deepStrictEqual(yield* t.rows, [["c1"], ["c1"]])
        }).pipe(Effect.scoped))

      it.live("a body that outlasts the timeout is stopped and every branch rolls back", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair)
          const sleep = Effect.flatMap(SqlClient.SqlClient, (sql) =>
            sql.onDialectOrElse({
              pg: () => sql`SELECT pg_sleep(5)`,
              orElse: () => sql`SELECT SLEEP(5)`
            }))
          const started = Date.now()
          const error = yield* Effect.flip(c.run({
            [pair.a.name]: T.insert(t.name, "t1"),
            [pair.b.name]: Effect.zipRight(T.insert(t.name, "t1"), sleep)
          }, { timeout: "300 millis" }))
          assert.strictEqual(error._tag, "TransactionTimeout")
          assert.isBelow(Date.now() - started, 4500) // the statement sleeps 5 s
          assert.deepStrictEqual(yield* t.rows, [[], []])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
        }).pipe(Effect.scoped))

      it.live("recovery: a prepared branch with a commit decision is committed, one without is rolled back", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair, { recoveryThreshold: 0 })
          // Two transactions left behind as a crashed coordinator would: 1 decided commit, 2 undecided.
          const stem = `etx2pc.${c.coordinatorId}.`
          const tx1 = `${Date.now().toString(36).padStart(9, "0")}aaaaaaa1`
          const tx2 = `${Date.now().toString(36).padStart(9, "0")}aaaaaaa2`
          const prepare = (sql: SqlClient.SqlClient, gid: string, id: string) =>
            sql.onDialectOrElse({
              pg: () =>
                sql.withTransaction(Effect.gen(function*() {
                  yield* sql.unsafe(`INSERT INTO ${t.name} (id, amount) VALUES ('${id}', 1)`)
                  yield* sql.unsafe(`PREPARE TRANSACTION '${gid}'`)
                })).pipe(Effect.catchAllDefect(() => Effect.void)),
              orElse: () =>
                Effect.scoped(Effect.flatMap(sql.reserve, (conn) =>
                  Effect.zipRight(
                    conn.executeUnprepared(
                      `XA START '${gid}'; INSERT INTO ${t.name} (id, amount) VALUES ('${id}', 1); ` +
                        `XA END '${gid}'; XA PREPARE '${gid}'`,
                      [],
                      undefined
                    ),
                    // Closing the session detaches the prepared branch (MariaDB ≥ 10.5).
                    Effect.sync(() => (conn as unknown as { conn: { destroy(): void } }).conn.destroy())
                  )))
            })
          yield* prepare(t.a, `${stem}${tx1}.0`, "r1")
          yield* prepare(t.b, `${stem}${tx1}.1`, "r1")
          yield* prepare(t.a, `${stem}${tx2}.0`, "r2")
          yield* prepare(t.b, `${stem}${tx2}.1`, "r2")
          yield* t.a.unsafe(
            `INSERT INTO effect_sql_tx_2pc_log (coordinator, txid, decision, name, participants, decided_at)
             VALUES ('${c.coordinatorId}', '${tx1}', 'commit', 'test', '${pair.a.name},${pair.b.name}', ${Date.now()})`
          )
          yield* Effect.sleep("300 millis")
          const listed = yield* c.inDoubt
          assert.strictEqual(listed.length, 4)
          assert.deepStrictEqual(
            listed.map((l) => `${l.transactionId === tx1 ? 1 : 2}:${l.decision}`).sort(),
            ["1:commit", "1:commit", "2:none", "2:none"]
          )
          const report = yield* c.recover
          assert.deepStrictEqual(report, { found: 4, committed: 2, rolledBack: 2, failed: 0, forgotten: 1 })
          assert.deepStrictEqual(yield* t.rows, [["r1"], ["r1"]])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
          assert.deepStrictEqual(yield* c.inDoubt, [])
          // The abort decision written for tx2 stays (within its retention): a late coordinator cannot commit it.
          const log = yield* t.a.unsafe<{ txid: string; decision: string }>(
            `SELECT txid, decision FROM effect_sql_tx_2pc_log WHERE coordinator = '${c.coordinatorId}'`
          )
          assert.deepStrictEqual(log.map((r) => [r.txid, r.decision]), [[tx2, "abort"]])
        }).pipe(Effect.scoped))

      it.live("phase two: a branch whose connection is lost after the decision is committed on another", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          // The body notes its session; at the decision the test kills that session.
          let session = 0
          const note = Effect.flatMap(SqlClient.SqlClient, (sql) =>
            sql.onDialectOrElse({
              pg: () => sql<{ id: number }>`SELECT pg_backend_pid() AS id`,
              orElse: () => sql<{ id: number }>`SELECT CONNECTION_ID() AS id`
            })).pipe(Effect.map((rows) => {
              session = Number(rows[0]!.id)
            }))
          const killer = () =>
            t.b.onDialectOrElse({
              pg: () => t.b`SELECT pg_terminate_backend(${session})`,
              orElse: () => t.b.unsafe(`KILL ${session}`)
            })
          const c = yield* coordinator(pair, {
            probe: (point) => point === "decided" ? Effect.orDie(Effect.suspend(killer)) : Effect.void
          })
          yield* c.run({
            [pair.a.name]: T.insert(t.name, "k1"),
            [pair.b.name]: Effect.zipRight(T.insert(t.name, "k1"), note)
          })
          // The session that prepared the branch is gone: the COMMIT went through another.
          const alive = yield* t.b.onDialectOrElse({
            pg: () => t.b<{ n: number }>`SELECT COUNT(*)::int AS n FROM pg_stat_activity WHERE pid = ${session}`,
            orElse: () =>
              t.b<{ n: number }>`SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ${session}`
          })
          assert.isAbove(session, 0)
          assert.strictEqual(Number(alive[0]!.n), 0)
          assert.deepStrictEqual(yield* t.rows, [["k1"], ["k1"]])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
        }).pipe(Effect.scoped))

      it.live("a transaction another coordinator presumed aborted before the decision rolls back: TwoPhaseAborted", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const coordinatorId = T.uniqueCoordinator()
          yield* Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId))
          const participants = [
            TwoPhaseCommit.participant(pair.a.name, pair.a.layer()),
            TwoPhaseCommit.participant(pair.b.name, pair.b.layer())
          ]
          // A second process with the same id (a misconfiguration, or a restart that overlaps) and no threshold.
          const other = yield* TwoPhaseCommit.make({
            coordinatorId,
            participants,
            log: pair.a.name,
            recovery: false,
            recoveryThreshold: 0
          })
          const c = yield* TwoPhaseCommit.make({
            coordinatorId,
            participants,
            log: pair.a.name,
            recovery: false,
            probe: (point) => point === "prepared-all" ? Effect.asVoid(other.recover) : Effect.void
          })
          const error = yield* Effect.flip(
            c.run({ [pair.a.name]: T.insert(t.name, "a1"), [pair.b.name]: T.insert(t.name, "a1") })
          )
          assert.strictEqual(error._tag, "TwoPhaseAborted")
          assert.deepStrictEqual(yield* t.rows, [[], []])
          assert.deepStrictEqual(yield* T.preparedLeft(coordinatorId), [])
        }).pipe(Effect.scoped))

      it.live("a coordinator slower than the recovery threshold rolls back instead of committing", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const c = yield* coordinator(pair, { recoveryThreshold: "50 millis" })
          const error = yield* Effect.flip(c.run({
            [pair.a.name]: Effect.zipRight(T.insert(t.name, "s1"), Effect.sleep("100 millis")),
            [pair.b.name]: T.insert(t.name, "s1")
          }))
          assert.strictEqual(error._tag, "TwoPhaseAborted")
          assert.match((error as Error).message, /recovery threshold/)
          assert.deepStrictEqual(yield* t.rows, [[], []])
          assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
        }).pipe(Effect.scoped))

      it.live("hooks run after the outcome; metrics count it", () =>
        Effect.gen(function*() {
          const t = yield* tables(pair)
          const events: Array<string> = []
          const c = yield* coordinator(pair, {
            hooks: {
              beforeCommit: (info) => Effect.sync(() => events.push(`before ${info.name}`)),
              afterCommit: (info) => Effect.sync(() => events.push(`committed ${info.name}`)),
              afterRollback: (info) =>
                Effect.zipRight(Effect.sync(() => events.push(`rolled back ${info.name}`)), Effect.fail("ignored"))
            }
          })
          const name = `hooks_${pair.b.name}`
          yield* c.run({ [pair.a.name]: T.insert(t.name, "h1"), [pair.b.name]: T.insert(t.name, "h1") }, {
            name,
            hooks: { afterCommit: () => Effect.sync(() => events.push("committed (run)")) }
          })
          yield* Effect.flip(c.run({
            [pair.a.name]: T.insert(t.name, "h2"),
            [pair.b.name]: Effect.zipRight(T.insert(t.name, "h2"), Effect.fail(new Boom()))
          }, { name }))
          assert.deepStrictEqual(events, [
            `before ${name}`,
            `committed ${name}`,
            "committed (run)",
            // A body failed: no beforeCommit.
            `rolled back ${name}`
          ])
          const counters = (yield* Metric.snapshot).filter((pair) =>
            pair.metricKey.tags.some((tag) => tag.key === "transaction" && tag.value === name)
          )
          const value = (metric: string) =>
            counters.filter((p) => p.metricKey.name === metric).reduce(
              (sum, p) => sum + ((p.metricState as { count?: number }).count ?? 0),
              0
            )
          assert.strictEqual(value("two_phase_transactions_started_total"), 2)
          assert.strictEqual(value("two_phase_transactions_committed_total"), 1)
          assert.strictEqual(value("two_phase_transactions_rolled_back_total"), 1)
          assert.strictEqual(value("two_phase_transactions_failed_total"), 1)
          assert.strictEqual(value("two_phase_duration_seconds"), 2)
        }).pipe(Effect.scoped))

      it.live(
        "three times more runs at once than the pools hold all commit: no run waits for a pool held by runs",
        () =>
          Effect.gen(function*() {
            const t = yield* tables(pair)
            // Pools of 4 connections (the log keeps one): 12 runs at once, half naming the participants in the
            // other order, half running their bodies concurrently; each body holds its branch a while.
            const c = yield* coordinator(pair)
            const body = (id: string) => Effect.zipRight(T.insert(t.name, id), Effect.sleep("20 millis"))
            yield* Effect.forEach(Array.from({ length: 12 }, (_, i) => `p${String(i).padStart(2, "0")}`), (id, i) =>
              c.run(
                i % 2 === 0
                  ? { [pair.a.name]: body(id), [pair.b.name]: body(id) }
                  : { [pair.b.name]: body(id), [pair.a.name]: body(id) },
                { concurrent: i % 4 < 2 }
              ), { concurrency: "unbounded", discard: true })
            const [a, b] = yield* t.rows
            assert.strictEqual(a.length, 12)
            assert.deepStrictEqual(a, b)
            assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
          }).pipe(Effect.scoped),
        60_000
      )

      it.live(
        "the log's connection killed by the server: the next decision takes another, even with every run waiting",
        () =>
          Effect.gen(function*() {
            const t = yield* tables(pair)
            const logTable = `tpc_log_${T.uniqueCoordinator()}`
            yield* Effect.addFinalizer(() => Effect.ignore(t.a.unsafe(`DROP TABLE IF EXISTS ${logTable}`)))
            const c = yield* coordinator(pair, { logTable })
            const kill = Effect.gen(function*() {
              // The coordinator's own connection: the only session whose last statement named the log table.
              const sessions = yield* t.a<{ pid: number }>`SELECT pid FROM pg_stat_activity
              WHERE query LIKE ${`%${logTable}%`} AND pid <> pg_backend_pid()`
              assert.strictEqual(sessions.length, 1)
              yield* t.a`SELECT pg_terminate_backend(${sessions[0]!.pid})`
            })
            const run = (id: string) =>
              c.run({
                [pair.a.name]: Effect.zipRight(T.insert(t.name, id), Effect.sleep("20 millis")),
                [pair.b.name]: T.insert(t.name, id)
              })
            yield* kill
            // One run: its decision finds the connection dead, and writes it on another (no TwoPhaseAborted).
            yield* run("k00")
            yield* kill
            // Twelve at once on pools of 4: the log's replacement is never left waiting behind the runs' branches.
            yield* Effect.forEach(
              Array.from({ length: 12 }, (_, i) => `k${String(i + 1).padStart(2, "0")}`),
              run,
              { concurrency: "unbounded", discard: true }
            )
            const [a, b] = yield* t.rows
            assert.strictEqual(a.length, 13)
            assert.deepStrictEqual(a, b)
            assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
          }).pipe(Effect.scoped),
        60_000
      )
    })
  }

  describe("API, options and errors", () => {
    it.live("SQLite cannot take part", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(TwoPhaseCommit.make({
          coordinatorId: "sqlite",
          participants: [
            TwoPhaseCommit.participant("pg", T.pgLayer()),
            TwoPhaseCommit.participant("lite", Databases.sqlite())
          ],
          log: "pg",
          recovery: false
        }))
        assert.strictEqual((error as { _tag: string })._tag, "TwoPhaseUnsupported")
        assert.match((error as Error).message, /lite.*sqlite/)
      }).pipe(Effect.scoped))

    it.live("invalid configurations and unknown participants are typed errors", () =>
      Effect.gen(function*() {
        const bad = yield* Effect.flip(TwoPhaseCommit.make({
          coordinatorId: "has space",
          participants: [TwoPhaseCommit.participant("pg", T.pgLayer())],
          log: "pg"
        }))
        assert.strictEqual((bad as { _tag: string })._tag, "InvalidTwoPhaseConfig")
        const c = yield* TwoPhaseCommit.make({
          coordinatorId: T.uniqueCoordinator(),
          participants: [TwoPhaseCommit.participant("pg", T.pgLayer())],
          log: "pg",
          recovery: false
        })
        const unknown = yield* Effect.flip(c.run({ nope: Effect.void }))
        assert.strictEqual(unknown._tag, "InvalidTwoPhaseConfig")
        const level = yield* Effect.flip(c.run({ pg: Effect.void }, { isolation: "chaos" as never }))
        assert.strictEqual(level._tag, "InvalidTwoPhaseConfig")
        assert.isTrue(TransactionError.isTransactionError(level))
      }).pipe(Effect.scoped))

    it.live("the layer and the accessors: run, inDoubt, recover; a caller's own transaction is not used", () =>
      Effect.gen(function*() {
        const pair = pairs[1]!
        const t = yield* tables(pair)
        const coordinatorId = T.uniqueCoordinator()
        yield* Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId))
        const live = TwoPhaseCommit.layer({
          coordinatorId,
          participants: [
            TwoPhaseCommit.participant("pga", T.pgLayer()),
            TwoPhaseCommit.participant("pgb", T.pgBLayer())
          ],
          log: "pga"
        })
        const database = Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => Effect.map(sql<{ db: string }>`SELECT current_database() AS db`, (rows) => rows[0]!.db)
        )
        const program = Effect.gen(function*() {
          const result = yield* TwoPhaseCommit.run({
            pga: Effect.zipRight(T.insert(t.name, "l1"), database),
            pgb: Effect.zipRight(T.insert(t.name, "l1"), Effect.as(database, 7))
          })
          // The result's type follows the bodies.
          const check: { pga: string; pgb: number } = result
          // A body cannot require the caller's Transaction (it runs in its own branch): nobody can provide what
          // run then requires.
          const refused = TwoPhaseCommit.run({ pga: Transaction.setRollbackOnly }).pipe(
            Effect.provideService(Transaction.Transaction, undefined as unknown as Transaction.Transaction),
            Effect.provideService(TwoPhaseCommit.Coordinator, undefined as unknown as TwoPhaseCommit.Coordinator)
          )
          // @ts-expect-error: BodyCannotRequireTransaction is left
          const _never: Effect.Effect<unknown, unknown, never> = refused
          assert.deepStrictEqual(check, { pga: "test", pgb: 7 })
          assert.deepStrictEqual(yield* TwoPhaseCommit.inDoubt, [])
          const report = yield* TwoPhaseCommit.recover
          assert.strictEqual(report.found, 0)
        })
        // Inside a transaction of the caller on database b's admin client (the one global TransactionConnection
        // key): the bodies still run on their own branches, and the caller's rollback does not undo them.
        const exit = yield* t.b.withTransaction(Effect.zipRight(program, Effect.fail("caller rolls back"))).pipe(
          Effect.provide(live),
          Effect.exit
        )
        assert.isTrue(Exit.isFailure(exit))
        assert.deepStrictEqual(yield* t.rows, [["l1"], ["l1"]])
      }).pipe(Effect.scoped))

    it.live("the layer's periodic scan rolls back a prepared transaction left without a decision", () =>
      Effect.gen(function*() {
        const pair = pairs[1]!
        const t = yield* tables(pair)
        const coordinatorId = T.uniqueCoordinator()
        yield* Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId))
        yield* TwoPhaseCommit.make({
          coordinatorId,
          participants: [
            TwoPhaseCommit.participant("pga", T.pgLayer()),
            TwoPhaseCommit.participant("pgb", T.pgBLayer())
          ],
          log: "pga",
          recoveryInterval: "200 millis",
          recoveryThreshold: "300 millis"
        })
        // Left behind by a coordinator with this id that died before its decision.
        const gid = `etx2pc.${coordinatorId}.${Date.now().toString(36).padStart(9, "0")}zzzzzzzz.1`
        yield* t.b.withTransaction(Effect.gen(function*() {
          yield* t.b.unsafe(`INSERT INTO ${t.name} (id, amount) VALUES ('left', 1)`)
          yield* t.b.unsafe(`PREPARE TRANSACTION '${gid}'`)
        })).pipe(Effect.catchAllDefect(() => Effect.void))
        assert.deepStrictEqual(yield* T.preparedLeft(coordinatorId), [gid])
        const resolved = Metric.snapshot.pipe(
          Effect.map((pairs) =>
            pairs.filter((p) =>
              p.metricKey.name === "transactions_in_doubt_resolved_total" &&
              p.metricKey.tags.some((tag) => tag.key === "coordinator" && tag.value === coordinatorId)
            ).reduce((sum, p) => sum + ((p.metricState as { count?: number }).count ?? 0), 0)
          )
        )
        for (let i = 0; i < 40 && (yield* T.preparedLeft(coordinatorId)).length > 0; i++) {
          yield* Effect.sleep("100 millis")
        }
        assert.deepStrictEqual(yield* T.preparedLeft(coordinatorId), [])
        assert.strictEqual(yield* resolved, 1)
        assert.deepStrictEqual(yield* t.rows, [[], []])
      }).pipe(Effect.scoped))

    it.live("the isolation level applies per participant", () =>
      Effect.gen(function*() {
        const pair = pairs[0]!
        const t = yield* tables(pair)
        const c = yield* coordinator(pair)
        const level = Effect.flatMap(SqlClient.SqlClient, (sql) =>
          sql.onDialectOrElse({
            pg: () =>
              Effect.map(
                sql<{ l: string }>`SELECT current_setting('transaction_isolation') AS l`,
                (rows) => rows[0]!.l
              ),
            orElse: () =>
              Effect.gen(function*() {
                yield* T.insert(t.name, "i1") // InnoDB lists a transaction once it has touched a table
                yield* sql`SELECT SLEEP(0.15)` // INNODB_TRX is a cache refreshed at most every 100 ms
                const rows = yield* sql<
                  { l: string }
                >`SELECT trx_isolation_level AS l FROM information_schema.INNODB_TRX
                  WHERE trx_mysql_thread_id = CONNECTION_ID()`
                return rows[0]?.l ?? "none"
              })
          }))
        const result = yield* c.run({ [pair.a.name]: level, [pair.b.name]: level }, {
          isolation: { [pair.a.name]: "serializable", [pair.b.name]: "read committed" }
        })
        assert.deepStrictEqual(result, { [pair.a.name]: "serializable", [pair.b.name]: "READ COMMITTED" })
      }).pipe(Effect.scoped))

    it.live("MariaDB: a statement XA forbids is a typed error, and every branch rolls back", () =>
      Effect.gen(function*() {
        const pair = pairs[0]!
        const t = yield* tables(pair)
        const c = yield* coordinator(pair)
        const error = yield* Effect.flip(c.run({
          [pair.a.name]: T.insert(t.name, "f1"),
          [pair.b.name]: Effect.zipRight(
            T.insert(t.name, "f1"),
            Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`CREATE TABLE forbidden_${Date.now()} (x INT)`))
          )
        }))
        assert.strictEqual(error._tag, "TwoPhaseForbidden")
        if (error._tag === "TwoPhaseForbidden") {
          assert.strictEqual(error.dialect, "mysql")
          assert.strictEqual(error.code, "1399")
        }
        assert.deepStrictEqual(yield* t.rows, [[], []])
        assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
      }).pipe(Effect.scoped))

    it.live("PostgreSQL: a branch aborted by a caught error cannot be prepared: PrepareFailed, all rolled back", () =>
      Effect.gen(function*() {
        const pair = pairs[0]!
        const t = yield* tables(pair)
        const c = yield* coordinator(pair)
        const error = yield* Effect.flip(c.run({
          [pair.b.name]: T.insert(t.name, "ab1"),
          [pair.a.name]: Effect.zipRight(
            T.insert(t.name, "ab1"),
            Effect.ignore(Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT 1 / 0`))
          )
        }))
        assert.strictEqual(error._tag, "PrepareFailed")
        if (error._tag === "PrepareFailed") {
          assert.strictEqual(error.participant, pair.a.name)
          assert.strictEqual((error.cause as { _tag: string })._tag, "TransactionAborted")
        }
        assert.deepStrictEqual(yield* t.rows, [[], []])
        assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
      }).pipe(Effect.scoped))

    it.live("PostgreSQL: LISTEN is a typed error at PREPARE", () =>
      Effect.gen(function*() {
        const pair = pairs[1]!
        const t = yield* tables(pair)
        const c = yield* coordinator(pair)
        const error = yield* Effect.flip(c.run({
          [pair.a.name]: T.insert(t.name, "l1"),
          [pair.b.name]: Effect.zipRight(
            T.insert(t.name, "l1"),
            Effect.flatMap(SqlClient.SqlClient, (sql) => sql`LISTEN some_channel`)
          )
        }))
        assert.strictEqual(error._tag, "TwoPhaseForbidden")
        assert.match((error as Error).message, /LISTEN/)
        assert.deepStrictEqual(yield* t.rows, [[], []])
      }).pipe(Effect.scoped))

    it.live("an abort retention shorter than the recovery threshold, or a NaN duration, is refused", () =>
      Effect.gen(function*() {
        const config = (extra: Partial<TwoPhaseCommit.Config<ReadonlyArray<TwoPhaseCommit.Participant<unknown>>>>) =>
          Effect.flip(TwoPhaseCommit.make({
            coordinatorId: T.uniqueCoordinator(),
            participants: [TwoPhaseCommit.participant("pg", T.pgLayer())],
            log: "pg",
            recovery: false,
            ...extra
          }))
        const short = yield* config({ recoveryThreshold: "10 minutes", abortRetention: "1 minute" })
        assert.strictEqual((short as { _tag: string })._tag, "InvalidTwoPhaseConfig")
        assert.strictEqual((short as TwoPhaseCommit.InvalidTwoPhaseConfig).option, "abortRetention")
        const nan = yield* config({ recoveryThreshold: NaN })
        assert.strictEqual((nan as TwoPhaseCommit.InvalidTwoPhaseConfig).option, "recoveryThreshold")
        const negative = yield* config({ recoveryThreshold: "-1 minutes" })
        assert.strictEqual((negative as TwoPhaseCommit.InvalidTwoPhaseConfig).option, "recoveryThreshold")
        // The coordinator keeps a connection of the log participant's pool for the log.
        const single = yield* Effect.flip(TwoPhaseCommit.make({
          coordinatorId: T.uniqueCoordinator(),
          participants: [TwoPhaseCommit.participant("pg", Databases.pg({ maxConnections: 1 }))],
          log: "pg",
          recovery: false
        }))
        assert.strictEqual((single as TwoPhaseCommit.InvalidTwoPhaseConfig).option, "log")
      }).pipe(Effect.scoped))

    it.live("withRetry learns that a two-phase transaction committed: the attempt does not run again", () =>
      Effect.gen(function*() {
        const pair = pairs[1]!
        const t = yield* tables(pair)
        const c = yield* coordinator(pair)
        let attempts = 0
        const fields = { dialect: "pg" as const, code: "40001", cause: undefined }
        const error = yield* Effect.flip(withRetry(
          Effect.gen(function*() {
            attempts++
            yield* c.run({ pga: T.insert(t.name, `w${attempts}`), pgb: T.insert(t.name, `w${attempts}`) })
            return yield* new TransactionError.SerializationFailure(fields)
          }),
          Schedule.recurs(3)
        ))
        assert.strictEqual(error._tag, "SerializationFailure")
        assert.strictEqual(attempts, 1)
        assert.deepStrictEqual(yield* t.rows, [["w1"], ["w1"]])
        // A two-phase transaction that failed with a retryable error is run again; as with atomic, the
        // afterRollback hooks of the attempts run again are dropped.
        let tries = 0
        const hooks: Array<string> = []
        yield* withRetry(
          c.run({
            pga: T.insert(t.name, "x1"),
            pgb: Effect.suspend((): Effect.Effect<unknown, unknown, SqlClient.SqlClient> =>
              ++tries < 3 ? Effect.fail(new TransactionError.SerializationFailure(fields)) : T.insert(t.name, "x1")
            )
          }, {
            hooks: {
              afterRollback: () => Effect.sync(() => hooks.push("rolled back")),
              afterCommit: () => Effect.sync(() => hooks.push("committed"))
            }
          }),
          Schedule.recurs(3)
        )
        assert.strictEqual(tries, 3)
        assert.deepStrictEqual(hooks, ["committed"])
        assert.deepStrictEqual(yield* t.rows, [["w1", "x1"], ["w1", "x1"]])
      }).pipe(Effect.scoped))

    it.live("PostgreSQL: a serialization failure at PREPARE (SERIALIZABLE write skew) is retryable", () =>
      Effect.gen(function*() {
        const pair = pairs[1]!
        const t = yield* tables(pair)
        yield* t.a.unsafe(`INSERT INTO ${t.name} (id, amount) VALUES ('on1', 1), ('on2', 1)`)
        const c = yield* coordinator(pair)
        const bothRead = yield* Effect.all([Deferred.make<void>(), Deferred.make<void>()])
        const secondUpdated = yield* Deferred.make<void>()
        const firstDone = yield* Deferred.make<void>()
        let secondBodyEnded = false
        // Each reads both rows (both on call), then takes one off call: together they break "one on call". Both
        // UPDATEs run before either PREPARE; the second prepares once the first committed.
        const body = (i: 0 | 1) =>
          Effect.flatMap(SqlClient.SqlClient, (sql) =>
            Effect.gen(function*() {
              yield* sql.unsafe(`SELECT SUM(amount) AS n FROM ${t.name}`)
              yield* Deferred.succeed(bothRead[i], undefined)
              yield* Deferred.await(bothRead[1 - i]!)
              if (i === 0) yield* Deferred.await(secondUpdated)
              yield* sql.unsafe(`UPDATE ${t.name} SET amount = 0 WHERE id = 'on${i + 1}'`)
              if (i === 1) {
                yield* Deferred.succeed(secondUpdated, undefined)
                yield* Deferred.await(firstDone)
                secondBodyEnded = true
              }
            }))
        const run = (i: 0 | 1) =>
          Effect.either(c.run({ pga: body(i), pgb: Effect.void }, { isolation: "serializable" }))
        const [first, second] = yield* Effect.all([
          Effect.ensuring(run(0), Deferred.succeed(firstDone, undefined)),
          run(1)
        ], { concurrency: 2 })
        assert.isTrue(first._tag === "Right", `the first commits: ${JSON.stringify(first)}`)
        assert.isTrue(second._tag === "Left")
        // The second's body ended: the failure came at its PREPARE.
        assert.isTrue(secondBodyEnded)
        if (second._tag === "Left") {
          assert.strictEqual(second.left._tag, "SerializationFailure")
          assert.isTrue(TransactionError.isRetryable(second.left))
        }
        assert.deepStrictEqual(yield* T.preparedLeft(c.coordinatorId), [])
      }).pipe(Effect.scoped))

    it.live("a scan keeps only its participant's branches (two participants on one database)", () =>
      Effect.gen(function*() {
        const pair = pairs[1]!
        const t = yield* tables(pair)
        const coordinatorId = T.uniqueCoordinator()
        yield* Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId))
        const c = yield* TwoPhaseCommit.make({
          coordinatorId,
          participants: [
            TwoPhaseCommit.participant("one", T.pgLayer()),
            TwoPhaseCommit.participant("two", T.pgLayer())
          ],
          log: "one",
          recovery: false,
          recoveryThreshold: 0
        })
        // Left by a crashed coordinator: the branch of participant "two" (rank 1), on the database both share.
        const gid = `etx2pc.${coordinatorId}.${Date.now().toString(36).padStart(9, "0")}ssssssss.1`
        yield* t.a.withTransaction(Effect.gen(function*() {
          yield* t.a.unsafe(`INSERT INTO ${t.name} (id, amount) VALUES ('s1', 1)`)
          yield* t.a.unsafe(`PREPARE TRANSACTION '${gid}'`)
        })).pipe(Effect.catchAllDefect(() => Effect.void))
        const listed = yield* c.inDoubt
        assert.deepStrictEqual(listed.map((l) => [l.participant, l.gid]), [["two", gid]])
        assert.deepStrictEqual(yield* c.recover, { found: 1, committed: 0, rolledBack: 1, failed: 0, forgotten: 0 })
        assert.deepStrictEqual(yield* T.preparedLeft(coordinatorId), [])
      }).pipe(Effect.scoped))

    it("PostgreSQL with max_prepared_transactions = 0 is recognised, and the error says how to set it", () => {
      const cause = { code: "55000", message: "prepared transactions are disabled" }
      assert.isTrue(Protocol.pg.disabled(cause))
      const error = new TwoPhaseCommit.PreparedTransactionsDisabled({ participant: "billing", cause })
      assert.match(error.message, /max_prepared_transactions/)
      assert.match(error.message, /ALTER SYSTEM SET max_prepared_transactions/)
      assert.match(error.message, /restart/)
    })
  })
})
