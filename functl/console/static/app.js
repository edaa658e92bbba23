// The kubefuncs console: plain ES modules over the v1 API, no build step.
import { api, el, fmt } from "./common.js";
import { deployForm } from "./wizard.js";

// uPlot comes from npm (make setup); without it the pages work and draw no charts
const uPlot = await import("/vendor/uplot/dist/uPlot.esm.js").then((m) => m.default, () => null);

const POLL_MS = 2000;
const view = document.getElementById("view");
const statusLine = document.getElementById("status");
let timer = null;
let charts = [];

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem("kf-api-key", document.getElementById("api-key").value);
  document.getElementById("login").hidden = true;
  route();
});

function every(fn) {
  const tick = async () => {
    try {
      await fn();
      statusLine.textContent = "";
    } catch (e) {
      statusLine.textContent = e.message;
    }
  };
  tick();
  timer = setInterval(tick, POLL_MS);
}

// -- the function table -----------------------------------------------------------------

function functionRow(f) {
  const live = f.live || {};
  const bus = f.bus || {};
  const replicas = f.replicas.desired === null ? "–" : `${f.replicas.ready}/${f.replicas.desired}`;
  return el("tr", { class: "clickable", "data-name": f.name, onclick: () => (location.hash = `#/f/${encodeURIComponent(f.name)}`) },
    el("td", {}, el("a", { href: `#/f/${encodeURIComponent(f.name)}` }, f.name)),
    el("td", {}, f.topic === f.channel ? f.topic : `${f.topic} / ${f.channel}`),
    el("td", { class: "num" }, replicas),
    el("td", { class: "num" }, fmt(bus.depth)),
    el("td", { class: "num" }, fmt(bus.in_flight)),
    el("td", { class: "num dead" }, fmt(bus.dead)),
    el("td", { class: "num" }, fmt(live.invocations_per_s)),
    el("td", { class: "num" }, fmt(live.errors_per_s)),
    el("td", { class: "num" }, fmt(live.p50_ms, 1)),
    el("td", { class: "num" }, fmt(live.p99_ms, 1)));
}

function showTable() {
  const heads = ["function", "topic / channel", "replicas", "depth", "in flight", "dead", "calls/s", "errors/s", "p50 ms", "p99 ms"];
  const body = el("tbody");
  const deployLink = el("a", { href: "#/new", id: "new-function", hidden: "" }, "Deploy a function");
  view.replaceChildren(
    el("h1", {}, "Functions"),
    deployLink,
    el("table", { id: "functions" }, el("thead", {}, el("tr", {}, ...heads.map((h, i) => el("th", { class: i > 1 ? "num" : null }, h)))), body));
  every(async () => {
    const data = await api("GET", "/api/v1/functions");
    document.getElementById("mode").textContent = data.writable ? `${data.mode}` : `${data.mode}, read-only`;
    deployLink.hidden = !data.writable;
    body.replaceChildren(...data.functions.map(functionRow));
  });
}

// -- one function -----------------------------------------------------------------------

const CHARTS = [
  ["Invocations and errors per second", ["invocations_per_s", "errors_per_s"]],
  ["Latency (ms)", ["p50_ms", "p99_ms"]],
  ["Queue", ["depth", "dead"]],
  ["Replicas", ["ready", "desired"]],
];
const COLORS = ["#2563eb", "#c0392b"];

function makeCharts(box) {
  if (uPlot === null) {
    box.append(el("p", { class: "muted" }, "charts need uPlot: run make setup (npm ci in functl/console)"));
    return;
  }
  charts = CHARTS.map(([title, keys]) => {
    const holder = el("div", { class: "chart" }, el("h3", {}, title));
    box.append(holder);
    const series = [{}, ...keys.map((k, i) => ({ label: k, stroke: COLORS[i], width: 2, spanGaps: true }))];
    const plot = new uPlot({ width: 500, height: 180, series, axes: [{}, { size: 50 }] }, [[], ...keys.map(() => [])], holder);
    return { plot, keys };
  });
}

function updateCharts(points) {
  const xs = points.map((p) => p.t);
  for (const { plot, keys } of charts) plot.setData([xs, ...keys.map((k) => points.map((p) => p[k]))]);
}

