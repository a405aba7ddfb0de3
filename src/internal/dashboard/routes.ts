/**
 * The dashboard's routes: the page and its assets, the JSON/CSV API, the event stream, health and metrics, behind
 * an optional token.
 */
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Redacted from "effect/Redacted"
import * as Stream from "effect/Stream"
import * as Crypto from "node:crypto"
import * as Prometheus from "../../Prometheus.js"
import type { DashboardOptions } from "../../TransactionDashboard.js"
import { type AlertLevel, levels, TransactionMonitor } from "../../TransactionMonitor.js"
import * as Assets from "./assets.js"
import * as Events from "./events.js"
import * as Page from "./page.js"

/** @internal `"/tx/"` → `"/tx"`; `"/"` or nothing → `""`. */
export const normalizeBase = (basePath: string | undefined): string => {
  const trimmed = (basePath ?? "").replace(/\/+$/, "")
  return trimmed === "" ? "" : trimmed.startsWith("/") ? trimmed : `/${trimmed}`
}

/** @internal Why a server could not listen, in words. */
export const listenFailure = (cause: unknown): string => {
  const code = typeof cause === "object" && cause !== null ? (cause as { code?: unknown }).code : undefined
  return code === "EADDRINUSE"
    ? "the port is in use (choose another `port`, or 0 for a free one)"
    : code === "EACCES"
    ? "permission denied (ports below 1024 need privileges)"
    : code === "EADDRNOTAVAIL"
    ? "the address is not one of this machine's (`host`)"
    : `could not listen: ${cause instanceof Error ? cause.message : String(cause)}`
}

class BadRequest {
  readonly _tag = "BadRequest"
  constructor(readonly message: string) {}
}

const jsonResponse = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  HttpServerResponse.text(JSON.stringify(body), {
    status,
    contentType: "application/json; charset=utf-8",
    headers: { "cache-control": "no-store", "x-content-type-options": "nosniff", ...headers }
  })

const badRequest = (error: BadRequest) => jsonResponse({ error: error.message }, 400)

const searchParams = Effect.map(
  HttpServerRequest.ParsedSearchParams,
  (params) => (name: string): string | undefined => {
    const value = params[name]
    return Array.isArray(value) ? value[0] : value
  }
)

/** An epoch-milliseconds parameter (or an ISO date), `undefined` when absent. */
const timeParam = (
  get: (name: string) => string | undefined,
  name: string
): Effect.Effect<number | undefined, BadRequest> => {
  const raw = get(name)
  if (raw === undefined || raw === "") return Effect.succeed(undefined)
  const value = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw)
  return Number.isFinite(value)
    ? Effect.succeed(value)
    : Effect.fail(new BadRequest(`"${name}" must be epoch milliseconds or an ISO date, not ${JSON.stringify(raw)}`))
}

const limitParam = (
  get: (name: string) => string | undefined,
  fallback: number
): Effect.Effect<number, BadRequest> => {
  const raw = get("limit")
  if (raw === undefined || raw === "") return Effect.succeed(fallback)
  const value = Number(raw)
  return Number.isSafeInteger(value) && value >= 1 && value <= 100_000
    ? Effect.succeed(value)
    : Effect.fail(new BadRequest(`"limit" must be a whole number from 1 to 100000, not ${JSON.stringify(raw)}`))
}

/** Every `step`-th element so that at most `limit` remain, the latest always kept. */
const downsample = <A>(items: ReadonlyArray<A>, limit: number): ReadonlyArray<A> => {
  if (items.length <= limit) return items
  const step = items.length / limit
  const out: Array<A> = []
  for (let i = items.length - 1; i >= 0 && out.length < limit; i = Math.floor(i - step + 1e-9)) out.push(items[i]!)
  return out.reverse()
}

/** Constant-time comparison of the presented token with the expected one. */
const matches = (presented: string, expected: Buffer): boolean => {
  const given = Buffer.from(presented)
  return given.length === expected.length && Crypto.timingSafeEqual(given, expected)
}

