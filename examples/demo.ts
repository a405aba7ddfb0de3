/**
 * `npm start`: concurrent bank transfers through `Transaction.atomic`, on embedded SQLite by default, or on the
 * database of `--database-url` (default: `DATABASE_URL`).
 *
 *   npm start -- --duration 5 --workers 8 --accounts 10 [--database-url postgres://…] [--port 9464] [--serve]
 *   npm start -- --help
 *
 * The dashboard is served while the workload runs (its URL is printed); with `--serve` it stays up after the
 * summary, until Ctrl-C. The exit code is 0 when the books balance, 1 when they do not or the flags are invalid.
 * The workload is in `demo/bank.ts`, the progress line in `demo/progress.ts`, the database URLs in
 * `demo/database.ts`.
 */
import { Command, HelpDoc, Options, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Config, Duration, Effect, Either, Option } from "effect"
import packageJson from "../package.json" with { type: "json" }
import * as Bank from "./demo/bank.js"
import * as Database from "./demo/database.js"
import * as Progress from "./demo/progress.js"

const invalid = (message: string) => ValidationError.invalidValue(HelpDoc.p(message))

/** A number flag with a default, and a clear message when `valid` rejects its value. */
const numberFlag = (name: string, options: {
  readonly kind: "integer" | "float"
  readonly pseudoName: string
  readonly fallback: number
  readonly valid: (value: number) => boolean
  readonly requirement: string
  readonly description: string
}) =>
  (options.kind === "integer" ? Options.integer(name) : Options.float(name)).pipe(
    Options.withPseudoName(options.pseudoName),
    Options.withDescription(`${options.description} Default: ${options.fallback}.`),
    Options.withDefault(options.fallback),
    Options.mapEffect((value) =>
      options.valid(value)
        ? Effect.succeed(value)
        : Effect.fail(invalid(`--${name} must be ${options.requirement}; got ${value}`))
    )
  )

const duration = numberFlag("duration", {
  pseudoName: "seconds",
  kind: "float",
  fallback: 5,
  valid: (seconds) => seconds > 0 && Number.isFinite(seconds),
  requirement: "a positive number of seconds",
  description: "How long the transfers run, in seconds."
}).pipe(Options.map(Duration.seconds))

const workers = numberFlag("workers", {
  pseudoName: "n",
  kind: "integer",
  fallback: 8,
  valid: (workers) => workers >= 1,
  requirement: "a positive integer",
  description: "Concurrent workers, each running one transfer after another (also the size of the pool)."
})

const accounts = numberFlag("accounts", {
  pseudoName: "n",
  kind: "integer",
  fallback: 10,
  valid: (accounts) => accounts >= 2,
  requirement: "an integer of at least 2 (a transfer needs two accounts)",
  description: "Bank accounts; a transfer moves money from one to another."
})

const port = numberFlag("port", {
  pseudoName: "port",
  kind: "integer",
  fallback: 9464,
  valid: (port) => port >= 0 && port <= 65535,
  requirement: "a port number from 0 to 65535",
  description: "The dashboard's port; a taken port, or 0, falls back to a free one."
})

const databaseUrl = Options.text("database-url").pipe(
  Options.withPseudoName("url"),
  Options.withDescription(
    "postgres://…, postgresql://…, mysql://…, a file: URL or a SQLite file path. Default: DATABASE_URL, " +
      "else SQLite in a temporary folder."
  ),
  Options.withFallbackConfig(Config.string("DATABASE_URL")),
  Options.optional,
  Options.mapEffect((url) =>
    Either.match(Database.parse(Option.getOrElse(url, () => "")), {
      onLeft: (message) => Effect.fail(invalid(`--database-url (or DATABASE_URL): ${message}`)),
      onRight: Effect.succeed
    })
  )
)

const serve = Options.boolean("serve").pipe(
  Options.withDescription("Keep the dashboard up after the summary, until Ctrl-C.")
)

const command = Command.make(
  "demo",
  { duration, workers, accounts, database: databaseUrl, port, serve },
  Bank.run
).pipe(
  Command.withDescription(
    "Concurrent bank transfers through Transaction.atomic, a progress line a second, then a summary: the " +
      "transaction metrics, the balance invariant and the monitor's health, alerts and recommendations. " +
      "Exits with 1 when the invariant breaks."
  )
)

const cli = Command.run(command, { name: "effect-sql-tx demo", version: packageJson.version })

cli(process.argv).pipe(
  // @effect/cli has already printed what is wrong with the flags; a broken invariant gets one line.
  Effect.tapErrorCause((cause) =>
    Option.match(Cause.failureOption(cause), {
      onNone: () => Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(cause),
      onSome: (error) =>
        ValidationError.isValidationError(error)
          ? Effect.void
          : error instanceof Bank.InvariantBroken
          ? Effect.logError(error.message)
          : Effect.logError(cause)
    })
  ),
  Effect.provide(Progress.layer),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
