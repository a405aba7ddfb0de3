/**
 * A Prometheus endpoint for the metrics of effect-sql-tx (and every other Effect metric), through OpenTelemetry's
 * exporter. An entry point of its own, `effect-sql-tx/Prometheus`: it needs `@effect/opentelemetry`,
 * `@opentelemetry/exporter-prometheus` (with `@opentelemetry/api`, `@opentelemetry/resources` and
 * `@opentelemetry/sdk-metrics`) and `@effect/platform`, optional peer dependencies that the core entry point never
 * loads.
 *
 * @since 0.1.0
 */
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

/**
 * A Prometheus scrape of every Effect metric (those of effect-sql-tx included), in the Prometheus text format,
 * made by OpenTelemetry's exporter through `@effect/opentelemetry`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Prometheus {
  /** The metrics now, in the Prometheus text exposition format. */
  readonly scrape: Effect.Effect<string>
  /** `GET /metrics`: the scrape as an `@effect/platform` response. */
  readonly response: Effect.Effect<HttpServerResponse.HttpServerResponse>
}

/**
 * @since 0.1.0
 * @category tags
 */
export const Prometheus: Context.Tag<Prometheus, Prometheus> = Context.GenericTag<Prometheus>(
  "effect-sql-tx/Prometheus"
)

/**
 * The Prometheus exporter, for the dashboard to mount (or any `@effect/platform` router): it starts no server of
 * its own.
 *
 * @example
 * ```ts
 * import { HttpRouter } from "@effect/platform"
 * import { Effect } from "effect"
 * import * as Prometheus from "effect-sql-tx/Prometheus"
 *
 * const router = HttpRouter.empty.pipe(
 *   HttpRouter.get("/metrics", Effect.flatMap(Prometheus.Prometheus, (p) => p.response))
 * )
 * const MetricsLive = Prometheus.layer
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Prometheus> = Layer.scoped(
  Prometheus,
  Effect.gen(function*() {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const producer = yield* OtelMetrics.makeProducer.pipe(
      Effect.provide(OtelResource.layer({ serviceName: "effect-sql-tx" }))
    )
    yield* OtelMetrics.registerProducer(producer, () => exporter)
    const serializer = new PrometheusSerializer()
    const scrape = Effect.promise(() => exporter.collect()).pipe(
      Effect.map(({ resourceMetrics }) => serializer.serialize(resourceMetrics))
    )
    return Prometheus.of({
      scrape,
      response: Effect.map(
        scrape,
        (body) => HttpServerResponse.text(body, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
      )
    })
  })
)
