// The flowlog dashboard: #/executions (list + filters), #/executions/<id> (detail, node
// timeline, live), #/analytics (charts). Charts: Chart.js.
import "./style.css";
import {
  BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip,
} from "chart.js";
import { get, hasKey, initKey, live, setKey } from "./api.js";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController,
               LineElement, PointElement, Legend, Tooltip);
window.flowlogCharts = {}; // name -> Chart (the browser test reads them)

const app = document.getElementById("app");
let leave = new AbortController(); // aborts the current view's live streams
const STATUSES = ["pending", "queued", "running", "waiting", "incident", "succeeded",
                  "failed", "cancelled", "rejected"];

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
function badge(s) { return `<span class="badge ${esc(s)}">${esc(s)}</span>`; }
function when(t) { return t ? new Date(t).toISOString().replace("T", " ").slice(0, 19) : ""; }
function ms(v) { return v === null || v === undefined ? "" : `${v} ms`; }
function fail(e) {
  app.innerHTML = `<p class="error" id="error">${esc(e.message)}</p>` +
    (e.status === 401 ? "<p>Enter an API key above (viewer role is enough).</p>" : "");
}
function destroyCharts() {
  for (const [k, c] of Object.entries(window.flowlogCharts)) { c.destroy(); delete window.flowlogCharts[k]; }
}
function hashParams() { return new URLSearchParams(location.hash.split("?")[1] || ""); }

// --- executions list -----------------------------------------------------------------
async function executionsView() {
  const p = hashParams();
  const filters = { workflow: p.get("workflow") || "", status: p.get("status") || "",
                    trigger_source: p.get("trigger_source") || "", sort: p.get("sort") || "-created_at" };
  const attr = p.get("attr") || "";  // a search attribute filter: NAME=v, NAME>=v, NAME<=v
  app.innerHTML = `
    <form class="filters" id="filters">
      <input name="workflow" placeholder="workflow" value="${esc(filters.workflow)}" />
      <select name="status"><option value="">any status</option>
        ${STATUSES.map((s) => `<option ${s === filters.status ? "selected" : ""}>${s}</option>`).join("")}
      </select>
      <input name="trigger_source" placeholder="trigger source" value="${esc(filters.trigger_source)}" />
      <input name="attr" placeholder="search attribute, e.g. retries>=1" value="${esc(attr)}" />
      <select name="sort">${["-created_at", "created_at", "-last_event_at", "last_event_at"]
        .map((s) => `<option ${s === filters.sort ? "selected" : ""}>${s}</option>`).join("")}</select>
      <button type="submit">Filter</button>
    </form>
    <table id="executions"><thead><tr><th>execution</th><th>workflow</th><th>status</th>
      <th>trigger</th><th>created</th><th>duration</th><th>cost</th></tr></thead>
      <tbody></tbody></table>
    <p><button id="more" hidden>More</button></p>`;
  document.getElementById("filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const q = new URLSearchParams([...f.entries()].filter(([, v]) => v));
    location.hash = `#/executions?${q}`;
  });
  const body = app.querySelector("#executions tbody");
  const more = document.getElementById("more");
  let cursor = null;
  async function page() {
    const m = attr.match(/^\s*([a-z][a-z0-9_]*)\s*(>=|<=|=)\s*(.*?)\s*$/);
    if (attr && !m) throw new Error(`search attribute filter ${attr}: write NAME=value, NAME>=value or NAME<=value`);
    const byAttr = m ? { [`attr.${m[1]}${m[2] === "=" ? "" : m[2][0]}`]: m[3] } : {};
    const r = await get("/executions", { ...filters, ...byAttr, cursor, limit: 50 });
    body.insertAdjacentHTML("beforeend", r.items.map((x) => `
      <tr data-id="${esc(x.execution_id)}"><td><a href="#/executions/${encodeURIComponent(x.execution_id)}">${esc(x.execution_id)}</a></td>
      <td>${esc(x.workflow_id)} v${x.workflow_version}</td><td>${badge(x.status)}</td>
      <td>${esc(x.trigger_source)}</td><td>${when(x.created_at)}</td><td>${ms(x.duration_ms)}</td>
      <td>$${x.cost_usd.toFixed(4)}</td></tr>`).join(""));
    cursor = r.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => page().catch(fail));
  await page();
}

