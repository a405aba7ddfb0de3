/**
 * The dashboard end to end in headless Chromium (`playwright-core`): the real server over the real monitor of a
 * SQLite workload, under the live clock. The page updates without a reload; a rule's alert appears and resolves;
 * pause holds the page still and resume catches up; the CSV downloads; a hostile transaction name and alert
 * message are shown as text (no dialog, no injected element); no page error or CSP violation; no horizontal
 * overflow on a phone. It writes a full-page screenshot to `.tmp/dashboard.png`, and to `docs/dashboard.png` (the
 * README's) with `UPDATE_SCREENSHOT=1`.
 *
 * Chromium is required: the test fails when it is missing (`apt-get install chromium`, or `CHROMIUM_PATH`).
 */
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, layer } from "@effect/vitest"
import { parse } from "csv-parse/sync"
import { Data, Effect, Layer, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import * as Url from "node:url"
import { type Browser, chromium, type Page } from "playwright-core"
import { Transaction, TransactionLayer, TransactionManager, TransactionMonitor } from "../src/index.js"
import { readMetrics } from "../src/internal/monitor/snapshot.js"
import * as TransactionDashboard from "../src/TransactionDashboard.js"
import { committedReading } from "./utils/readings.js"

// The few DOM types the page functions use: they run in the browser, and the tests' tsconfig has no DOM library.
interface DomElement {
  readonly tagName: string
  readonly id: string
  readonly className: string
  readonly textContent: string | null
  readonly parentElement: DomElement | null
  readonly dataset: Readonly<Record<string, string | undefined>>
  readonly cells: ArrayLike<DomElement>
  readonly scrollWidth: number
  readonly clientWidth: number
  getAttribute(name: string): string | null
  querySelectorAll(selector: string): ArrayLike<DomElement>
  getBoundingClientRect(): { readonly right: number }
}
declare const document: {
  readonly documentElement: { readonly scrollWidth: number }
  readonly body: DomElement
  getElementById(id: string): DomElement | null
  querySelector(selector: string): DomElement | null
  querySelectorAll(selector: string): ArrayLike<DomElement>
  addEventListener(
    type: "securitypolicyviolation",
    listener: (event: { readonly violatedDirective: string; readonly blockedURI: string }) => void
  ): void
}
declare const window: { readonly innerWidth: number; dashboardTestMarker?: string }
declare const getComputedStyle: (element: DomElement) => { readonly overflowX: string }

/** Bounded waits: a page that stops updating fails the test rather than hanging it. */
const timeout = 15_000
const interval = 500

const hostileName = "<script>alert(1)</script>"
const hostileMessage = "<img src=x onerror=alert(1)>"
const hostileKey = `injection|${hostileName}`

/** What the test flips: the hostile name's figures grow, and the `injection` rule holds, while `hostile` is on. */
const control = { hostile: false, hostileCount: 0 }

/**
 * The real metrics (the monitor's default source, which is not exported: read through the internal module), plus
 * the hostile name once it was switched on: transaction names are validated, so no workload can produce it.
 */
const withHostileName = (real: Effect.Effect<TransactionMonitor.MonitorReading>) =>
  Effect.map(real, (reading): TransactionMonitor.MonitorReading => {
    if (control.hostile) control.hostileCount += 5
    if (control.hostileCount === 0) return reading
    const names = new Map(reading.names)
    names.set(hostileName, committedReading(control.hostileCount, 0.002))
    return { names, active: reading.active }
  })

/** Holds while `hostile` is on, about the hostile name, with a hostile message (and advice). */
const injection = TransactionMonitor.rule({
  name: "injection",
  description: "Scripted by the test",
  for: "1 millis",
  evaluate: () =>
    control.hostile
      ? [{ transaction: hostileName, level: "error", value: 1, threshold: 0, message: hostileMessage }]
      : []
})

/** The real failure-rate rule over a short window, firing at once: the workload's transfers fail 1 in 8. */
const failureRate = TransactionMonitor.defaultRules({
  "failure-rate": { for: "1 millis", window: "10 seconds", minVolume: 20 },
  anomaly: false
}).filter((rule) => rule.name === "failure-rate")

const Sqlite = TransactionLayer.pipe(Layer.provideMerge(SqliteClient.layer({ filename: ":memory:" })))

const Monitor = Layer.unwrapEffect(
  Effect.map(TransactionManager.TransactionManager, (manager) =>
    TransactionMonitor.layer({
      interval: `${interval} millis`,
      rules: [...failureRate, injection],
      source: withHostileName(readMetrics(manager.dialect.dbSystem, manager.active))
    }))
)

const Live = TransactionDashboard.layer({ port: 0 }).pipe(
  Layer.provideMerge(Monitor),
  Layer.provideMerge(Sqlite)
)

class InsufficientFunds extends Data.TaggedError("InsufficientFunds") {}

/**
 * Checkouts and transfers (1 in 8 fails) in a loop, and every 2 s a settlement that holds the only connection for
 * 700 ms (it shows among the running transactions; the others wait).
 */
const workload = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE ledger (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, amount INTEGER NOT NULL)`
  const insert = (kind: string, amount: number) => sql`INSERT INTO ledger (kind, amount) VALUES (${kind}, ${amount})`
  const settlements = Effect.forever(Effect.zipRight(
    Effect.sleep("2 seconds"),
    Effect.either(Transaction.atomic(Effect.zipRight(insert("settlement", 0), Effect.sleep("700 millis")), {
      name: "settlement"
    }))
  ))
  yield* Effect.forkScoped(settlements)
  for (let i = 0;; i++) {
    yield* Effect.either(Transaction.atomic(insert("checkout", i), { name: "checkout" }))
    yield* Effect.either(Transaction.atomic(
      Effect.zipRight(insert("transfer", i), i % 8 === 7 ? Effect.fail(new InsufficientFunds()) : Effect.void),
      { name: "transfer" }
    ))
    yield* Effect.sleep(`${10 + (i % 5) * 4} millis`)
  }
})

/** Chromium: `CHROMIUM_PATH`, `/usr/bin/chromium`, or `chromium` / `chromium-browser` on the PATH. */
const chromiumPath = (): string => {
  const onPath = (process.env["PATH"] ?? "").split(Path.delimiter).filter((dir) => dir !== "")
    .flatMap((dir) => [Path.join(dir, "chromium"), Path.join(dir, "chromium-browser")])
  const candidates = [process.env["CHROMIUM_PATH"], "/usr/bin/chromium", ...onPath]
  for (const candidate of candidates) {
    if (candidate === undefined || candidate === "") continue
    try {
      Fs.accessSync(candidate, Fs.constants.X_OK)
      return candidate
    } catch {
      // next
    }
  }
  throw new Error(
    "Chromium is required by the dashboard's browser test and was not found (CHROMIUM_PATH, /usr/bin/chromium, " +
      "chromium on the PATH): install it (Debian/Ubuntu: apt-get install chromium) or set CHROMIUM_PATH"
  )
}

const launch = Effect.acquireRelease(
  Effect.suspend(() => {
    const executablePath = chromiumPath()
    return Effect.tryPromise({
      try: () =>
        chromium.launch({
          executablePath,
          headless: true,
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run"
          ]
        }),
      catch: (cause) => new Error(`could not launch Chromium (${executablePath}): ${String(cause)}`)
    })
  }),
  (browser: Browser) => Effect.promise(() => browser.close())
)

/** What a page reported: dialogs, uncaught errors, console errors and CSP violations, failed responses. */
interface Watch {
  readonly dialogs: Array<string>
  readonly pageErrors: Array<string>
  readonly consoleErrors: Array<string>
  readonly cspViolations: Array<string>
  readonly failedResponses: Array<string>
}

/** A page (own context) at `width`×`height` on `url`, with everything it reports recorded. */
const openPage = (browser: Browser, url: string, width: number, height: number) =>
  Effect.gen(function*() {
    const context = yield* Effect.acquireRelease(
      Effect.promise(() => browser.newContext({ viewport: { width, height }, acceptDownloads: true })),
      (context) => Effect.promise(() => context.close())
    )
    const page = yield* Effect.promise(() => context.newPage())
    const watch: Watch = { dialogs: [], pageErrors: [], consoleErrors: [], cspViolations: [], failedResponses: [] }
    page.on("dialog", (dialog) => {
      watch.dialogs.push(`${dialog.type()}: ${dialog.message()}`)
      void dialog.dismiss().catch(() => undefined)
    })
    page.on("pageerror", (error) => watch.pageErrors.push(error.message))
    page.on("console", (message) => {
      const text = message.text()
      if (/content.security.policy/i.test(text)) watch.cspViolations.push(text)
      else if (message.type() === "error") watch.consoleErrors.push(text)
    })
    page.on("response", (response) => {
      if (response.status() >= 400) watch.failedResponses.push(`${response.status()} ${response.url()}`)
    })
    // Violations also as events (reported to the console above), whatever Chromium prints.
    yield* Effect.promise(() =>
      page.addInitScript(() =>
        document.addEventListener("securitypolicyviolation", (event) =>
          console.error(
            `Content Security Policy violation: ${event.violatedDirective} ${event.blockedURI}`
          ))
      )
    )
    yield* Effect.promise(() => page.goto(url, { waitUntil: "load" }))
    return { page, watch }
  })

/** What the test passes to a page function. */
type Arg = string | undefined

/** Waits (at most `timeout`) for `predicate` to hold in the page, failing with `what` otherwise. */
const waitFor = (page: Page, what: string, predicate: (arg: Arg) => boolean, arg: Arg) =>
  Effect.tryPromise({
    try: () => page.waitForFunction(predicate, arg, { timeout }),
    catch: (cause) => new Error(`waited ${timeout} ms for ${what}: ${String(cause)}`)
  })

const evaluate = <R>(page: Page, f: (arg: Arg) => R, arg: Arg) => Effect.promise(() => page.evaluate(f, arg))

/** The snapshot time the page shows (`#updated`'s `datetime`, to the millisecond). */
const updatedAt = (page: Page) =>
  evaluate(page, () => document.getElementById("updated")?.getAttribute("datetime") ?? "", undefined)

/** The text of a figure card's value. */
const figure = (page: Page, label: string) =>
  evaluate(
    page,
    (label) => document.querySelector(`#figures [data-figure="${label}"] .value`)?.textContent ?? "",
    label
  )

/** Waits until the monitor has taken `n` more snapshots. */
const snapshots = (monitor: TransactionMonitor.TransactionMonitor, n: number) =>
  monitor.events.pipe(
    Stream.filter((event) => event._tag === "Snapshot"),
    Stream.take(n),
    Stream.runDrain,
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => new Error(`the monitor took fewer than ${n} snapshots in ${timeout} ms`)
    })
  )