/** @internal */
export const make = (
  options: DashboardOptions,
  shutdown: Effect.Effect<void> = Effect.never
): HttpRouter.HttpRouter<never, TransactionMonitor> => {
  const basePath = normalizeBase(options.basePath)
  const expected = options.token === undefined
    ? undefined
    : Buffer.from(Redacted.isRedacted(options.token) ? Redacted.value(options.token) : options.token)
  const keepAlive = Math.max(1, options.keepAliveSeconds ?? 15)

  const authorized = Effect.gen(function*() {
    if (expected === undefined) return true
    const request = yield* HttpServerRequest.HttpServerRequest
    const header = request.headers["authorization"]
    // The scheme is case-insensitive (RFC 9110 § 11.1).
    if (typeof header === "string" && /^bearer /i.test(header) && matches(header.slice(7).trim(), expected)) {
      return true
    }
    const get = yield* searchParams
    const query = get("token")
    return query !== undefined && matches(query, expected)
  })

  const guarded = <E, R>(
    handler: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
  ) =>
    Effect.flatMap(authorized, (ok) =>
      ok
        ? Effect.catchAll(handler, (error) =>
          Effect.succeed(
            error instanceof BadRequest
              ? badRequest(error)
              : jsonResponse({ error: error instanceof Error ? error.message : String(error) }, 500)
          ))
        : Effect.succeed(jsonResponse({ error: "a valid token is required" }, 401, { "www-authenticate": "Bearer" })))

  const withMonitor = <A, E, R>(f: (monitor: TransactionMonitor) => Effect.Effect<A, E, R>) =>
    Effect.flatMap(TransactionMonitor, f)

  const page = guarded(Effect.sync(() => {
    const nonce = Crypto.randomBytes(16).toString("base64")
    return HttpServerResponse.text(Page.render({ basePath, title: options.title ?? "effect-sql-tx", nonce }), {
      contentType: "text/html; charset=utf-8",
      headers: {
        "content-security-policy": Page.contentSecurityPolicy(nonce),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store"
      }
    })
  }))

  const asset = (name: Assets.AssetName) =>
    guarded(Effect.map(Assets.load(name), (asset) =>
      HttpServerResponse.uint8Array(asset.body, {
        contentType: asset.contentType,
        headers: { "cache-control": "no-cache", "x-content-type-options": "nosniff" }
      })))

  const snapshot = guarded(withMonitor((monitor) => Effect.map(Events.state(monitor), (state) => jsonResponse(state))))

  const history = guarded(withMonitor((monitor) =>
    Effect.gen(function*() {
      const get = yield* searchParams
      const from = yield* timeParam(get, "from")
      const to = yield* timeParam(get, "to")
      const limit = yield* limitParam(get, 1000)
      const instance = get("instance")
      if (from !== undefined && to !== undefined && from > to) {
        return yield* Effect.fail(new BadRequest(`"from" (${from}) is after "to" (${to})`))
      }
      const snapshots = yield* monitor.history({ from, to, instance })
      return jsonResponse(downsample(snapshots, limit))
    })
  ))

  const alerts = guarded(withMonitor((monitor) =>
    Effect.gen(function*() {
      const get = yield* searchParams
      const level = get("level")
      if (level !== undefined && !levels.includes(level as AlertLevel)) {
        return yield* Effect.fail(new BadRequest(`"level" must be one of ${levels.join(", ")}`))
      }
      const status = get("status")
      if (status !== undefined && status !== "open" && status !== "resolved") {
        return yield* Effect.fail(new BadRequest(`"status" must be open or resolved`))
      }
      const since = yield* timeParam(get, "since")
      const limit = yield* limitParam(get, 1000)
      return jsonResponse(
        yield* monitor.alerts({
          level: level as AlertLevel | undefined,
          since,
          status,
          rule: get("rule"),
          transaction: get("transaction"),
          limit
        })
      )
    })
  ))

  const report = (format: "json" | "csv") =>
    guarded(withMonitor((monitor) =>
      Effect.gen(function*() {
        const get = yield* searchParams
        const from = yield* timeParam(get, "from")
        const to = yield* timeParam(get, "to")
        const body = yield* monitor.report({ format, from, to })
        const stamp = new Date().toISOString().replace(/[:.]/g, "-")
        return HttpServerResponse.text(body, {
          contentType: format === "csv" ? "text/csv; charset=utf-8" : "application/json; charset=utf-8",
          headers: {
            "content-disposition": `attachment; filename="effect-sql-tx-report-${stamp}.${format}"`,
            "cache-control": "no-store",
            "x-content-type-options": "nosniff"
          }
        })
      })
    ))

  const health = guarded(
    withMonitor((monitor) => Effect.map(monitor.health, (health) => jsonResponse(health, health.httpStatus)))
  )

  const metrics = guarded(Effect.flatMap(
    Effect.serviceOption(Prometheus.Prometheus),
    (prometheus) =>
      prometheus._tag === "Some"
        ? prometheus.value.response
        : Effect.succeed(
          jsonResponse({ error: "no Prometheus exporter: provide Prometheus.layer" }, 404)
        )
  ))

  const events = guarded(withMonitor((monitor) =>
    Effect.gen(function*() {
      const request = yield* HttpServerRequest.HttpServerRequest
      const lastEventId = request.headers["last-event-id"]
      const since = lastEventId !== undefined && /^\d+$/.test(lastEventId) ? Number(lastEventId) : undefined
      const body: Stream.Stream<Uint8Array> = Events.stream(monitor, { since, keepAliveSeconds: keepAlive }).pipe(
        Stream.interruptWhen(shutdown)
      )
      return HttpServerResponse.stream(body, {
        contentType: "text/event-stream; charset=utf-8",
        headers: { "cache-control": "no-cache, no-transform", "x-accel-buffering": "no", connection: "close" }
      })
    })
  ))

  return HttpRouter.empty.pipe(
    HttpRouter.get("/", page),
    HttpRouter.get("/assets/dashboard.js", asset("dashboard.js")),
    HttpRouter.get("/assets/dashboard.css", asset("dashboard.css")),
    HttpRouter.get("/assets/uplot.js", asset("uplot.js")),
    HttpRouter.get("/assets/uplot.css", asset("uplot.css")),
    HttpRouter.get("/api/events", events),
    HttpRouter.get("/api/snapshot", snapshot),
    HttpRouter.get("/api/history", history),
    HttpRouter.get("/api/alerts", alerts),
    HttpRouter.get("/api/report.json", report("json")),
    HttpRouter.get("/api/report.csv", report("csv")),
    HttpRouter.get("/favicon.ico", Effect.succeed(HttpServerResponse.empty({ status: 204 }))),
    HttpRouter.get("/health", health),
    HttpRouter.get("/metrics", metrics)
  ) as HttpRouter.HttpRouter<never, TransactionMonitor>
}
