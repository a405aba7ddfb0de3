import * as GuardSuite from "./suites/GuardSuite.js"
import * as HooksSuite from "./suites/HooksSuite.js"
import * as MetricsSuite from "./suites/MetricsSuite.js"
import * as RetrySuite from "./suites/RetrySuite.js"
import { suite } from "./suites/TransactionSuite.js"
import * as Targets from "./utils/targets.js"

const target = Targets.mysql

suite(target)
HooksSuite.suite(target)
MetricsSuite.suite(target)
RetrySuite.suite(target)
GuardSuite.suite(target)
HooksSuite.propertySuite(target, 50)
