/**
 * The dashboard's cost: rendering the page, encoding one snapshot event (50 transaction names), and what 50 open
 * event streams do to transactions (SQLite in memory, the monitor at 10 snapshots a second so that events flow),
 * measured side by side in interleaved rounds.
 *
 *   npx tsx bench/dashboard.ts [--quick]     (after `npm run build`)
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { Effect, Layer, ManagedRuntime } from "effect"
import type * as Library from "../src/index.js"
import type * as Events from "../src/internal/dashboard/events.js"
import type * as Page from "../src/internal/dashboard/page.js"
import type * as Dashboard from "../src/TransactionDashboard.js"

const load = <A>(path: string): Promise<A> =>
  import(new URL(`../dist/${path}`, import.meta.url).href).catch((error: unknown) => {
    throw new Error(`the compiled library is missing: run \`npm run build\` first (${String(error)})`)
  })

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 0 ? (sorted[middle - 1]! + sorted[middle]!) / 2 : sorted[middle]!
}

/** Median milliseconds of `f` over `n` runs after `n / 10` warm-up runs. */
const time = async (n: number, f: () => unknown | Promise<unknown>): Promise<number> => {
  for (let i = 0; i < Math.ceil(n / 10); i++) await f()
  const samples: Array<number> = []
  for (let i = 0; i < n; i++) {
    const start = performance.now()
    await f()
    samples.push(performance.now() - start)
  }
  return median(samples)
}

/** @internal */
export const dashboardBench = async (quick: boolean): Promise<Record<string, number>> => {
  const { Transaction, TransactionLayer, TransactionMonitor }: typeof Library = await load("index.js")
  const TransactionDashboard: typeof Dashboard = await load("TransactionDashboard.js")
  const PageModule: typeof Page = await load("internal/dashboard/page.js")
  const EventsModule: typeof Events = await load("internal/dashboard/events.js")

  const live = TransactionDashboard.layer({ port: 0 }).pipe(
    Layer.provideMerge(TransactionMonitor.layer({ interval: "100 millis" })),
    Layer.provideMerge(TransactionLayer),
    Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" }))
  )
  const runtime = ManagedRuntime.make(live)
  try {
    const { monitor, server } = await runtime.runPromise(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`CREATE TABLE dash_bench (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)`
      yield* sql`INSERT INTO dash_bench (id, v) VALUES (1, 0)`
      // 50 names in the metrics, so that a snapshot event carries 50 names' figures.
      for (let name = 0; name < 50; name++) {
        for (let i = 0; i < 5; i++) {
          yield* sql`UPDATE dash_bench SET v = v + 1 WHERE id = 1`.pipe(Transaction.atomic({ name: `name_${name}` }))
        }
      }
      return {
        monitor: yield* TransactionMonitor.TransactionMonitor,
        server: yield* TransactionDashboard.DashboardServer
      }
    }))
    const snapshot = await runtime.runPromise(monitor.takeSnapshot)
    const state = await runtime.runPromise(EventsModule.state(monitor, snapshot))
    const names = Object.keys(snapshot.byName).length

    const renderMs = await time(quick ? 200 : 2000, () => PageModule.render({ basePath: "", title: "t", nonce: "n" }))
    const pageRequestMs = await time(quick ? 50 : 300, async () => (await fetch(server.url)).text())
    const encodeMs = await time(quick ? 200 : 2000, () => EventsModule.encode("snapshot", snapshot.takenAt, state))
    const stateMs = await time(quick ? 200 : 2000, () => runtime.runPromise(EventsModule.state(monitor, snapshot)))
    const eventBytes = EventsModule.encode("snapshot", snapshot.takenAt, state).length

    // Transactions with 0 and with 50 open event streams, in ABBA rounds.
    const transaction = Effect.flatMap(
      SqlClient.SqlClient,
      (sql) => sql`UPDATE dash_bench SET v = v + 1 WHERE id = 1`
    ).pipe(Transaction.atomic({ name: "bench" }))
    const n = quick ? 500 : 3000
    const batch = async () => {
      const start = performance.now()
      await runtime.runPromise(Effect.repeatN(transaction, n - 1))
      return ((performance.now() - start) * 1000) / n
    }
    const openStreams = async (count: number) => {
      const controllers = Array.from({ length: count }, () => new AbortController())
      await Promise.all(controllers.map(async (controller) => {
        const response = await fetch(`${server.url}api/events`, { signal: controller.signal })
        const reader = response.body!.getReader()
        // Drain in the background, as a browser does.
        void (async () => {
          try {
            while (!(await reader.read()).done) { /* consume */ }
          } catch { /* aborted */ }
        })()
      }))
      return () => controllers.forEach((controller) => controller.abort())
    }
    await batch() // warm-up
    const without: Array<number> = []
    const with50: Array<number> = []
    const rounds = quick ? 2 : 8
    for (let round = 0; round < rounds; round++) {
      for (const streams of round % 2 === 0 ? [0, 50] : [50, 0]) {
        const close = streams === 0 ? () => {} : await openStreams(streams)
        ;(streams === 0 ? without : with50).push(await batch())
        close()
      }
    }
    const figures = {
      names,
      renderMs,
      pageRequestMs,
      stateMs,
      encodeMs,
      eventBytes,
      microsPerTxWithoutStreams: median(without),
      microsPerTxWith50Streams: median(with50),
      ratio50Streams: median(with50) / median(without)
    }
    console.log(
      `dashboard: page render ${renderMs.toFixed(3)} ms (GET / ${pageRequestMs.toFixed(2)} ms over loopback); ` +
        `snapshot event (${names} names, ${(eventBytes / 1024).toFixed(1)} KB): state ${stateMs.toFixed(3)} ms + ` +
        `encoding ${encodeMs.toFixed(3)} ms; transactions with 50 open event streams: ` +
        `${figures.microsPerTxWith50Streams.toFixed(1)} µs vs ${figures.microsPerTxWithoutStreams.toFixed(1)} µs ` +
        `(× ${figures.ratio50Streams.toFixed(3)})`
    )
    return figures
  } finally {
    await runtime.dispose()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await dashboardBench(process.argv.includes("--quick"))
}
