/**
 * The README's performance tables, from the JSON of a full run: `npm run bench -- --json out.json`, then
 * `npx tsx bench/tables.ts out.json`. Prints Markdown (dprint aligns the columns once pasted).
 */
import * as Fs from "node:fs"

interface Row {
  readonly database: string
  readonly scenario: string
  readonly variant: string
  readonly "µs/tx": number
  readonly "× wT, paired": number | ""
  readonly "CPU µs/tx": number
  readonly "CPU × wT (q1–q3)": string
}

const file = process.argv[2]
if (file === undefined) throw new Error("usage: tsx bench/tables.ts <bench JSON>")
const run = JSON.parse(Fs.readFileSync(file, "utf8")) as Record<string, any> & { results: ReadonlyArray<Row> }

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<unknown>>) =>
  [
    `| ${header.join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((row) => `| ${row.map((cell) => String(cell ?? "")).join(" | ")} |`)
  ].join("\n")

const databases: Record<string, string> = { pg: "PostgreSQL", mysql: "MariaDB", sqlite: "SQLite" }
const columns = [
  ["raw", (v: string) => v.startsWith("raw")],
  ["`sql.withTransaction`", (v: string) => v === "sql.withTransaction"],
  ["`Transaction.atomic`", (v: string) => v === "Transaction.atomic"],
  ["atomic + options", (v: string) => v === "atomic + options"],
  ["withTransaction + `Effect.timeout`", (v: string) => v === "withTransaction + Effect.timeout"]
] as const

const groups = new Map<string, Array<Row>>()
for (const row of run.results) {
  const key = `${row.database}\u0000${row.scenario}`
  groups.set(key, [...(groups.get(key) ?? []), row])
}

const scenarioTable = (cell: (row: Row) => string) =>
  table(
    ["database", "scenario", ...columns.map(([name]) => name)],
    [...groups.values()].map((rows) => [
      databases[rows[0]!.database] ?? rows[0]!.database,
      rows[0]!.scenario,
      ...columns.map(([, matches]) => {
        const row = rows.find((r) => matches(r.variant))
        return row === undefined ? "" : cell(row)
      })
    ])
  )

console.log(`### Wall time, µs per transaction (× withTransaction, paired), commit ${run.commit}\n`)
console.log(
  scenarioTable((r) =>
    r["× wT, paired"] === "" || r.variant === "sql.withTransaction"
      ? `${r["µs/tx"]}`
      : `${r["µs/tx"]} (${r["× wT, paired"]})`
  )
)
console.log(`\n### CPU time of this process, µs per transaction (× withTransaction: median, q1–q3 of the rounds)\n`)
console.log(
  scenarioTable((r) => {
    const spread = r["CPU × wT (q1–q3)"]
    if (r.variant.startsWith("raw") || r.variant === "sql.withTransaction" || spread === "") return `${r["CPU µs/tx"]}`
    // "1.240 (1.177–1.417)" → "1.240; 1.177–1.417"
    return `${r["CPU µs/tx"]} (${spread.replace(" (", "; ").replace(/\)$/, "")})`
  })
)

const budget = Object.entries(run).filter(([key]) => key.startsWith("budget "))
if (budget.length > 0) {
  console.log(`\n### Per-operation CPU, µs: median (p90); wall median\n`)
  const rows = budget.flatMap(([, value]) => value.rows as ReadonlyArray<Record<string, unknown>>)
  console.log(table(
    ["database", "operation", "CPU median (p90)", "wall", "budget"],
    rows.map((r) => [
      databases[String(r.database)] ?? r.database,
      r.operation,
      `${r["CPU µs (median)"]} (${r["CPU µs (p90)"]})`,
      r["wall µs (median)"],
      r["budget µs"]
    ])
  ))
}

for (const [key, value] of Object.entries(run).filter(([key]) => key.startsWith("loads "))) {
  const rows = value.rows as ReadonlyArray<Record<string, unknown>>
  if (rows.length === 0) continue
  console.log(`\n### ${key}\n`)
  const header = Object.keys(rows[0]!).filter((k) => k !== "tps per round")
  console.log(table(header, rows.map((r) => header.map((k) => r[k]))))
}
