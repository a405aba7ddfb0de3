/**
 * The dashboard on a real server for tests: a layer (SQLite in memory, the manager, a monitor whose fiber never
 * fires, the dashboard on a free port), requests with Node's `fetch`, and a client of the event stream that parses
 * the server-sent events framing itself.
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { Duration, Scope } from "effect"
import { Effect, Layer } from "effect"
import { TransactionLayer, TransactionMonitor } from "../../src/index.js"
import * as TransactionDashboard from "../../src/TransactionDashboard.js"
import { committedReading } from "./readings.js"

/**
 * The dashboard on port 0 over a monitor of SQLite in memory. The monitor's interval is an hour (its fiber never
 * fires: tests call `takeSnapshot`) and it has no rules unless given.
 */
export const dashboardLayer = (
  options: Partial<TransactionDashboard.DashboardLayerOptions> = {},
  monitor: TransactionMonitor.TransactionMonitorConfig = {}
) =>
  TransactionDashboard.layer({ port: 0, ...options }).pipe(
    Layer.provideMerge(TransactionMonitor.layer({ interval: "1 hour", rules: [], ...monitor })),
    Layer.provideMerge(TransactionLayer),
    Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" }))
  )

/** A path relative to the dashboard (`"api/snapshot"`, under its `basePath`), or from the root (`"/nope"`). */
export const urlOf = (server: TransactionDashboard.DashboardServer, path: string): URL => new URL(path, server.url)

export interface Reply {
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

/** A request to the dashboard, its body read whole. */
export const request = (
  path: string,
  init: RequestInit = {}
): Effect.Effect<Reply, unknown, TransactionDashboard.DashboardServer> =>
  Effect.gen(function*() {
    const server = yield* TransactionDashboard.DashboardServer
    const response = yield* Effect.tryPromise(() => fetch(urlOf(server, path), init))
    const text = yield* Effect.tryPromise(() => response.text())
    return { status: response.status, headers: response.headers, text }
  })

/** The status and headers of a request, its body left unread (the connection is closed): for the event stream. */
export const statusOf = (
  path: string,
  init: RequestInit = {}
): Effect.Effect<
  { readonly status: number; readonly headers: Headers },
  unknown,
  TransactionDashboard.DashboardServer
> =>
  Effect.gen(function*() {
    const server = yield* TransactionDashboard.DashboardServer
    const controller = new AbortController()
    const response = yield* Effect.tryPromise(() => fetch(urlOf(server, path), { ...init, signal: controller.signal }))
    controller.abort()
    return { status: response.status, headers: response.headers }
  })

/** A request whose answer must be JSON: the status and the parsed body. */
export const requestJson = <A = any>(
  path: string,
  init: RequestInit = {}
): Effect.Effect<
  { readonly status: number; readonly headers: Headers; readonly body: A },
  unknown,
  TransactionDashboard.DashboardServer
> =>
  Effect.map(request(path, init), (reply) => {
    const type = reply.headers.get("content-type") ?? ""
    if (!type.startsWith("application/json")) {
      throw new Error(`expected JSON from ${path}, got ${reply.status} ${type}: ${reply.text.slice(0, 200)}`)
    }
    return { status: reply.status, headers: reply.headers, body: JSON.parse(reply.text) as A }
  })

/** What `GET /api/snapshot` and each `snapshot` event carry. */
export interface DashboardState {
  readonly snapshot?: TransactionMonitor.MonitorSnapshot
  readonly health: TransactionMonitor.Health
  readonly alerts: Array<TransactionMonitor.Alert>
  readonly recommendations: Array<TransactionMonitor.Recommendation>
  readonly interval: number
}

/** One frame of a server-sent events stream (the text between two blank lines). */
export interface SseFrame {
  readonly raw: string
  readonly event: string | undefined
  readonly id: string | undefined
  /** The `data:` lines joined with newlines. */
  readonly data: string | undefined
  readonly retry: number | undefined
  /** The text of the comment lines (`: keep-alive` → `"keep-alive"`). */
  readonly comments: ReadonlyArray<string>
}

/** Parses one frame by the rules of the HTML standard's event stream format (fields, comments, one space). */
export const parseFrame = (raw: string): SseFrame => {
  let event: string | undefined
  let id: string | undefined
  let retry: number | undefined
  const data: Array<string> = []
  const comments: Array<string> = []
  for (const line of raw.split(/\r\n|\r|\n/)) {
    if (line.startsWith(":")) {
      comments.push(line.slice(1).trim())
      continue
    }
    const colon = line.indexOf(":")
    const field = colon < 0 ? line : line.slice(0, colon)
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "")
    if (field === "event") event = value
    else if (field === "data") data.push(value)
    else if (field === "id") id = value
    else if (field === "retry") retry = Number(value)
  }
  return { raw, event, id, data: data.length === 0 ? undefined : data.join("\n"), retry, comments }
}

