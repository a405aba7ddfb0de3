/**
 * The Grafana dashboard (`grafana/effect-sql-tx.json`) and the Prometheus alerting rules (`grafana/alerts.yml`)
 * query the names that OpenTelemetry's exporter really writes: a workload on SQLite makes a series of every metric,
 * and every metric and label that a query of either file uses is looked up in a real scrape.
 */
import { SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { assert, describe, layer } from "@effect/vitest"
import { Context, Duration, Effect, Layer, MetricKeyType } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Yaml from "yaml"
import {
  RetryPolicy,
  Transaction,
  TransactionError,
  TransactionLayer,
  TransactionManager,
  TransactionMonitor,
  withRetry
} from "../src/index.js"
import { keys } from "../src/internal/metricKeys.js"
import * as Prometheus from "../src/Prometheus.js"
import { deadlock } from "./suites/TransactionSuite.js"

const grafana = (file: string) => Path.join(import.meta.dirname, "..", "grafana", file)

/** The metric names of a scrape, each with the labels its series carry. */
type Scraped = ReadonlyMap<string, ReadonlySet<string>>

class Scrape extends Context.Tag("test/Grafana/Scrape")<Scrape, Scraped>() {}

const parseScrape = (text: string): Scraped => {
  const scraped = new Map<string, Set<string>>()
  for (const line of text.split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+\S+$/.exec(line)
    assert.isNotNull(sample, `a sample line of the scrape: ${line}`)
    const labels = scraped.get(sample![1]!) ?? new Set<string>()
    for (const [, label] of (sample![2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) {
      labels.add(label!)
    }
    scraped.set(sample![1]!, labels)
  }
  return scraped
}

const cause = (code: string) => ({ dialect: "sqlite", code, cause: undefined }) as const

/**
 * Commits, savepoints, a failed hook, failures of each counted kind, a deadlock retried, a timeout, and (with a
 * manager of a 20 ms long-running threshold and a savepoint budget of 2) a long-running transaction and one past the
 * budget: every metric of effect-sql-tx gets a series, then the exporter is scraped.
 */
const ScrapeLive = Layer.effect(
  Scrape,
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const name = "grafana"
    yield* sql`CREATE TABLE grafana (id INTEGER PRIMARY KEY)`
    const insert = (id: number) => sql`INSERT INTO grafana (id) VALUES (${id})`
    yield* Transaction.atomic(insert(1), { name })
    yield* Transaction.atomic(
      Effect.gen(function*() {
        yield* Transaction.atomic(insert(2))
        yield* Transaction.savepoint()
        yield* Transaction.afterCommit(Effect.fail("hook failed"))
      }),
      { name }
    )
    yield* Effect.either(Transaction.atomic(
      Effect.fail(new TransactionError.SerializationFailure(cause("SQLITE_BUSY_SNAPSHOT"))),
      { name }
    ))
    yield* Effect.either(
      Transaction.atomic(Effect.fail(new TransactionError.LockTimeout(cause("SQLITE_BUSY"))), { name })
    )
    let attempts = 0
    yield* Effect.gen(function*() {
      yield* insert(3)
      if (++attempts < 2) return yield* Effect.fail(deadlock)
    }).pipe(
      Transaction.atomic({ name }),
      withRetry(RetryPolicy.exponential({ base: "1 millis" }))
    )
    yield* Effect.either(Transaction.atomic(Effect.never, { name, timeout: "20 millis" }))

    const tuned = yield* TransactionManager.make({
      longRunningThreshold: "20 millis",
      dialect: (detected) => ({ ...detected, subtransactionCache: 2 })
    })
    const flagged = yield* Effect.gen(function*() {
      yield* Effect.sleep("40 millis")
      return yield* TransactionManager.checkLongRunning(tuned)
    }).pipe(Transaction.atomic({ name }), Effect.provideService(TransactionManager.TransactionManager, tuned))
    assert.strictEqual(flagged.length, 1)
    yield* Effect.gen(function*() {
      for (let i = 0; i < 3; i++) yield* Transaction.savepoint()
    }).pipe(Transaction.atomic({ name }), Effect.provideService(TransactionManager.TransactionManager, tuned))

    const prometheus = yield* Prometheus.Prometheus
    return parseScrape(yield* prometheus.scrape)
  })
).pipe(
  Layer.provide(
    TransactionLayer.pipe(
      Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })),
      Layer.merge(Prometheus.layer)
    )
  )
)

