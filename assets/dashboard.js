// effect-sql-tx dashboard: fills the page from the API and keeps it live over server-sent events.
// Everything that comes from the server is set as text (textContent), never parsed as HTML.
/* global uPlot */
"use strict"
;(() => {
  const base = document.body.dataset.base || ""
  const token = new URLSearchParams(location.search).get("token")
  const withToken = (path) =>
    token === null ? path : `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`
  const api = (path) =>
    fetch(base + path, { headers: token === null ? {} : { authorization: `Bearer ${token}` } }).then((response) => {
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`)
      return response.json()
    })

  const $ = (id) => document.getElementById(id)
  const el = (tag, text, className) => {
    const node = document.createElement(tag)
    if (text !== undefined) node.textContent = String(text)
    if (className) node.className = className
    return node
  }
  const fmt = (value, digits = 2) =>
    value === undefined || value === null || !Number.isFinite(value) ? "–" : Number(value.toFixed(digits)).toString()
  const pct = (value) => value === undefined ? "–" : `${(value * 100).toFixed(1)} %`
  const ms = (seconds) => seconds === undefined ? "–" : fmt(seconds * 1000, 1)
  const time = (epoch) => epoch === undefined ? "–" : new Date(epoch).toLocaleTimeString()

  const state = { current: undefined, history: [], name: "*", paused: false, pending: [], alerts: new Map() }
  // The downloads cover the selected range.
  const setDownloads = () => {
    const from = Date.now() - Number($("range").value)
    $("csv").href = withToken(`${base}/api/report.csv?from=${from}`)
    $("json").href = withToken(`${base}/api/report.json?from=${from}`)
  }
  setDownloads()
  // Rates of transactions that ended: "–" when none did, rather than 0 %.
  const ended = (f) => f.interval.committed + f.interval.rolledBack
  const rate = (f, value) => ended(f) === 0 ? "–" : pct(value)

  const figuresOf = (snapshot, name) =>
    snapshot === undefined ? undefined : name === "*" ? snapshot.overall : snapshot.byName[name]

  // Charts: one uPlot per figure over the history of the selected name.
  const chartSpecs = [
    ["chart-throughput", (f) => f.perSecond.committed],
    ["chart-failure", (f) => f.failureRate * 100],
    ["chart-p99", (f) => f.duration.p99 * 1000],
    ["chart-active", (f) => f.active]
  ]
  const charts = new Map()
  const chartWidth = (node) => Math.max(240, node.clientWidth || 320)
  const drawCharts = () => {
    const xs = state.history.map((s) => s.takenAt / 1000)
    for (const [id, pick] of chartSpecs) {
      const ys = state.history.map((s) => {
        const f = figuresOf(s, state.name)
        return f === undefined ? 0 : pick(f)
      })
      const data = [xs, ys]
      const node = $(id)
      const chart = charts.get(id)
      if (chart === undefined) {
        if (typeof uPlot !== "function") continue
        charts.set(
          id,
          new uPlot(
            {
              width: chartWidth(node),
              height: 160,
              legend: { show: false },
              scales: { y: { range: (_, __, max) => [0, max > 0 ? max * 1.1 : 1] } },
              series: [{}, { stroke: "#3b82f6", width: 1.5, fill: "rgba(59,130,246,0.12)" }],
              axes: [{}, { size: 50 }]
            },
            data,
            node
          )
        )
      } else chart.setData(data)
    }
  }
  window.addEventListener("resize", () => {
    for (const [id, chart] of charts) chart.setSize({ width: chartWidth($(id)), height: 160 })
  })

  const renderFigures = () => {
    const f = figuresOf(state.current?.snapshot, state.name)
    const cards = [
      ["commits/s", f && fmt(f.perSecond.committed, 1)],
      ["success rate", f && rate(f, f.successRate)],
      ["failure rate", f && rate(f, f.failureRate)],
      ["p50 (ms)", f && ms(f.duration.p50)],
      ["p99 (ms)", f && ms(f.duration.p99)],
      ["deadlocks", f && f.interval.deadlocks],
      ["timeouts", f && f.interval.timeouts],
      ["retries", f && f.interval.retries],
      ["active", f && f.active]
    ]
    const container = $("figures")
    container.replaceChildren(...cards.map(([label, value]) => {
      const card = el("div", undefined, "card")
      card.append(el("span", value === undefined ? "–" : value, "value"), el("span", label, "label"))
      card.dataset.figure = label
      return card
    }))
  }

  const renderHealth = () => {
    const health = state.current?.health
    if (health === undefined) return
    $("health").className = `badge ${health.status}`
    $("score").textContent = String(health.score)
    $("status").textContent = health.status
  }

  const renderAlerts = () => {
    const rows = [...state.alerts.values()]
      .sort((a, b) => (a.status === b.status ? 0 : a.status === "open" ? -1 : 1) || b.lastSeenAt - a.lastSeenAt)
      .slice(0, 50)
      .map((alert) => {
        const row = el("tr", undefined, `level-${alert.level} ${alert.status}`)
        row.dataset.key = alert.key
        row.append(
          el("td", alert.level),
          el("td", alert.rule),
          el("td", alert.transaction),
          el("td", alert.message),
          el("td", alert.count),
          el("td", alert.status),
          el("td", time(alert.firstFiredAt))
        )
        return row
      })
    $("alerts").tBodies[0].replaceChildren(...rows)
  }

  const renderRecommendations = () => {
    const list = state.current?.recommendations ?? []
    $("recommendations").replaceChildren(...list.map((r) => {
      const item = el("li", undefined, `level-${r.level}`)
      item.append(
        el("strong", `${r.title}${r.transaction === "*" ? "" : ` (${r.transaction})`}: `),
        el("span", r.advice)
      )
      return item
    }))
  }

  const renderActive = () => {
    const active = state.current?.snapshot?.active ?? []
    $("active").tBodies[0].replaceChildren(...active.map((a) => {
      const row = el("tr", undefined, a.longRunning ? "long-running" : "")
      row.append(
        el("td", a.name),
        el("td", a.id),
        el("td", a.depth),
        el("td", a.attempt),
        el("td", fmt(a.age, 1)),
        el("td", a.connectionId ?? "–")
      )
      return row
    }))
  }

  const renderNames = () => {
    const snapshot = state.current?.snapshot
    const select = $("name")
    const known = new Set([...select.options].map((o) => o.value))
    const names = snapshot === undefined ? [] : Object.keys(snapshot.byName).sort()
    for (const name of names) {
      if (!known.has(name)) select.append(new Option(name, name))
    }
    $("names").tBodies[0].replaceChildren(...names.map((name) => {
      const f = snapshot.byName[name]
      const row = el("tr")
      row.append(
        el("td", name),
        el("td", fmt(f.perSecond.committed, 1)),
        el("td", rate(f, f.successRate)),
        el("td", f.interval.failed),
        el("td", ms(f.duration.p50)),
        el("td", ms(f.duration.p99)),
        el("td", f.interval.deadlocks),
        el("td", f.interval.timeouts),
        el("td", f.interval.retries),
        el("td", f.active)
      )
      return row
    }))
  }

  const render = () => {
    renderHealth()
    renderFigures()
    renderAlerts()
    renderRecommendations()
    renderActive()
    renderNames()
    drawCharts()
    const taken = state.current?.snapshot?.takenAt
    if (taken !== undefined) {
      const node = $("updated")
      node.textContent = time(taken)
      node.dateTime = new Date(taken).toISOString()
    }
  }

  const applyState = (next) => {
    state.current = next
    for (const alert of next.alerts) state.alerts.set(alert.key, alert)
    const snapshot = next.snapshot
    if (snapshot !== undefined) {
      const last = state.history[state.history.length - 1]
      if (last === undefined || snapshot.takenAt > last.takenAt) state.history.push(snapshot)
      const range = Number($("range").value)
      const from = snapshot.takenAt - range
      while (state.history.length > 0 && state.history[0].takenAt < from) state.history.shift()
    }
  }

  const onSnapshot = (data) => {
    if (state.paused) {
      // Kept, so that the charts have no gap once resumed.
      state.pending.push(data)
      return
    }
    applyState(data)
    render()
  }

  const onAlert = (alert) => {
    state.alerts.set(alert.key, alert)
    if (!state.paused) renderAlerts()
  }

  const loadHistory = () => {
    const range = Number($("range").value)
    return api(`/api/history?from=${Date.now() - range}&limit=1000`).then((snapshots) => {
      state.history = snapshots
      drawCharts()
    })
  }

  let source
  const connect = () => {
    source = new EventSource(withToken(`${base}/api/events`))
    source.addEventListener("open", () => {
      $("connection").textContent = "live"
      $("connection").className = "connection live"
    })
    source.addEventListener("error", () => {
      $("connection").textContent = "reconnecting"
      $("connection").className = "connection down"
      // The browser reconnects by itself (with Last-Event-ID) unless the server refused the stream.
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000)
    })
    source.addEventListener("snapshot", (event) => onSnapshot(JSON.parse(event.data)))
    source.addEventListener("alert", (event) => onAlert(JSON.parse(event.data)))
    source.addEventListener("resolved", (event) => onAlert(JSON.parse(event.data)))
  }

  $("pause").addEventListener("click", () => {
    state.paused = !state.paused
    $("pause").textContent = state.paused ? "Resume" : "Pause"
    $("pause").setAttribute("aria-pressed", String(state.paused))
    if (!state.paused && state.pending.length > 0) {
      for (const pending of state.pending) applyState(pending)
      state.pending = []
      render()
    }
  })
  $("name").addEventListener("change", () => {
    state.name = $("name").value
    render()
  })
  $("range").addEventListener("change", () => {
    setDownloads()
    loadHistory().catch(showError)
  })
  $("csv").addEventListener("click", setDownloads)
  $("json").addEventListener("click", setDownloads)

  const showError = (error) => {
    $("connection").textContent = String(error.message || error)
    $("connection").className = "connection down"
  }

  api("/api/snapshot")
    .then((initial) => {
      applyState(initial)
      return loadHistory().then(() => render())
    })
    .catch(showError)
    .finally(connect)
})()