/** The row of an alert in `#alerts`: its cells' text and class, or `undefined`. */
const alertRow = (page: Page, key: string) =>
  evaluate(page, (key) => {
    const rows = Array.from(document.querySelectorAll("#alerts tbody tr"))
    const row = rows.find((row) => row.dataset["key"] === key)
    return row === undefined
      ? undefined
      : { className: row.className, cells: Array.from(row.cells).map((cell) => cell.textContent ?? "") }
  }, key)

/** The elements wider than the viewport that no scrolling container holds (to say what overflows). */
const overflow = (page: Page) =>
  evaluate(page, () => {
    const scrolls = (element: DomElement): boolean => {
      for (let node = element.parentElement; node !== null; node = node.parentElement) {
        if (node.tagName === "BODY") return false
        const x = getComputedStyle(node).overflowX
        if (x === "auto" || x === "scroll" || x === "hidden") return true
      }
      return false
    }
    const offenders = Array.from(document.body.querySelectorAll("*"))
      .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 1 && !scrolls(element))
      .slice(0, 10)
      .map((element) => `${element.tagName.toLowerCase()}${element.id === "" ? "" : `#${element.id}`}`)
    const clippedCharts = Array.from(document.querySelectorAll(".chart"))
      .filter((chart) => chart.scrollWidth > chart.clientWidth + 1)
      .map((chart) => `#${chart.id}: ${chart.scrollWidth} px in ${chart.clientWidth} px`)
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      offenders,
      clippedCharts
    }
  }, undefined)