// PromQL, as far as the two files use it: enough to find the metric names, the label matchers and the labels of
// `by`/`on`/`ignoring`, and to refuse an unknown function.

const aggregations = new Set([
  "avg",
  "bottomk",
  "count",
  "count_values",
  "group",
  "limit_ratio",
  "limitk",
  "max",
  "min",
  "quantile",
  "stddev",
  "stdvar",
  "sum",
  "topk"
])

const functions = new Set([
  ...aggregations,
  "abs",
  "absent",
  "absent_over_time",
  "avg_over_time",
  "ceil",
  "changes",
  "clamp",
  "clamp_max",
  "clamp_min",
  "count_over_time",
  "delta",
  "deriv",
  "exp",
  "floor",
  "histogram_avg",
  "histogram_count",
  "histogram_fraction",
  "histogram_quantile",
  "histogram_sum",
  "idelta",
  "increase",
  "irate",
  "label_join",
  "label_replace",
  "last_over_time",
  "ln",
  "log10",
  "log2",
  "max_over_time",
  "min_over_time",
  "predict_linear",
  "present_over_time",
  "quantile_over_time",
  "rate",
  "resets",
  "round",
  "scalar",
  "sgn",
  "sort",
  "sort_desc",
  "sqrt",
  "stddev_over_time",
  "stdvar_over_time",
  "sum_over_time",
  "time",
  "timestamp",
  "vector"
])

/** Keywords that are not metric names; `by` … `group_right` take a label list. */
const labelLists = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"])
const keywords = new Set([...labelLists, "and", "or", "unless", "offset", "bool", "inf", "nan", "atan2"])

interface Token {
  readonly kind: "identifier" | "string" | "number" | "variable" | "punctuation" | "operator"
  readonly text: string
}

const tokenize = (expr: string): Array<Token> => {
  const tokens: Array<Token> = []
  const patterns: Array<[Token["kind"] | "space", RegExp]> = [
    ["space", /^\s+/],
    ["string", /^"(?:[^"\\]|\\.)*"|^'(?:[^'\\]|\\.)*'|^`[^`]*`/],
    ["identifier", /^[a-zA-Z_:][a-zA-Z0-9_:]*/],
    ["number", /^[0-9.][0-9a-zA-Z.]*/],
    ["variable", /^\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?/],
    ["operator", /^(?:=~|!~|!=|==|>=|<=|[=<>+\-*/%^])/],
    ["punctuation", /^[(){}[\],]/]
  ]
  let rest = expr
  while (rest.length > 0) {
    const found = patterns.map(([kind, pattern]) => [kind, pattern.exec(rest)?.[0]] as const)
      .find(([, text]) => text !== undefined)
    assert.isDefined(found, `PromQL tokens in ${JSON.stringify(expr)} at ${JSON.stringify(rest.slice(0, 20))}`)
    const [kind, text] = found!
    if (kind !== "space") tokens.push({ kind, text: text! })
    rest = rest.slice(text!.length)
  }
  return tokens
}

/** A selector: its metric name and the labels it matches, at its token. */
interface Selector {
  readonly at: number
  readonly metric: string
  readonly matchers: ReadonlyArray<string>
}

interface Analysis {
  readonly selectors: ReadonlyArray<Selector>
  /** Labels of `by`/`without`, with the metrics of the expression they aggregate. */
  readonly grouping: ReadonlyArray<{ readonly label: string; readonly metrics: ReadonlyArray<string> }>
  /** Labels of `on`/`ignoring`/`group_left`/`group_right`. */
  readonly matching: ReadonlyArray<string>
  readonly problems: ReadonlyArray<string>
}