function headersFrom(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf(":");
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function invokeForm(name) {
  const result = el("div", { class: "result", id: "invoke-result" });
  const form = el("form", { class: "panel", id: "invoke-form" },
    el("div", { class: "row" },
      el("select", { name: "method" }, ...["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => el("option", {}, m))),
      el("input", { name: "path", value: "/", size: 40, "aria-label": "path" }),
      el("button", { type: "submit" }, "Invoke")),
    el("textarea", { name: "headers", rows: 2, placeholder: "Header: value (one a line)" }),
    el("textarea", { name: "body", rows: 3, placeholder: "body" }),
    result);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fd = new FormData(form);
    const request = { http: { method: fd.get("method"), path: fd.get("path"), headers: headersFrom(fd.get("headers")), body: fd.get("body") } };
    result.replaceChildren(el("span", { class: "muted" }, "calling…"));
    try {
      const r = await api("POST", `/api/v1/functions/${encodeURIComponent(name)}/invoke`, request);
      const status = r.outcome === "error" ? `error ${r.error.type}` : String(r.status ?? "reply");
      const shown = r.outcome === "error" ? r.error.message : r.outcome === "http" ? r.body : JSON.stringify(r.reply);
      result.replaceChildren(
        el("div", {}, "status ", el("b", { id: "invoke-status" }, status), ` in ${fmt(r.duration_ms, 1)} ms`),
        el("pre", { id: "invoke-headers" }, JSON.stringify(r.headers || {}, null, 1)),
        el("pre", { id: "invoke-body" }, shown));
    } catch (e) {
      result.replaceChildren(el("span", { class: "error" }, e.message));
    }
  });
  return form;
}

function deadLetters(name) {
  const list = el("tbody");
  const base = `/api/v1/functions/${encodeURIComponent(name)}/dead-letters`;
  const refresh = async () => {
    const data = await api("GET", base);
    list.replaceChildren(...data.dead_letters.map((d) => el("tr", { "data-id": d.id },
      el("td", {}, d.time), el("td", {}, d.reason), el("td", { class: "num" }, String(d.attempt)),
      el("td", {}, el("code", {}, JSON.stringify(d.payload ?? d.undecodable ?? null))),
      el("td", {}, el("button", { class: "replay", onclick: async () => { await api("POST", base, { ids: [d.id] }); await refresh(); } }, "Replay")))));
    if (!data.dead_letters.length) list.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no dead letters")));
  };
  const box = el("div", { id: "dead-letters" },
    el("div", { class: "row" },
      el("button", { id: "replay-all", onclick: async () => { await api("POST", base, {}); await refresh(); } }, "Replay all"), " ",
      el("button", { id: "purge-all", class: "danger", onclick: async () => { if (confirm("Purge every dead letter?")) { await api("DELETE", base); await refresh(); } } }, "Purge all")),
    el("table", {}, el("thead", {}, el("tr", {}, ...["time", "reason", "attempt", "payload", ""].map((h) => el("th", {}, h)))), list));
  return { box, refresh };
}

async function showFunction(name) {
  const fn = await api("GET", `/api/v1/functions/${encodeURIComponent(name)}`);
  const chartBox = el("div", { class: "charts" });
  const dead = deadLetters(name);
  const firstRoute = (fn.spec.routes || [])[0];
  view.replaceChildren(
    el("h1", {}, el("a", { href: "#/" }, "Functions"), " / ", fn.name),
    el("p", { class: "muted" }, `topic ${fn.topic}, channel ${fn.channel}, ${fn.spec.handler || (fn.spec.command || []).join(" ") || fn.spec.image || ""}`),
    chartBox,
    el("h2", {}, "Test invocation"), invokeForm(name),
    el("h2", {}, "Dead letters"), dead.box,
    el("h2", {}, "Definition"),
    fn.origin === "file"
      ? el("div", {}, el("p", { class: "muted" }, "read-only: no cluster configured (edit the functions.yaml)"), el("pre", { id: "definition" }, JSON.stringify(fn.source, null, 2)))
      : deployForm(name, fn.source, fn.spec));
  if (firstRoute) document.querySelector("#invoke-form input[name=path]").value = firstRoute.prefix;
  makeCharts(chartBox);
  await dead.refresh();
  every(async () => updateCharts((await api("GET", `/api/v1/functions/${encodeURIComponent(name)}/metrics?window=15m`)).points));
}

function showNew() {
  view.replaceChildren(el("h1", {}, el("a", { href: "#/" }, "Functions"), " / deploy"), deployForm(null, null));
}

function route() {
  clearInterval(timer);
  charts.forEach(({ plot }) => plot.destroy());
  charts = [];
  const [, page, name] = location.hash.split("/");
  const shown = page === "f" && name ? showFunction(decodeURIComponent(name)) : page === "new" ? showNew() : showTable();
  Promise.resolve(shown).catch((e) => view.replaceChildren(el("p", { class: "error" }, e.message)));
}

window.addEventListener("hashchange", route);
route();
