import { HttpRouter } from "@effect/platform"
import { Effect } from "effect"
import * as Prometheus from "../../src/Prometheus.js"

// GET /metrics in the application's own router: the Prometheus text format of every Effect metric.
export const router = HttpRouter.empty.pipe(
  HttpRouter.get("/metrics", Effect.flatMap(Prometheus.Prometheus, (p) => p.response))
)

// The exporter the route needs; it starts no server of its own.
export const MetricsLive = Prometheus.layer