const analyze = (expr: string): Analysis => {
  const tokens = tokenize(expr)
  const selectors: Array<Selector> = []
  const problems: Array<string> = []
  const groupings: Array<{ readonly labels: ReadonlyArray<string>; readonly from: number; readonly to: number }> = []
  const matching: Array<string> = []
  const is = (i: number, text: string) => tokens[i]?.text === text
  /** The index of the bracket closing the one at `open`. */
  const closing = (open: number) => {
    const [left, right] = [tokens[open]!.text, { "(": ")", "[": "]", "{": "}" }[tokens[open]!.text]!]
    let depth = 0
    for (let i = open; i < tokens.length; i++) {
      if (tokens[i]!.kind === "punctuation" && tokens[i]!.text === left) depth++
      if (tokens[i]!.kind === "punctuation" && tokens[i]!.text === right && --depth === 0) return i
    }
    problems.push(`unbalanced ${left}`)
    return tokens.length - 1
  }
  /** The index of the bracket opening the one closing at `close`. */
  const opening = (close: number) => {
    let depth = 0
    for (let i = close; i >= 0; i--) {
      if (is(i, ")")) depth++
      if (is(i, "(") && --depth === 0) return i
    }
    problems.push("unbalanced )")
    return 0
  }
  const labelList = (open: number): { labels: Array<string>; end: number } => {
    const end = closing(open)
    const labels = tokens.slice(open + 1, end).filter((t) => t.text !== ",")
    for (const label of labels) if (label.kind !== "identifier") problems.push(`a label: ${label.text}`)
    return { labels: labels.map((t) => t.text), end }
  }
  const matchers = (open: number): { labels: Array<string>; end: number } => {
    const end = closing(open)
    const labels: Array<string> = []
    for (let i = open + 1; i < end; i += 4) {
      const [label, op, value, comma] = [tokens[i], tokens[i + 1], tokens[i + 2], tokens[i + 3]]
      if (label?.kind !== "identifier" || op?.kind !== "operator" || value?.kind !== "string") {
        problems.push(`a label matcher at ${tokens.slice(i, i + 3).map((t) => t.text).join(" ")}`)
        break
      }
      if (comma !== undefined && i + 3 < end && comma.text !== ",") problems.push(`a comma after ${label.text}`)
      // rate() of a `__name__` regex over metrics of the same labels fails ("vector cannot contain metrics with
      // the same labelset"), and hides the names from this check.
      if (label.text === "__name__") problems.push(`a metric name rather than a __name__ matcher`)
      else labels.push(label.text)
    }
    return { labels, end }
  }
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!
    if (token.kind === "variable") problems.push(`a Grafana variable outside a string or a range: ${token.text}`)
    if (token.text === "[") {
      i = closing(i)
      continue
    }
    if (token.text === "offset") {
      i++
      continue
    }
    if (token.text === "{") {
      problems.push("a metric name before {")
      i = matchers(i).end
      continue
    }
    if (token.kind !== "identifier") continue
    if (labelLists.has(token.text)) {
      if (!is(i + 1, "(")) {
        if (token.text.startsWith("group_")) continue
        problems.push(`a label list after ${token.text}`)
        continue
      }
      const { end, labels } = labelList(i + 1)
      if (token.text === "by" || token.text === "without") {
        // `sum by (labels) (argument)` or `sum (argument) by (labels)`
        const prefix = aggregations.has(tokens[i - 1]?.text ?? "")
        const [from, to] = prefix ? [end + 1, is(end + 1, "(") ? closing(end + 1) : end + 1] : [opening(i - 1), i - 1]
        if (prefix && !is(end + 1, "(")) problems.push(`the argument of ${tokens[i - 1]!.text} by`)
        if (token.text === "by") groupings.push({ labels, from, to })
      } else matching.push(...labels)
      i = end
      continue
    }
    if (keywords.has(token.text)) continue
    if (is(i + 1, "(")) {
      if (!functions.has(token.text)) problems.push(`an unknown function: ${token.text}`)
      continue
    }
    if (aggregations.has(token.text) && (is(i + 1, "by") || is(i + 1, "without"))) continue
    if (is(i + 1, "{")) {
      const found = matchers(i + 1)
      selectors.push({ at: i, metric: token.text, matchers: found.labels })
      i = found.end
      continue
    }
    selectors.push({ at: i, metric: token.text, matchers: [] })
  }
  return {
    selectors,
    grouping: groupings.flatMap(({ from, labels, to }) => {
      const metrics = selectors.filter((s) => s.at >= from && s.at <= to).map((s) => s.metric)
      if (metrics.length === 0) problems.push(`no metric under by (${labels.join(", ")})`)
      return labels.map((label) => ({ label, metrics }))
    }),
    matching,
    problems
  }
}

