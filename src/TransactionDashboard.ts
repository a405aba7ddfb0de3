/**
 * The dashboard: an `@effect/platform` router that serves a live page over the monitor (server-sent events), its
 * JSON/CSV API, `GET /health` and `GET /metrics`; and a layer that serves it on a Node HTTP server of its own.
 * An entry point of its own (`effect-sql-tx/TransactionDashboard`): the core does not load `@effect/platform`.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { TransactionLayer, TransactionMonitor } from "effect-sql-tx"
 * import * as TransactionDashboard from "effect-sql-tx/TransactionDashboard"
 *
 * // http://127.0.0.1:9464/ while the application runs.
 * const DashboardLive = TransactionDashboard.layer({ port: 9464 }).pipe(
 *   Layer.provideMerge(TransactionMonitor.layer()),
 *   Layer.provideMerge(TransactionLayer)
 * )
 * ```
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Http from "node:http"
import * as Routes from "./internal/dashboard/routes.js"
import * as Prometheus from "./Prometheus.js"
import type { TransactionMonitor } from "./TransactionMonitor.js"

/**
 * The options of {@link router}.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardOptions {
  /**
   * When set, every route (page, API, events, health, metrics) requires it: header `Authorization: Bearer <token>`,
   * or `?token=<token>` (the page keeps it for its own calls; `EventSource` cannot send headers).
   */
  readonly token?: Redacted.Redacted | string | undefined
  /** The path the router is mounted under (`"/tx"`), for the page's links. Default: the root. */
  readonly basePath?: string | undefined
  /** The page's title. Default "effect-sql-tx". */
  readonly title?: string | undefined
  /** Seconds between keep-alive comments on the event stream. Default 15. */
  readonly keepAliveSeconds?: number | undefined
}

/**
 * The dashboard's routes, to mount anywhere (`HttpRouter.mount("/tx", TransactionDashboard.router({ basePath:
 * "/tx" }))`): `GET /` (the page), `/assets/*`, `/api/events` (server-sent events), `/api/snapshot`,
 * `/api/history?from&to&limit`, `/api/alerts?level&since&rule&transaction&status&limit`, `/api/report.json`,
 * `/api/report.csv` (`?from&to`), `/health` (200 healthy or degraded, 503 unhealthy) and `/metrics` (Prometheus,
 * when `Prometheus.Prometheus` is in context; 404 otherwise). Times are epoch milliseconds; malformed
 * parameters get a 400 with a JSON `{ error }`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const router = (
  options: DashboardOptions = {}
): HttpRouter.HttpRouter<never, TransactionMonitor> => Routes.make(options)

/**
 * The dashboard's server, once listening.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardServer {
  /** The page's URL (`http://127.0.0.1:9464/`). */
  readonly url: string
  readonly host: string
  readonly port: number
}

/**
 * @since 0.1.0
 * @category tags
 */
export const DashboardServer: Context.Tag<DashboardServer, DashboardServer> = Context.GenericTag<DashboardServer>(
  "effect-sql-tx/TransactionDashboard/DashboardServer"
)

/**
 * The server could not listen (the port is in use, the address is not local…).
 *
 * @since 0.1.0
 * @category errors
 */
export class DashboardError extends Data.TaggedError("DashboardError")<{
  readonly host: string
  readonly port: number
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `effect-sql-tx dashboard on ${this.host}:${this.port}: ${this.reason}`
  }
}

/**
 * The options of {@link layer}: those of the router, and where to listen.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardLayerOptions extends DashboardOptions {
  /** Default 127.0.0.1 (loopback): give `"0.0.0.0"` (with a `token`) to reach it from elsewhere. */
  readonly host?: string | undefined
  /** 0 picks a free port (`DashboardServer.port` tells which). */
  readonly port: number
}

/**
 * Serves the dashboard on a Node HTTP server of its own for the life of the layer, with a Prometheus exporter of
 * its own for `/metrics`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: DashboardLayerOptions
): Layer.Layer<DashboardServer, DashboardError, TransactionMonitor> => {
  const host = options.host ?? "127.0.0.1"
  const basePath = Routes.normalizeBase(options.basePath)
  // The event streams end when the layer is released: server.close() waits for open connections.
  const serve = Layer.scopedDiscard(Effect.gen(function*() {
    const closing = yield* Deferred.make<void>()
    yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))
    const routes = Routes.make({ ...options, basePath }, Deferred.await(closing))
    yield* HttpServer.serveEffect()(
      basePath === "" ? routes : HttpRouter.empty.pipe(HttpRouter.mount(basePath as `/${string}`, routes))
    )
  }))
  const listening = Layer.effect(
    DashboardServer,
    HttpServer.addressWith((address) =>
      Effect.succeed(DashboardServer.of(
        address._tag === "TcpAddress"
          ? {
            host: address.hostname,
            port: address.port,
            url: `http://${
              address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
            }:${address.port}${basePath}/`
          }
          : { host, port: options.port, url: `unix:${address.path}` }
      ))
    )
  )
  const server = NodeHttpServer.layer(() => Http.createServer(), { host, port: options.port }).pipe(
    Layer.mapError((error) =>
      new DashboardError({
        host,
        port: options.port,
        reason: Routes.listenFailure(error.cause),
        cause: error.cause
      })
    )
  )
  return Layer.mergeAll(serve, listening).pipe(
    Layer.provide(server),
    Layer.provide(Prometheus.layer)
  )
}

/**
 * The token as a `Redacted`, for options read from configuration.
 *
 * @since 0.1.0
 * @category constructors
 */
export const token = (value: string): Redacted.Redacted => Redacted.make(value)
