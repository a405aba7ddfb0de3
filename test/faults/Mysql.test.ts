import * as Databases from "../utils/databases.js"
import * as Targets from "../utils/targets.js"
import { suite } from "./FaultMatrix.js"

suite({
  name: "mysql",
  layer: Databases.mysql({ maxConnections: 1 }),
  inTransaction: Targets.mysql.inTransaction,
  server: Targets.mysqlServer
})