/** What is wrong with a query against the scrape: unknown metrics and labels, PromQL this check cannot read. */
const check = (where: string, expr: string, scraped: Scraped): Array<string> => {
  const analysis = analyze(expr)
  const errors = analysis.problems.map((problem) => `${where}: expected ${problem}`)
  const metrics = analysis.selectors.map((s) => s.metric)
  if (metrics.length === 0) errors.push(`${where}: no metric`)
  const has = (metric: string, label: string) => scraped.get(metric)?.has(label) === true
  for (const { matchers, metric } of analysis.selectors) {
    if (!scraped.has(metric)) errors.push(`${where}: metric ${metric} is not in the scrape`)
    for (const label of matchers) {
      if (scraped.has(metric) && !has(metric, label)) errors.push(`${where}: ${metric} has no label ${label}`)
    }
  }
  for (const { label, metrics } of analysis.grouping) {
    for (const metric of metrics) {
      if (scraped.has(metric) && !has(metric, label)) errors.push(`${where}: by (${label}): ${metric} has no ${label}`)
    }
  }
  for (const label of analysis.matching) {
    if (!metrics.some((metric) => has(metric, label))) errors.push(`${where}: on/ignoring (${label}): no metric has it`)
  }
  return errors
}

/** The labels an expression's result keeps: those of its `by` lists. */
const resultLabels = (expr: string): ReadonlySet<string> => new Set(analyze(expr).grouping.map((g) => g.label))

// The files

interface Target {
  readonly refId?: string
  readonly expr?: string
  readonly legendFormat?: string
  readonly datasource?: { readonly type?: string; readonly uid?: string }
}

interface Panel {
  readonly id?: number
  readonly type?: string
  readonly title?: string
  readonly datasource?: { readonly type?: string; readonly uid?: string }
  readonly gridPos?: { readonly h: number; readonly w: number; readonly x: number; readonly y: number }
  readonly targets?: ReadonlyArray<Target>
  readonly panels?: ReadonlyArray<Panel>
}

interface Variable {
  readonly name: string
  readonly type: string
  readonly query?: string | { readonly query?: string }
  readonly definition?: string
  readonly datasource?: { readonly type?: string; readonly uid?: string }
}

interface Dashboard {
  readonly schemaVersion: number
  readonly uid: string
  readonly title: string
  readonly panels: ReadonlyArray<Panel>
  readonly templating: { readonly list: ReadonlyArray<Variable> }
}

interface Rule {
  readonly alert?: string
  readonly expr?: string
  readonly for?: string
  readonly labels?: Record<string, string>
  readonly annotations?: Record<string, string>
}

interface RuleFile {
  readonly groups: ReadonlyArray<{ readonly name: string; readonly rules: ReadonlyArray<Rule> }>
}

const readDashboard = Effect.sync(() => JSON.parse(Fs.readFileSync(grafana("effect-sql-tx.json"), "utf8")) as Dashboard)
const readRules = Effect.sync(() => Yaml.parse(Fs.readFileSync(grafana("alerts.yml"), "utf8")) as RuleFile)

/** Every panel, those of rows included. */
const allPanels = (panels: ReadonlyArray<Panel>): Array<Panel> =>
  panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])])

const datasource = { type: "prometheus", uid: "${datasource}" }

/** The monitor's default rules that these metrics cannot express (README: pool size; rolling baseline). */
const notExpressible = ["pool-saturation", "anomaly"]

const durationOf = (text: string): Duration.Duration => {
  const found = /^(\d+)(ms|s|m|h)$/.exec(text)
  assert.isNotNull(found, `a Prometheus duration: ${text}`)
  const units = { ms: "millis", s: "seconds", m: "minutes", h: "hours" } as const
  return Duration.decode(`${Number(found![1])} ${units[found![2] as keyof typeof units]}`)
}

/** Prometheus' promtool (Debian's `prometheus` package; `.ci/run` installs it): checks the rules, runs their tests. */
const promtool = ChildProcess.spawnSync("promtool", ["--version"]).status === 0

