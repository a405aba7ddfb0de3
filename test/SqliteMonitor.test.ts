import { suite } from "./suites/MonitorSuite.js"
import * as Targets from "./utils/targets.js"

suite(Targets.sqlite)