const assertQuiet = (name: string, watch: Watch) => {
  assert.deepStrictEqual(watch.dialogs, [], `${name}: no dialog may open`)
  assert.deepStrictEqual(watch.pageErrors, [], `${name}: page errors`)
  assert.deepStrictEqual(watch.cspViolations, [], `${name}: Content Security Policy violations`)
  assert.deepStrictEqual(watch.consoleErrors, [], `${name}: console errors`)
  assert.deepStrictEqual(watch.failedResponses, [], `${name}: failed responses`)
}

const fromRoot = (path: string) => Url.fileURLToPath(new URL(`../${path}`, import.meta.url))
const screenshotFile = fromRoot(".tmp/dashboard.png")
const phoneScreenshotFile = fromRoot(".tmp/dashboard-phone.png")
const readmeScreenshot = fromRoot("docs/dashboard.png")

describe("TransactionDashboard in a browser", () => {
  layer(Live, { excludeTestServices: true, timeout: "30 seconds" })((it) => {
    it.scoped(
      "live page: updates, alerts, pause, CSV, hostile text, CSP, phone layout, screenshot",
      () =>
        Effect.gen(function*() {
          const server = yield* TransactionDashboard.DashboardServer
          const monitor = yield* TransactionMonitor.TransactionMonitor
          yield* Effect.forkScoped(workload)
          const browser = yield* launch
          const { page, watch } = yield* openPage(browser, server.url, 1280, 900)

          // 1. Live: the page connects, and the next snapshots change it without a reload.
          yield* waitFor(
            page,
            "the event stream to open",
            () => document.getElementById("connection")?.textContent === "live",
            undefined
          )
          yield* evaluate(page, () => {
            window.dashboardTestMarker = "no reload"
          }, undefined)
          yield* waitFor(
            page,
            "a first snapshot",
            () => (document.getElementById("updated")?.getAttribute("datetime") ?? "") !== "",
            undefined
          )
          const first = yield* updatedAt(page)
          const firstCommits = yield* figure(page, "commits/s")
          yield* waitFor(
            page,
            "#updated to change",
            (before) => document.getElementById("updated")?.getAttribute("datetime") !== before,
            first
          )
          assert.isAbove(Date.parse(yield* updatedAt(page)), Date.parse(first))
          yield* waitFor(
            page,
            "the commits/s card to show a new, positive rate",
            (before) => {
              const text = document.querySelector(`#figures [data-figure="commits/s"] .value`)?.textContent ?? ""
              return text !== before && Number(text) > 0
            },
            firstCommits
          )
          yield* waitFor(
            page,
            "the checkout and transfer rows in #names",
            () => {
              const names = Array.from(document.querySelectorAll("#names tbody tr td:first-child"))
                .map((cell) => cell.textContent)
              return names.includes("checkout") && names.includes("transfer")
            },
            undefined
          )
          assert.strictEqual(
            yield* evaluate(page, () => window.dashboardTestMarker, undefined),
            "no reload",
            "the page was reloaded"
          )

          // 8. The screenshot (before the pause, which leaves a gap in the charts): charts with a few points, the
          // workload's failure-rate alerts and their recommendations, and the settlement among the running
          // transactions (it holds the connection 0.7 s out of every 2.7 s: at least one snapshot a cycle sees it).
          while ((yield* monitor.history()).length < 12) yield* snapshots(monitor, 1)
          yield* waitFor(
            page,
            "an open failure-rate alert, a recommendation and four charts",
            () =>
              Array.from(document.querySelectorAll("#alerts tbody tr")).some((row) =>
                row.dataset["key"]?.startsWith("failure-rate|") === true && row.className.includes("open")
              ) &&
              document.querySelectorAll("#recommendations li").length > 0 &&
              document.querySelectorAll(".chart canvas").length === 4,
            undefined
          )
          yield* waitFor(
            page,
            "the settlement in #active",
            () =>
              Array.from(document.querySelectorAll("#active tbody tr td:first-child")).some((cell) =>
                cell.textContent === "settlement"
              ),
            undefined
          )
          yield* Effect.sync(() => Fs.mkdirSync(Path.dirname(screenshotFile), { recursive: true }))
          yield* Effect.promise(() => page.screenshot({ path: screenshotFile, fullPage: true }))
          if (process.env["UPDATE_SCREENSHOT"] === "1") {
            yield* Effect.sync(() => {
              Fs.mkdirSync(Path.dirname(readmeScreenshot), { recursive: true })
              Fs.copyFileSync(screenshotFile, readmeScreenshot)
            })
          }

          // 3. Pause: nothing changes over three snapshots; resume catches up.
          yield* Effect.promise(() => page.click("#pause"))
          assert.strictEqual(yield* Effect.promise(() => page.textContent("#pause")), "Resume")
          assert.strictEqual(yield* Effect.promise(() => page.getAttribute("#pause", "aria-pressed")), "true")
          const paused = yield* updatedAt(page)
          const pausedFigures = yield* Effect.promise(() => page.textContent("#figures"))
          yield* snapshots(monitor, 3)
          // Time for the last snapshot's event to reach the page.
          yield* Effect.sleep("300 millis")
          assert.strictEqual(yield* updatedAt(page), paused, "#updated changed while paused")
          assert.strictEqual(yield* Effect.promise(() => page.textContent("#figures")), pausedFigures)
          yield* Effect.promise(() => page.click("#pause"))
          assert.strictEqual(yield* Effect.promise(() => page.textContent("#pause")), "Pause")
          assert.strictEqual(yield* Effect.promise(() => page.getAttribute("#pause", "aria-pressed")), "false")
          yield* waitFor(
            page,
            "#updated to change after resuming",
            (before) => document.getElementById("updated")?.getAttribute("datetime") !== before,
            paused
          )

          // 2 and 5. A rule fires about the hostile name with a hostile message: the alert appears, as text.
          control.hostile = true
          yield* waitFor(
            page,
            "the injection alert in #alerts, open",
            (key) =>
              Array.from(document.querySelectorAll("#alerts tbody tr")).some((row) =>
                row.dataset["key"] === key && row.className.includes("open")
              ),
            hostileKey
          )
          const opened = yield* alertRow(page, hostileKey)
          assert.isDefined(opened)
          assert.deepStrictEqual(opened!.cells.slice(0, 6), [
            "error",
            "injection",
            hostileName,
            hostileMessage,
            "1",
            "open"
          ])
          yield* waitFor(
            page,
            "the hostile name in #names and the name selector",
            (name) =>
              Array.from(document.querySelectorAll("#names tbody tr td:first-child")).some((cell) =>
                cell.textContent === name
              ) &&
              Array.from(document.querySelectorAll("#name option")).some((option) => option.textContent === name),
            hostileName
          )
          yield* waitFor(
            page,
            "the injection recommendation",
            (message) => (document.getElementById("recommendations")?.textContent ?? "").includes(String(message)),
            hostileMessage
          )
          const alertsText = yield* Effect.promise(() => page.textContent("#alerts"))
          assert.include(alertsText, hostileName)
          assert.include(alertsText, hostileMessage)
          const recommendationsText = yield* Effect.promise(() => page.textContent("#recommendations"))
          assert.include(recommendationsText, hostileName)
          assert.include(recommendationsText, hostileMessage)
          assert.lengthOf(yield* Effect.promise(() => page.$$("#alerts img")), 0, "an <img> was injected in #alerts")
          assert.lengthOf(yield* Effect.promise(() => page.$$("img")), 0, "an <img> was injected in the page")
          // Only the page's own two scripts (uPlot's and the dashboard's).
          assert.lengthOf(yield* Effect.promise(() => page.$$("script")), 2, "a <script> was injected in the page")
          // The alert resolves when the rule stops holding.
          control.hostile = false
          yield* waitFor(
            page,
            "the injection alert to resolve",
            (key) =>
              Array.from(document.querySelectorAll("#alerts tbody tr")).some((row) =>
                row.dataset["key"] === key && row.className.includes("resolved") &&
                Array.from(row.cells)[5]?.textContent === "resolved"
              ),
            hostileKey
          )

          // 4. The CSV report, downloaded through the link.
          const [download] = yield* Effect.promise(() =>
            Promise.all([page.waitForEvent("download", { timeout }), page.click("#csv")])
          )
          assert.match(download.suggestedFilename(), /^effect-sql-tx-report-.*\.csv$/)
          const file = yield* Effect.promise(() => download.path())
          const csv = yield* Effect.sync(() => Fs.readFileSync(file, "utf8"))
          assert.match(csv, /^taken_at,/)
          const rows = parse(csv, { columns: true }) as Array<Record<string, string>>
          assert.isAtLeast(rows.length, 12)
          const names = new Set(rows.map((row) => row["transaction"]))
          for (const name of ["*", "checkout", "transfer", hostileName]) {
            assert.isTrue(names.has(name), `"${name}" in the CSV's transactions: ${[...names].join(", ")}`)
          }

          // 7. A phone: a fresh page at 390×800, and the desktop page narrowed; tables scroll in their section.
          const phone = yield* openPage(browser, server.url, 390, 800)
          yield* waitFor(
            phone.page,
            "the phone page to fill its tables and charts",
            () =>
              document.querySelectorAll("#alerts tbody tr").length > 0 &&
              document.querySelectorAll("#names tbody tr").length > 0 &&
              document.querySelectorAll(".chart canvas").length === 4,
            undefined
          )
          const onPhone = yield* overflow(phone.page)
          assert.isAtMost(
            onPhone.scrollWidth,
            onPhone.innerWidth + 1,
            `horizontal overflow on a phone: ${onPhone.offenders.join(", ")}`
          )
          assert.deepStrictEqual(onPhone.clippedCharts, [], "charts wider than their box")
          yield* Effect.promise(() => phone.page.screenshot({ path: phoneScreenshotFile }))
          yield* Effect.promise(() => page.setViewportSize({ width: 390, height: 800 }))
          yield* snapshots(monitor, 1)
          const narrowed = yield* overflow(page)
          assert.isAtMost(
            narrowed.scrollWidth,
            narrowed.innerWidth + 1,
            `horizontal overflow after narrowing the window: ${narrowed.offenders.join(", ")}`
          )
          assert.deepStrictEqual(narrowed.clippedCharts, [], "charts wider than their box")

          // 5 and 6. No dialog, page error, CSP violation, console error or failed request on either page.
          assertQuiet("desktop page", watch)
          assertQuiet("phone page", phone.watch)
        }),
      120_000
    )
  })
})