describe("grafana", () => {
  layer(ScrapeLive, { excludeTestServices: true })((it) => {
    it.effect("the workload makes a series of every metric, under the names the exporter writes", () =>
      Effect.gen(function*() {
        const scraped = yield* Scrape
        for (const [name, key] of Object.entries(keys)) {
          const exported = MetricKeyType.isHistogramKey(key.keyType)
            ? [`${name}_bucket`, `${name}_sum`, `${name}_count`]
            : [name]
          for (const metric of exported) {
            assert.isTrue(scraped.has(metric), `${metric} in the scrape`)
            for (const label of ["transaction", "db_system"]) {
              assert.isTrue(scraped.get(metric)!.has(label), `${metric} has ${label}`)
            }
          }
        }
        assert.isTrue(scraped.get("transaction_duration_seconds_bucket")!.has("le"))
        assert.isTrue(scraped.get("transaction_duration_seconds_bucket")!.has("outcome"))
        assert.isTrue(scraped.get("transactions_failed_total")!.has("error"))
        assert.isTrue(scraped.get("transaction_retries_total")!.has("error"))
        assert.isTrue(scraped.get("transaction_hook_failures_total")!.has("hook"))
      }))

    it.effect("the dashboard: valid JSON, a Prometheus datasource variable, every panel queries it", () =>
      Effect.gen(function*() {
        const dashboard = yield* readDashboard
        assert.isAtLeast(dashboard.schemaVersion, 36)
        assert.strictEqual(dashboard.uid, "effect-sql-tx")
        const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]))
        assert.deepInclude(variables.get("datasource"), { type: "datasource", query: "prometheus" })
        for (const name of ["db_system", "transaction"]) {
          const variable = variables.get(name)
          assert.isDefined(variable, `variable ${name}`)
          assert.strictEqual(variable!.type, "query")
          assert.deepStrictEqual(variable!.datasource, datasource)
          assert.match(variable!.definition ?? "", new RegExp(`^label_values\\(.*, ${name}\\)$`))
        }
        const panels = allPanels(dashboard.panels)
        assert.isAbove(panels.length, 10)
        const ids = panels.map((p) => p.id)
        assert.strictEqual(new Set(ids).size, ids.length, "unique panel ids")
        for (const panel of panels) {
          const title = panel.title ?? `panel ${panel.id}`
          assert.deepStrictEqual(panel.datasource, datasource, `${title}: datasource`)
          assert.isDefined(panel.gridPos, `${title}: gridPos`)
          assert.isAtLeast(panel.targets?.length ?? 0, 1, `${title}: targets`)
          const refIds = panel.targets!.map((t) => t.refId)
          assert.strictEqual(new Set(refIds).size, refIds.length, `${title}: unique refIds`)
          for (const target of panel.targets!) {
            assert.deepStrictEqual(target.datasource, datasource, `${title} ${target.refId}: datasource`)
            assert.isString(target.expr, `${title} ${target.refId}: expr`)
            assert.notStrictEqual(target.expr!.trim(), "", `${title} ${target.refId}: expr`)
          }
        }
      }))

    it.effect("the dashboard queries only metrics and labels of the scrape", () =>
      Effect.gen(function*() {
        const scraped = yield* Scrape
        const dashboard = yield* readDashboard
        const errors: Array<string> = []
        for (const panel of allPanels(dashboard.panels)) {
          for (const target of panel.targets ?? []) {
            const where = `${panel.title} ${target.refId}`
            errors.push(...check(where, target.expr ?? "", scraped))
            const kept = resultLabels(target.expr ?? "")
            for (const [, label] of (target.legendFormat ?? "").matchAll(/\{\{\s*([a-zA-Z_]\w*)\s*\}\}/g)) {
              if (!kept.has(label!)) errors.push(`${where}: legend {{${label}}} is not a label of the result`)
            }
          }
        }
        for (const variable of dashboard.templating.list) {
          if (variable.type !== "query") continue
          const query = typeof variable.query === "string" ? variable.query : variable.query?.query ?? ""
          assert.strictEqual(query, variable.definition, `variable ${variable.name}: query and definition`)
          const found = /^label_values\((.*),\s*([a-zA-Z_]\w*)\)$/.exec(query)
          assert.isNotNull(found, `variable ${variable.name}: label_values(selector, label)`)
          const where = `variable ${variable.name}`
          errors.push(...check(where, found![1]!, scraped))
          for (const metric of analyze(found![1]!).selectors.map((s) => s.metric)) {
            if (scraped.get(metric)?.has(found![2]!) !== true) errors.push(`${where}: ${metric} has no ${found![2]}`)
          }
        }
        assert.strictEqual(errors.length, 0, errors.join("\n"))
      }))

    it.effect("the alerting rules: one per monitor rule and level, with its `for`, severity and advice", () =>
      Effect.gen(function*() {
        const file = yield* readRules
        const rules = file.groups.flatMap((group) => group.rules)
        assert.isAbove(rules.length, 0)
        const monitorRules = new Map(TransactionMonitor.defaultRules().map((rule) => [rule.name, rule]))
        const covered = new Set<string>()
        const seen = new Set<string>()
        for (const rule of rules) {
          const where = `${rule.alert} (${rule.labels?.["severity"]})`
          assert.isString(rule.alert, "an alerting rule")
          assert.isString(rule.expr, `${where}: expr`)
          assert.include(["warning", "error", "critical"], rule.labels?.["severity"], `${where}: severity`)
          assert.isFalse(seen.has(where), `${where}: one rule per level`)
          seen.add(where)
          const monitorRule = monitorRules.get(rule.labels?.["rule"] ?? "")
          assert.isDefined(monitorRule, `${where}: label rule names a default rule of the monitor`)
          covered.add(monitorRule!.name)
          assert.isTrue(
            Duration.equals(durationOf(rule.for ?? ""), monitorRule!.for),
            `${where}: for ${rule.for} as the monitor's ${Duration.format(monitorRule!.for)}`
          )
          assert.isAbove((rule.annotations?.["summary"] ?? "").length, 0, `${where}: summary`)
          assert.isAbove((rule.annotations?.["description"] ?? "").length, 40, `${where}: description with advice`)
        }
        assert.deepStrictEqual(
          [...covered].sort(),
          [...monitorRules.keys()].filter((name) => !notExpressible.includes(name)).sort()
        )
      }))

    it.effect("the alerting rules query only metrics and labels of the scrape", () =>
      Effect.gen(function*() {
        const scraped = yield* Scrape
        const file = yield* readRules
        const errors: Array<string> = []
        for (const rule of file.groups.flatMap((group) => group.rules)) {
          const where = `${rule.alert} (${rule.labels?.["severity"]})`
          errors.push(...check(where, rule.expr ?? "", scraped))
          const kept = resultLabels(rule.expr ?? "")
          for (const text of Object.values(rule.annotations ?? {})) {
            for (const [, label] of text.matchAll(/\$labels\.([a-zA-Z_]\w*)/g)) {
              if (!kept.has(label!)) errors.push(`${where}: $labels.${label} is not a label of the result`)
            }
          }
        }
        assert.strictEqual(errors.length, 0, errors.join("\n"))
      }))

    it.effect("the unit tests of the rules feed them series of the scrape's names and labels", () =>
      Effect.gen(function*() {
        const scraped = yield* Scrape
        const file = Yaml.parse(Fs.readFileSync(grafana("alerts.test.yml"), "utf8")) as {
          readonly tests: ReadonlyArray<{ readonly input_series: ReadonlyArray<{ readonly series: string }> }>
        }
        const errors: Array<string> = []
        for (const { series } of file.tests.flatMap((test) => test.input_series)) {
          const [, metric, labels] = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$/.exec(series) ?? []
          if (metric === undefined || !scraped.has(metric)) errors.push(`${series}: not a metric of the scrape`)
          for (const [, label] of (labels ?? "").matchAll(/([a-zA-Z_]\w*)="/g)) {
            if (scraped.get(metric ?? "")?.has(label!) !== true) errors.push(`${series}: no label ${label} there`)
          }
        }
        assert.strictEqual(errors.length, 0, errors.join("\n"))
      }))

    it.effect(
      "promtool: the rules parse and pass their unit tests (grafana/alerts.test.yml)",
      () =>
        Effect.sync(() => {
          assert.isTrue(promtool, "promtool is missing: apt-get install prometheus (Debian's package ships it)")
          for (
            const args of [["check", "rules", grafana("alerts.yml")], ["test", "rules", grafana("alerts.test.yml")]]
          ) {
            const run = ChildProcess.spawnSync("promtool", args, { encoding: "utf8" })
            assert.strictEqual(run.status, 0, `promtool ${args.join(" ")}:\n${run.stdout}${run.stderr}`)
          }
        })
    )
  })
})
