/**
 * Crash points of the two-phase commit: a coordinator in a child process is killed (SIGKILL) after the first
 * PREPARE, after all PREPAREs, after the decision is logged, after the first COMMIT PREPARED; a fresh coordinator
 * with the same id then recovers. Every case ends all committed or all rolled back, never mixed, with no prepared
 * transaction left. Then a bank workload across PostgreSQL and MariaDB with random kills: money is conserved and
 * every transfer is logged once on each side.
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as ChildProcess from "node:child_process"
import * as Path from "node:path"
import { TwoPhaseCommit } from "../src/index.js"
import * as Databases from "./utils/databases.js"
import * as T from "./utils/twophase.js"

const root = Path.resolve(import.meta.dirname, "..")
const child = Path.resolve(import.meta.dirname, "twophase/child.ts")

interface Pair {
  readonly name: string
  readonly id: "pg-mysql" | "pg-pg"
  readonly other: () => Layer.Layer<SqlClient.SqlClient, unknown>
  readonly otherAdmin: Effect.Effect<SqlClient.SqlClient, unknown, import("effect/Scope").Scope>
}

const pairs: ReadonlyArray<Pair> = [
  { name: "PostgreSQL + MariaDB", id: "pg-mysql", other: T.mysqlLayer, otherAdmin: T.mysqlAdminClient },
  { name: "two PostgreSQL databases", id: "pg-pg", other: T.pgBLayer, otherAdmin: T.pgBAdmin }
]

interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the child; `killAfter` kills it from outside that many milliseconds after it printed `ready`. */
const spawn = (env: Record<string, string>, killAfter?: number): Effect.Effect<Ended> =>
  Effect.async<Ended>((resume) => {
    // One process (not the tsx launcher, which would outlive a kill of itself): node with tsx's loader.
    const proc = ChildProcess.spawn(process.execPath, ["--import", "tsx", child], {
      cwd: root,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    let timer: ReturnType<typeof setTimeout> | undefined
    proc.stdout.on("data", (chunk) => {
      stdout += String(chunk)
      if (killAfter !== undefined && timer === undefined && stdout.includes("ready\n")) {
        timer = setTimeout(() => proc.kill("SIGKILL"), killAfter)
      }
    })
    proc.stderr.on("data", (chunk) => (stderr += String(chunk)))
    const guard = setTimeout(() => proc.kill("SIGKILL"), 60_000)
    proc.on("exit", (code, signal) => {
      clearTimeout(timer)
      clearTimeout(guard)
      resume(Effect.succeed({ code, signal, stdout, stderr }))
    })
    return Effect.sync(() => proc.kill("SIGKILL"))
  })

/** The tables of a run: rows by id on both sides, and one account per side. */
const setup = (pair: Pair, balance: number) =>
  Effect.gen(function*() {
    const a = yield* Databases.pgAdmin
    const b = yield* pair.otherAdmin
    const table = Databases.uniqueTable("tpc_crash")
    for (const sql of [a, b]) {
      yield* T.table(sql, table)
      yield* Effect.acquireRelease(
        sql.unsafe(`CREATE TABLE ${table}_accounts (id INT PRIMARY KEY, balance INT NOT NULL)`),
        () => Effect.ignore(sql.unsafe(`DROP TABLE IF EXISTS ${table}_accounts`))
      )
      yield* sql.unsafe(`INSERT INTO ${table}_accounts (id, balance) VALUES (1, ${balance})`)
    }
    const balances = Effect.map(
      Effect.all([a, b].map((sql) => sql.unsafe<{ balance: number }>(`SELECT balance FROM ${table}_accounts`))),
      (results) => results.map((rows) => Number(rows[0]!.balance))
    )
    return { a, b, table, rows: Effect.all([T.ids(a, table), T.ids(b, table)]), balances }
  })

/** A fresh coordinator with the same id recovers (at once: threshold 0), until nothing is left prepared. */
const recoverAll = (pair: Pair, coordinatorId: string) =>
  Effect.scoped(Effect.gen(function*() {
    const c = yield* TwoPhaseCommit.make({
      coordinatorId,
      participants: [
        TwoPhaseCommit.participant("a", T.pgLayer()),
        TwoPhaseCommit.participant("b", pair.other())
      ],
      log: "a",
      recoveryThreshold: 0,
      // Its scans are the ones below, which count what they finish.
      recovery: false
    })
    // MariaDB detaches a prepared branch from its session once it has seen the session close: a scan may come
    // before that, and leaves the branch for the next one.
    let resolved = 0
    for (let attempt = 0; attempt < 50; attempt++) {
      if ((yield* T.preparedLeft(coordinatorId)).length === 0) break
      yield* Effect.sleep("100 millis")
      const report = yield* c.recover
      resolved += report.committed + report.rolledBack
    }
    // One more scan forgets the finished decisions.
    const last = yield* c.recover
    return resolved + last.committed + last.rolledBack
  }))

const points: ReadonlyArray<readonly [TwoPhaseCommit.ProbePoint, "committed" | "rolled back"]> = [
  ["prepared-first", "rolled back"],
  ["prepared-all", "rolled back"],
  ["decided", "committed"],
  ["committed-first", "committed"]
]

describe("two-phase commit: crash points", () => {
  it.live("set up the second PostgreSQL database", () => T.ensureSecondPgDatabase)

  for (const pair of pairs) {
    describe(pair.name, () => {
      for (const [point, expected] of points) {
        it.live(`killed ${point}: recovery leaves everything ${expected}, nothing prepared`, () =>
          Effect.gen(function*() {
            const t = yield* setup(pair, 100)
            const coordinatorId = T.uniqueCoordinator()
            yield* Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId))
            const ended = yield* spawn({
              MODE: "crash",
              PAIR: pair.id,
              COORDINATOR: coordinatorId,
              TABLE: t.table,
              TRANSFER: "tx1",
              CRASH_POINT: point
            })
            assert.strictEqual(ended.signal, "SIGKILL", ended.stderr)
            // Before recovery: the transfer is in doubt on at least one side.
            const left = yield* T.preparedLeft(coordinatorId)
            assert.isAbove(left.length, 0)
            // Each branch left prepared is finished by the recovery, once.
            assert.strictEqual(yield* recoverAll(pair, coordinatorId), left.length)
            assert.deepStrictEqual(yield* T.preparedLeft(coordinatorId), [])
            const rows = yield* t.rows
            const balances = yield* t.balances
            if (expected === "committed") {
              assert.deepStrictEqual(rows, [["tx1"], ["tx1"]])
              assert.deepStrictEqual(balances, [90, 110])
            } else {
              assert.deepStrictEqual(rows, [[], []])
              assert.deepStrictEqual(balances, [100, 100])
            }
            // A committed transaction's decision is forgotten once finished.
            const log = yield* t.a.unsafe<{ decision: string }>(
              `SELECT decision FROM effect_sql_tx_2pc_log WHERE coordinator = '${coordinatorId}'`
            )
            assert.isFalse(log.some((row) => row.decision === "commit"))
          }).pipe(Effect.scoped))
      }
    })
  }

  it.live(
    "bank transfers PostgreSQL → MariaDB with random coordinator kills: money conserved, each logged once",
    () =>
      Effect.gen(function*() {
        const pair = pairs[0]!
        const initial = 100_000
        const t = yield* setup(pair, initial)
        const coordinatorId = T.uniqueCoordinator()
        yield* Effect.addFinalizer(() => T.cleanupPrepared(coordinatorId))
        let acknowledged = 0
        let inDoubt = 0
        for (let round = 0; round < 8; round++) {
          const ended = yield* spawn(
            { MODE: "bank", PAIR: pair.id, COORDINATOR: coordinatorId, TABLE: t.table },
            100 + Math.floor(Math.random() * 900)
          )
          assert.strictEqual(ended.signal, "SIGKILL", ended.stderr)
          const committed = ended.stdout.split("\n").filter((line) => line.startsWith("committed "))
          acknowledged += committed.length
          // Branches the kill left prepared (the layer's scan at start resolves most of them).
          inDoubt += (yield* T.preparedLeft(coordinatorId)).length
          yield* recoverAll(pair, coordinatorId)
          const [debits, credits] = yield* t.rows
          // Every transfer acknowledged to its caller is there.
          for (const line of committed) assert.include(debits, line.slice("committed ".length))
          assert.deepStrictEqual(debits, credits)
          const [a, b] = yield* t.balances
          assert.strictEqual(a! + b!, 2 * initial)
          assert.deepStrictEqual(yield* T.preparedLeft(coordinatorId), [])
        }
        // Each transfer once on each side (ids are primary keys); amounts agree with the balances.
        const sums = yield* Effect.all([t.a, t.b].map((sql) =>
          sql.unsafe<{ n: number; total: number }>(
            `SELECT COUNT(*) AS n, COALESCE(SUM(amount), 0) AS total FROM ${t.table}`
          )
        ))
        const [a, b] = yield* t.balances
        assert.strictEqual(Number(sums[0]![0]!.n), Number(sums[1]![0]!.n))
        assert.strictEqual(a, initial - Number(sums[0]![0]!.total))
        assert.strictEqual(b, initial + Number(sums[1]![0]!.total))
        assert.isAbove(acknowledged, 0)
        yield* Effect.logInfo("bank workload").pipe(
          Effect.annotateLogs({ transfers: Number(sums[0]![0]!.n), acknowledged, inDoubt })
        )
      }).pipe(Effect.scoped),
    180_000
  )
})
