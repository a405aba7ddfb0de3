import * as Databases from "../utils/databases.js"
import * as Targets from "../utils/targets.js"
import { suite } from "./FaultMatrix.js"

suite({
  name: "pg",
  layer: Databases.pg({ maxConnections: 1 }),
  inTransaction: Targets.pg.inTransaction,
  server: Targets.pgServer
})