export interface EventClient {
  readonly status: number
  readonly headers: Headers
  /** The next frame (comments included), failing when none arrives within `within` (default 10 s). */
  readonly next: (within?: Duration.DurationInput) => Effect.Effect<SseFrame, unknown>
  /** The next frame with an `event:` field, keep-alive comments skipped. */
  readonly nextEvent: (within?: Duration.DurationInput) => Effect.Effect<SseFrame, unknown>
}

/**
 * Opens the event stream (`api/events` unless told) with `fetch` and reads it frame by frame; the request is
 * aborted when the scope closes (close it before the server's layer, or the server waits for the stream).
 */
export const openEvents = (
  options: { readonly path?: string | undefined; readonly headers?: Record<string, string> | undefined } = {}
): Effect.Effect<EventClient, unknown, TransactionDashboard.DashboardServer | Scope.Scope> =>
  Effect.gen(function*() {
    const server = yield* TransactionDashboard.DashboardServer
    const controller = yield* Effect.acquireRelease(
      Effect.sync(() => new AbortController()),
      (controller) => Effect.sync(() => controller.abort())
    )
    const response = yield* Effect.tryPromise(() =>
      fetch(urlOf(server, options.path ?? "api/events"), {
        headers: options.headers ?? {},
        signal: controller.signal
      })
    )
    if (response.body === null) return yield* Effect.fail(new Error("the event stream has no body"))
    const reader = response.body.getReader()
    const decoder = new TextDecoder()
    let buffer = ""
    // A read left waiting by a timed-out `next` is the next one's.
    let pending: ReturnType<typeof reader.read> | undefined
    const read = async (): Promise<SseFrame> => {
      for (;;) {
        const end = buffer.search(/\r\n\r\n|\n\n|\r\r/)
        if (end >= 0) {
          const separator = buffer.startsWith("\r\n\r\n", end) ? 4 : 2
          const raw = buffer.slice(0, end)
          buffer = buffer.slice(end + separator)
          return parseFrame(raw)
        }
        pending ??= reader.read()
        const result = await pending
        pending = undefined
        if (result.done) throw new Error(`the event stream ended (left: ${JSON.stringify(buffer)})`)
        buffer += decoder.decode(result.value, { stream: true })
      }
    }
    const next = (within: Duration.DurationInput = "10 seconds") =>
      Effect.tryPromise(read).pipe(
        Effect.timeoutFail({ duration: within, onTimeout: () => new Error(`no frame within ${String(within)}`) })
      )
    const nextEvent = (within: Duration.DurationInput = "10 seconds"): Effect.Effect<SseFrame, unknown> =>
      Effect.flatMap(next(within), (frame) => frame.event === undefined ? nextEvent(within) : Effect.succeed(frame))
    return { status: response.status, headers: response.headers, next, nextEvent }
  })

/**
 * A monitor source with one transaction name whose count grows by one at each reading (for names the library would
 * refuse, such as markup).
 */
export const growingSource = (name: string): Effect.Effect<TransactionMonitor.MonitorReading> => {
  let n = 0
  return Effect.sync(() => ({ names: new Map([[name, committedReading(++n, 0.001)]]), active: [] }))
}