// --- execution detail ----------------------------------------------------------------
function timelineChart(canvas, d) {
  const bars = d.timeline;
  const t0 = Math.min(...bars.filter((b) => b.start).map((b) => Date.parse(b.start)),
                      Date.parse(d.created_at));
  const now = Date.now();
  const labels = bars.map((b) => (b.attempt > 1 ? `${b.node_id} #${b.attempt}` : b.node_id));
  const data = bars.map((b) => {
    if (!b.start) return [0, 0];
    const s = Date.parse(b.start) - t0;
    const e = (b.end ? Date.parse(b.end) : Math.min(now, Date.parse(d.last_event_at) + 1)) - t0;
    return [s, Math.max(e, s + 20)];
  });
  const colour = { succeeded: "#3aa76d", failed: "#d64545", dead_lettered: "#8b1e1e",
                   skipped: "#b8bfcc", running: "#4c7bd9", started: "#4c7bd9",
                   scheduled: "#9db7ec", retry_wait: "#e0a800", waiting: "#e0a800" };
  const chart = new Chart(canvas, {
    type: "bar",
    data: { labels, datasets: [{ label: "node runs (ms from start)", data,
      backgroundColor: bars.map((b) => colour[b.status] || "#8892a6") }] },
    options: { indexAxis: "y", animation: false, responsive: true,
      plugins: { legend: { display: false },
                 tooltip: { callbacks: { label: (c) => `${bars[c.dataIndex].status}: ${c.raw[0]}–${c.raw[1]} ms` } } },
      scales: { x: { title: { display: true, text: "ms since the execution started" } } } },
  });
  window.flowlogCharts.timeline = chart;
}

async function detailView(id) {
  const render = async () => {
    const d = await get(`/executions/${encodeURIComponent(id)}`);
    destroyCharts();
    const incidents = Object.entries(d.incidents || {});
    app.innerHTML = `
      <h2>${esc(d.execution_id)} <span id="status">${badge(d.status)}</span></h2>
      <p class="muted">${esc(d.workflow_id)} v${d.workflow_version} · tenant ${esc(d.tenant)} ·
        trigger ${esc(d.trigger_source)} · created ${when(d.created_at)} ·
        <span id="last-seq">seq ${d.last_seq}</span> · ${ms(d.duration_ms)} ·
        ${d.model_calls} model calls · $${d.cost_usd.toFixed(4)}</p>
      <div class="card"><h3>Timeline</h3><canvas id="timeline"></canvas></div>
      <div class="card"><h3>Nodes</h3><table id="nodes"><thead><tr><th>node</th><th>attempt</th>
        <th>status</th><th>type</th><th>duration</th><th>output</th></tr></thead><tbody>
        ${d.timeline.map((b) => `<tr data-node="${esc(b.node_id)}"><td>${esc(b.node_id)}</td><td>${b.attempt}</td>
          <td>${badge(b.status)}</td><td>${esc(b.node_type)}</td><td>${ms(b.duration_ms)}</td>
          <td><code>${esc(b.attempt ? d.outputs[b.node_id] : "")}</code></td></tr>`).join("")}
      </tbody></table></div>
      <div class="card"><h3>Incidents</h3>${incidents.length
        ? `<pre>${esc(JSON.stringify(d.incidents, null, 1))}</pre>` : "<p class='muted'>none open</p>"}</div>
      <div class="card"><h3>Output</h3><pre>${esc(JSON.stringify(d.output, null, 1))}</pre></div>`;
    timelineChart(document.getElementById("timeline"), d);
  };
  await render();
  let pending = Promise.resolve();
  live(`/live/executions/${encodeURIComponent(id)}`, () => {
    pending = pending.then(render).catch(fail); // one render at a time, in order
  }, leave.signal);
}

// --- analytics -----------------------------------------------------------------------
function lineChart(name, canvas, labels, datasets, yTitle) {
  window.flowlogCharts[name] = new Chart(canvas, {
    type: "line", data: { labels, datasets },
    options: { animation: false, responsive: true, spanGaps: true,
               scales: { y: { beginAtZero: true, title: { display: true, text: yTitle } } } },
  });
}

