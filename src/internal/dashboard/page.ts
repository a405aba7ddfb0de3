/**
 * The page: a static shell (no user data in it: the script fills it from the API, as text) under a strict
 * Content-Security-Policy.
 */

/** @internal HTML-escapes text for an element's content or a quoted attribute. */
export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** @internal No inline script or style; scripts from the dashboard itself with the page's nonce. */
export const contentSecurityPolicy = (nonce: string): string =>
  [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'"
  ].join("; ")

/** @internal */
export const render = (options: { readonly basePath: string; readonly title: string; readonly nonce: string }) => {
  const base = escapeHtml(options.basePath)
  const title = escapeHtml(options.title)
  const nonce = escapeHtml(options.nonce)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title>
<link rel="stylesheet" href="${base}/assets/uplot.css">
<link rel="stylesheet" href="${base}/assets/dashboard.css">
</head>
<body data-base="${base}">
<header>
  <h1>${title}</h1>
  <div id="health" class="badge unknown" title="health score"><span id="score">–</span><span id="status">connecting</span></div>
  <div class="meta">
    <span>last update <time id="updated">–</time></span>
    <span id="connection" class="connection">connecting</span>
    <button id="pause" type="button" aria-pressed="false">Pause</button>
  </div>
</header>
<main>
  <section class="controls">
    <label>Transaction <select id="name"><option value="*">all transactions</option></select></label>
    <label>Range <select id="range">
      <option value="900000">15 min</option>
      <option value="3600000" selected>1 h</option>
      <option value="86400000">24 h</option>
      <option value="604800000">7 d</option>
    </select></label>
    <a id="csv" href="${base}/api/report.csv" download>Download CSV</a>
    <a id="json" href="${base}/api/report.json" download>JSON report</a>
  </section>
  <section id="figures" class="figures" aria-label="current figures"></section>
  <section class="charts">
    <figure><figcaption>Throughput (commits/s)</figcaption><div id="chart-throughput" class="chart"></div></figure>
    <figure><figcaption>Failure rate (%)</figcaption><div id="chart-failure" class="chart"></div></figure>
    <figure><figcaption>p99 duration (ms)</figcaption><div id="chart-p99" class="chart"></div></figure>
    <figure><figcaption>Active transactions</figcaption><div id="chart-active" class="chart"></div></figure>
  </section>
  <section>
    <h2>Alerts</h2>
    <table id="alerts"><thead><tr><th>level</th><th>rule</th><th>transaction</th><th>message</th><th>count</th><th>status</th><th>since</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>Recommendations</h2>
    <ol id="recommendations"></ol>
  </section>
  <section>
    <h2>Running transactions</h2>
    <table id="active"><thead><tr><th>name</th><th>id</th><th>depth</th><th>attempt</th><th>age (s)</th><th>server pid</th></tr></thead><tbody></tbody></table>
  </section>
  <section>
    <h2>By transaction name</h2>
    <table id="names"><thead><tr><th>name</th><th>commits/s</th><th>success</th><th>failed</th><th>p50 (ms)</th><th>p99 (ms)</th><th>deadlocks</th><th>timeouts</th><th>retries</th><th>active</th></tr></thead><tbody></tbody></table>
  </section>
</main>
<script nonce="${nonce}" src="${base}/assets/uplot.js"></script>
<script nonce="${nonce}" src="${base}/assets/dashboard.js"></script>
</body>
</html>
`
}
