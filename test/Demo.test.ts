/**
 * The demo (`npm start`, `examples/demo.ts`) as its users run it: a child process with flags, its output read
 * through pipes (so not a terminal: progress comes as plain lines), its exit code checked. Runs on SQLite, and on
 * PostgreSQL through `--database-url`, where a test also breaks the books from outside and expects exit code 1.
 */
import { Command } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Stream } from "effect"
import { createRequire } from "node:module"
import * as Path from "node:path"
import { pgAdmin, pgUrl } from "./utils/databases.js"

const root = Path.join(import.meta.dirname, "..")
const tsx = createRequire(import.meta.url).resolve("tsx/cli")

interface Run {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/** Without the colours of the help text and of the logger on a terminal. */
const stripAnsi = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, "")

/**
 * Runs the demo with `args` (and `DATABASE_URL` empty unless given), calling `onLine` with each line of its
 * standard output as it comes.
 */
const demo = (
  args: ReadonlyArray<string>,
  options: {
    readonly databaseUrl?: string | undefined
    readonly onLine?: ((line: string) => Effect.Effect<void>) | undefined
  } = {}
) =>
  Effect.gen(function*() {
    const process = yield* Command.start(
      Command.make(globalThis.process.execPath, tsx, "examples/demo.ts", ...args).pipe(
        Command.workingDirectory(root),
        Command.env({ DATABASE_URL: options.databaseUrl ?? "" })
      )
    )
    const [stdout, stderr, exitCode] = yield* Effect.all([
      process.stdout.pipe(
        Stream.decodeText(),
        Stream.splitLines,
        Stream.tap((line) => options.onLine?.(line) ?? Effect.void),
        Stream.runFold("", (text, line) => `${text}${line}\n`)
      ),
      Stream.mkString(Stream.decodeText(process.stderr)),
      process.exitCode
    ], { concurrency: "unbounded" })
    return { exitCode, stdout: stripAnsi(stdout), stderr: stripAnsi(stderr) } satisfies Run
  }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

/** The tables of the run, from the line `tables: demo_accounts_…, demo_transfers_… (dropped at the end)`. */
const tablesOf = (line: string): ReadonlyArray<string> | undefined => {
  const match = /tables: (demo_accounts_\w+), (demo_transfers_\w+)/.exec(line)
  return match === null ? undefined : [match[1]!, match[2]!]
}

/** What every successful run prints: the summary with its invariant, the monitor's view, the dashboard's URL. */
const assertCompleted = (run: Run, dialect: string) => {
  assert.strictEqual(run.exitCode, 0, run.stdout + run.stderr)
  assert.include(run.stdout, `effect-sql-tx demo on ${dialect}: 4 workers, 10 accounts`)
  assert.match(run.stdout, /dashboard: http:\/\/127\.0\.0\.1:\d+\//)
  assert.include(run.stdout, "summary")
  assert.match(run.stdout, /committed: \d+/)
  assert.match(run.stdout, /sum of balances: 10000 \(expected 10000\)/)
  assert.match(run.stdout, /transfer log rows: (\d+) \(expected \1\)/)
  assert.include(run.stdout, "invariant: holds")
  assert.match(run.stdout, /monitor: health \d+\/100, \w+; \d+ open alert\(s\)/)
}

const timeout = 120_000

describe("Demo", () => {
  it.live("--help lists the options and exits with 0", () =>
    Effect.gen(function*() {
      const run = yield* demo(["--help"])
      assert.strictEqual(run.exitCode, 0, run.stderr)
      for (const option of ["--duration", "--workers", "--accounts", "--database-url", "--port", "--serve"]) {
        assert.include(run.stdout, option)
      }
      assert.include(run.stdout, "DATABASE_URL")
    }), timeout)

  it.live("invalid flags exit with 1 and say what is wrong", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string | undefined, string]> = [
        [["--workers", "0"], undefined, "--workers must be a positive integer; got 0"],
        [["--accounts", "1"], undefined, "--accounts must be an integer of at least 2"],
        [["--duration", "0"], undefined, "--duration must be a positive number of seconds; got 0"],
        [["--database-url", "ftp://x"], undefined, `unsupported scheme "ftp:"`],
        // The default of --database-url is checked the same way.
        [[], "ftp://user:secret@x", `unsupported scheme "ftp:"`]
      ]
      const runs = yield* Effect.forEach(
        cases,
        ([args, databaseUrl]) => demo(args, { databaseUrl }),
        { concurrency: 2 }
      )
      runs.forEach((run, i) => {
        const [args, , message] = cases[i]!
        assert.strictEqual(run.exitCode, 1, `${args.join(" ")}: ${run.stdout}${run.stderr}`)
        assert.include(run.stderr, message, args.join(" "))
        assert.notInclude(run.stdout + run.stderr, "secret", "a URL is not repeated, its password with it")
        assert.notInclude(run.stdout, "summary")
      })
    }), timeout)

  it.live("runs on SQLite, with a plain progress line a second when not on a terminal", () =>
    Effect.gen(function*() {
      const run = yield* demo(["--duration", "2", "--workers", "4", "--port", "0"])
      assertCompleted(run, "SQLite")
      assert.notInclude(run.stdout, "\r")
      const progress = run.stdout.split("\n").filter((line) =>
        /\d+s: committed \d+, rolled back for insufficient funds \d+, failed \d+$/.test(line)
      )
      assert.isAtLeast(progress.length, 1, run.stdout)
    }), timeout)

  it.scopedLive("runs on PostgreSQL with --database-url, and drops its tables", () =>
    Effect.gen(function*() {
      const run = yield* demo(["--duration", "1", "--workers", "4", "--port", "0", "--database-url", pgUrl])
      assertCompleted(run, "PostgreSQL")
      const tables = run.stdout.split("\n").map(tablesOf).find((tables) => tables !== undefined)
      assert.isDefined(tables, run.stdout)
      const sql = yield* pgAdmin
      const left = yield* sql<{ table_name: string }>`
          SELECT table_name FROM information_schema.tables WHERE table_name IN ${sql.in(tables!)}`
      assert.deepStrictEqual(left, [])
    }), timeout)

  it.scopedLive("exits with 1 when the books do not balance", () =>
    Effect.gen(function*() {
      const sql = yield* pgAdmin
      const tampered = yield* Deferred.make<void>()
      // Once the tables exist, money appears from nowhere in account 0: the sum of the balances is off by one.
      const run = yield* demo(["--duration", "3", "--workers", "4", "--port", "0", "--database-url", pgUrl], {
        onLine: (line) => {
          const tables = tablesOf(line)
          return tables === undefined ?
            Effect.void :
            sql`UPDATE ${sql(tables[0]!)} SET balance = balance + 1 WHERE id = 0`.pipe(
              Effect.orDie,
              Effect.zipRight(Deferred.succeed(tampered, undefined))
            )
        }
      })
      assert.isTrue(yield* Deferred.isDone(tampered), run.stdout)
      assert.strictEqual(run.exitCode, 1, run.stdout + run.stderr)
      assert.include(run.stdout, "sum of balances: 10001 (expected 10000)")
      assert.include(run.stdout, "invariant: BROKEN")
      assert.include(run.stdout, "the balance invariant is broken")
    }), timeout)
})
