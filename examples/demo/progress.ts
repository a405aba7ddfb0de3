/**
 * The demo's progress line. On a terminal it is one line rewritten in place (`\r`, then clear the line); a log line
 * written meanwhile clears it first and draws it again after, so the two never share a line. Anywhere else (a pipe,
 * a file, CI) each update is a plain log line.
 */
import * as Terminal from "@effect/platform/Terminal"
import { Context, Effect, Layer, Logger } from "effect"

/** Clears the current line of a terminal and returns the cursor to its start. */
const clearLine = "\r\x1b[2K"

export class Progress extends Context.Tag("effect-sql-tx/demo/Progress")<Progress, {
  /** Shows `line`: in place on a terminal, as a log line otherwise. */
  readonly update: (line: string) => Effect.Effect<void>
  /** Leaves the last line on screen and moves below it (a terminal only; nothing otherwise). */
  readonly end: Effect.Effect<void>
}>() {}

/**
 * `Progress`, and the default logger replaced by the pretty logger that keeps the progress line intact. Run with
 * `NodeRuntime.runMain({ disablePrettyLogger: true })`, so that this logger is the only one.
 */
export const layer: Layer.Layer<Progress, never, Terminal.Terminal> = Layer.unwrapEffect(Effect.gen(function*() {
  const terminal = yield* Terminal.Terminal
  const isTTY = yield* terminal.isTTY
  if (!isTTY) {
    return Layer.merge(
      Layer.succeed(Progress, { update: (line) => Effect.log(line), end: Effect.void }),
      Logger.replace(Logger.defaultLogger, Logger.prettyLoggerDefault)
    )
  }
  /** The progress line on screen, if any. */
  let shown: string | undefined
  const display = (text: string) => Effect.ignore(terminal.display(text))
  const logger = Logger.make<unknown, void>((options) => {
    if (shown === undefined) return Logger.prettyLoggerDefault.log(options)
    process.stdout.write(clearLine)
    Logger.prettyLoggerDefault.log(options)
    process.stdout.write(shown)
  })
  return Layer.merge(
    Layer.succeed(Progress, {
      update: (line) =>
        Effect.flatMap(terminal.columns, (columns) => {
          // A line longer than the terminal wraps, and `\r` would rewrite only its last row.
          shown = columns > 1 && line.length >= columns ? `${line.slice(0, columns - 2)}…` : line
          return display(`${clearLine}${shown}`)
        }),
      end: Effect.suspend(() => {
        if (shown === undefined) return Effect.void
        shown = undefined
        return display("\n")
      })
    }),
    Logger.replace(Logger.defaultLogger, logger)
  )
}))