async function analyticsView() {
  const p = hashParams();
  const to = p.get("to") || new Date().toISOString();
  const from = p.get("from") || new Date(Date.parse(to) - 24 * 3600e3).toISOString();
  const bucket = p.get("bucket") || "1h";
  app.innerHTML = `
    <form class="filters" id="range">
      <label>from <input name="from" value="${esc(from)}" size="26" /></label>
      <label>to <input name="to" value="${esc(to)}" size="26" /></label>
      <select name="bucket">${["1m", "5m", "15m", "1h", "6h", "1d"].map((b) =>
        `<option ${b === bucket ? "selected" : ""}>${b}</option>`).join("")}</select>
      <button type="submit">Show</button>
    </form>
    <div class="charts">
      <div class="card"><h3>Throughput (executions/s)</h3><canvas id="chart-throughput"></canvas></div>
      <div class="card"><h3>Failure rate</h3><canvas id="chart-failure"></canvas></div>
      <div class="card"><h3>Duration p95 (ms)</h3><canvas id="chart-p95"></canvas></div>
      <div class="card"><h3>Cost by model (USD)</h3><canvas id="chart-cost"></canvas></div>
    </div>`;
  document.getElementById("range").addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/analytics?${new URLSearchParams(new FormData(ev.target))}`;
  });
  const range = { from, to, bucket };
  const [ex, models] = await Promise.all([
    get("/analytics/executions", range),
    get("/analytics/models", { ...range, group_by: "model" }),
  ]);
  // every bucket of the range (the API returns only buckets that hold executions)
  const step = { "1m": 60e3, "5m": 300e3, "15m": 900e3, "1h": 3600e3, "6h": 21600e3, "1d": 86400e3 }[bucket];
  const origin = Date.parse("2000-01-01T00:00:00Z"); // the API's date_bin origin
  const first = origin + Math.floor((Date.parse(from) - origin) / step) * step;
  const byTime = new Map(ex.rows.map((r) => [Date.parse(r.bucket), r]));
  const times = [];
  for (let t = first; t < Date.parse(to) && times.length < 2000; t += step) times.push(t);
  const rows = times.map((t) => byTime.get(t) || { throughput_per_s: 0, failure_rate: null, duration_p95_ms: null });
  const labels = times.map((t) => when(new Date(t).toISOString()));
  lineChart("throughput", document.getElementById("chart-throughput"), labels,
            [{ label: "executions/s", data: rows.map((r) => r.throughput_per_s), borderColor: "#4c7bd9" }], "per second");
  lineChart("failure", document.getElementById("chart-failure"), labels,
            [{ label: "failed / finished", data: rows.map((r) => r.failure_rate), borderColor: "#d64545" }], "rate");
  lineChart("p95", document.getElementById("chart-p95"), labels,
            [{ label: "p95", data: rows.map((r) => r.duration_p95_ms), borderColor: "#3aa76d" }], "ms");
  const buckets = [...new Set(models.rows.map((r) => r.bucket))].sort();
  const names = [...new Set(models.rows.map((r) => r.group))];
  window.flowlogCharts.cost = new Chart(document.getElementById("chart-cost"), {
    type: "bar",
    data: { labels: buckets.map(when), datasets: names.map((n, i) => ({
      label: n, backgroundColor: ["#4c7bd9", "#e0a800", "#3aa76d", "#d64545", "#8892a6"][i % 5],
      data: buckets.map((b) => models.rows.filter((r) => r.bucket === b && r.group === n)
                                   .reduce((s, r) => s + r.cost_usd, 0)) })) },
    options: { animation: false, responsive: true, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } },
  });
}

// --- router --------------------------------------------------------------------------
async function route() {
  leave.abort();
  leave = new AbortController();
  destroyCharts();
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/executions";
  if (!hasKey()) { fail({ status: 401, message: "no API key" }); return; }
  app.innerHTML = "<p class='muted'>loading…</p>";
  try {
    const m = path.match(/^\/executions\/(.+)$/);
    if (m) await detailView(decodeURIComponent(m[1]));
    else if (path === "/analytics") await analyticsView();
    else await executionsView();
    document.body.dataset.ready = path; // the browser test waits on this
  } catch (e) { fail(e); }
}

initKey();
document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setKey(document.getElementById("key-input").value.trim());
  route();
});
window.addEventListener("hashchange", route);
route();
