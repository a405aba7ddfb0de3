import { suite } from "./suites/ContentionSuite.js"
import * as Targets from "./utils/targets.js"

suite(Targets.pgServer)
