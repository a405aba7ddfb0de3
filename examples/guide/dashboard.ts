import { HttpRouter } from "@effect/platform"
import { Layer } from "effect"
import { TransactionLayer, TransactionMonitor } from "../../src/index.js"
import * as TransactionDashboard from "../../src/TransactionDashboard.js"

// Its own Node HTTP server, on loopback unless told otherwise:
export const DashboardLive = TransactionDashboard.layer({ port: 9464, token: process.env.DASHBOARD_TOKEN }).pipe(
  Layer.provideMerge(TransactionMonitor.layer()),
  Layer.provideMerge(TransactionLayer)
)

// Or mounted in the application's own router:
export const app = HttpRouter.empty.pipe(HttpRouter.mount("/tx", TransactionDashboard.router({ basePath: "/tx" })))
