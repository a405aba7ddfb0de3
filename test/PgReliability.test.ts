import { suite } from "./suites/ReliabilitySuite.js"
import * as Targets from "./utils/targets.js"

suite(Targets.pgServer)
