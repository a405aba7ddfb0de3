import * as Databases from "../utils/databases.js"
import * as Targets from "../utils/targets.js"
import { suite } from "./FaultMatrix.js"

suite({ name: "sqlite", layer: Databases.sqlite(), inTransaction: Targets.sqlite.inTransaction })
