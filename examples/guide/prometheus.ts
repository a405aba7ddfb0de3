import { HttpRouter } from "@effect/platform"
import { Effect } from "effect"
import { TransactionMetrics } from "../../src/index.js"

// GET /metrics in the application's own router: the Prometheus text format of every Effect metric.
export const router = HttpRouter.empty.pipe(
  HttpRouter.get("/metrics", Effect.flatMap(TransactionMetrics.Prometheus, (p) => p.response))
)

// The exporter the route needs; it starts no server of its own.
export const MetricsLive = TransactionMetrics.layerPrometheus
