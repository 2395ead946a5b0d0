// Drawing the state: one function per panel, each rebuilding its panel from the state (bounded
// lists, so a frame costs the same whatever the queue depth). Text only, through dom.js.

import { $, clock, duration, fill, h, progressBar } from "./dom.js";
import { ACTIVE, STATUSES, TERMINAL, successRate } from "./state.js";

export const TOP_ACTIVE = 50;
export const TOP_RECENT = 25;
export const TOP_UNWORKABLE = 20;
export const TOP_WORKERS = 32; // per machine card

function statusBadge(status) {
  return h("span", { class: "status", data: { status } }, status || "?");
}

// A job id that opens its detail: app.js listens for clicks on [data-open] once, on the document,
// so a redraw between press and release does not lose the click.
function jobLink(id) {
  return h("button", { type: "button", class: "link mono", data: { open: id } }, id);
}

export function renderHeader(state) {
  const c = state.counts;
  fill(
    $("totals"),
    STATUSES.map((s) => h("span", { class: "chip", data: { status: s, count: c[s] } }, h("b", {}, String(c[s])), ` ${s}`)),
  );
  const rate = successRate(c);
  const parts = [rate === null ? "success rate: -" : `success rate: ${rate.toFixed(1)}%`];
  const f = state.figures;
  if (f) {
    parts.push(`oldest pending ${f.oldestPendingS === null ? "-" : duration(f.oldestPendingS * 1000)}`);
    parts.push(`completed/min ${sparkline(f.completed)}`, `failed/min ${sparkline(f.failed)}`);
  }
  $("rate").textContent = parts.join(" · ");
}

const BARS = "▁▂▃▄▅▆▇█";

// One bar a minute, the oldest first, scaled to the largest (as `emp watch` draws it), then the last
// minute's count.
export function sparkline(values) {
  if (!values.length) return "-";
  const top = Math.max(...values);
  const bars = values.map((v) => (top === 0 ? BARS[0] : BARS[Math.min(BARS.length - 1, Math.round((v / top) * (BARS.length - 1)))]));
  return `${bars.join("")} ${values[values.length - 1]}`;
}

function gpuLine(g) {
  const used = g.memory_used_mb !== null && g.memory_used_mb !== undefined ? `${(g.memory_used_mb / 1024).toFixed(1)}/` : "";
  const mem = `${used}${((g.memory_total_mb || 0) / 1024).toFixed(0)} GB`;
  const util = g.utilization_pct !== null && g.utilization_pct !== undefined ? `${g.utilization_pct}%` : "-";
  const temp = g.temperature_c !== null && g.temperature_c !== undefined ? `${g.temperature_c}°C` : "";
  return h(
    "li",
    { class: "gpu" },
    h("span", { class: "mono" }, `gpu${g.index ?? "?"}`),
    ` ${g.name || "?"}${g.fake ? " (fake)" : ""} `,
    progressBar(g.utilization_pct || 0, util),
    ` ${mem} ${temp}`,
  );
}

function workerRow(state, w, now) {
  const job = w.job ? state.jobs.get(w.job) : null;
  const elapsed = job && job.started_at ? duration(now - job.started_at) : "";
  return h(
    "li",
    { class: "worker", data: { worker: w.id, status: w.status } },
    h("span", { class: "mono" }, w.id),
    " ",
    statusBadge(w.status),
    w.job ? [" ", jobLink(w.job), " ", progressBar(job ? job.progress : 0), ` ${elapsed}`] : "",
    h("span", { class: "muted" }, ` ✓${w.completed} ✗${w.failed}`),
  );
}

export function renderMachines(state, now) {
  // Workers grouped by machine; workers of a machine without an agent record get a card of their own.
  const byMachine = new Map();
  for (const w of state.workers.values()) {
    const key = w.machine_id || "(no machine id)";
    if (!byMachine.has(key)) byMachine.set(key, []);
    byMachine.get(key).push(w);
  }
  const ids = new Set([...state.machines.keys(), ...byMachine.keys()]);
  const cards = [];
  for (const id of [...ids].sort()) {
    const m = state.machines.get(id) || { id, status: "", record: {}, message: "" };
    const workers = (byMachine.get(id) || []).sort((a, b) => a.id.localeCompare(b.id));
    const live = workers.filter((w) => w.status !== "offline");
    const offline = m.status === "offline" || (!state.machines.has(id) && workers.length > 0 && live.length === 0);
    const rec = m.record || {};
    const gpus = (rec.gpus && Array.isArray(rec.gpus.gpus) ? rec.gpus.gpus : []).slice(0, 16);
    const host = rec.host && typeof rec.host === "object" ? rec.host : {};
    const platform = [host.platform, host.provider, host.hostname].filter((x) => typeof x === "string" && x).join(" ");
    const uptime = rec.started_at && !offline ? duration(now - Number(rec.started_at)) : "";
    const procs = Array.isArray(rec.processes) ? rec.processes.slice(0, 16) : [];
    const instances = [...state.instances.entries()].filter(([, i]) => i.machine_id === id).slice(0, 16);
    cards.push(
      h(
        "article",
        { class: offline ? "card offline" : "card", data: { machine: id } },
        h("h3", {}, h("span", { class: "mono" }, id), " ", statusBadge(offline ? "offline" : m.status || (state.machines.has(id) ? "?" : "workers only"))),
        h("p", { class: "muted" }, [platform, uptime ? `up ${uptime}` : "", m.message].filter(Boolean).join(" · ")),
        gpus.length ? h("ul", { class: "gpus" }, gpus.map(gpuLine)) : "",
        procs.length || instances.length
          ? h(
              "p",
              { class: "services" },
              procs.map((p) => h("span", { class: "svc", data: { state: String(p.state || "") } }, `${p.name}: ${p.state}`)),
              instances.map(([sid, i]) => h("span", { class: "svc", data: { state: i.status } }, `${sid}: ${i.status}`)),
            )
          : "",
        h(
          "ul",
          { class: "workers" },
          workers.slice(0, TOP_WORKERS).map((w) => workerRow(state, w, now)),
          workers.length > TOP_WORKERS ? h("li", { class: "muted" }, `… ${workers.length - TOP_WORKERS} more workers`) : "",
        ),
      ),
    );
  }
  fill($("machines"), cards.length ? cards : h("p", { class: "muted" }, "no machine or worker yet"));
  const live = [...state.workers.values()].filter((w) => w.status !== "offline").length;
  $("machines-count").textContent = `${state.machines.size} machines, ${live} live workers`;
}

export function renderQueues(state) {
  const rows = [...state.services.values()].sort((a, b) => b.pending - a.pending || a.name.localeCompare(b.name));
  fill(
    $("queues"),
    h("thead", {}, h("tr", {}, h("th", {}, "service"), h("th", {}, "pending"), h("th", {}, "unworkable"), h("th", {}, "signatures"))),
    h(
      "tbody",
      {},
      rows.length
        ? rows.map((s) =>
            h("tr", { data: { service: s.name } }, h("td", {}, s.name), h("td", { class: "num" }, String(s.pending)), h("td", { class: "num" }, String(s.unworkable)), h("td", { class: "num" }, String(s.signatures))),
          )
        : h("tr", {}, h("td", { colspan: 4, class: "muted" }, "no queue")),
    ),
  );
  const stuck = [...state.jobs.values()].filter((j) => j.status === "unworkable").slice(0, TOP_UNWORKABLE);
  fill(
    $("unworkable"),
    stuck.length
      ? h("ul", { class: "plain" }, stuck.map((j) => h("li", { data: { job: j.id } }, jobLink(j.id), ` ${j.service}: `, h("span", { class: "muted" }, j.message || "no live worker matches its requirements"))))
      : h("p", { class: "muted" }, state.counts.unworkable ? `${state.counts.unworkable} (not listed)` : "none"),
  );
}

export function renderActive(state, now) {
  const jobs = [...state.jobs.values()].filter((j) => ACTIVE.has(j.status));
  jobs.sort((a, b) => (a.started_at || 0) - (b.started_at || 0) || a.id.localeCompare(b.id));
  const head = h("thead", {}, h("tr", {}, ["job", "service", "status", "progress", "worker", "attempt", "elapsed", "eta", "message"].map((t) => h("th", {}, t))));
  const rows = jobs.slice(0, TOP_ACTIVE).map((j) => {
    const elapsed = j.started_at ? now - j.started_at : null;
    const eta = elapsed && j.progress > 0 && j.progress < 100 ? (elapsed * (100 - j.progress)) / j.progress : null;
    return h(
      "tr",
      { data: { job: j.id, status: j.status } },
      h("td", {}, jobLink(j.id)),
      h("td", {}, j.service),
      h("td", {}, statusBadge(j.status)),
      h("td", {}, progressBar(j.progress)),
      h("td", { class: "mono" }, j.worker_id),
      h("td", { class: "num" }, String(j.attempt)),
      h("td", {}, duration(elapsed)),
      h("td", {}, duration(eta)),
      h("td", { class: "msg" }, j.message),
    );
  });
  fill($("active"), head, h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "no job running"))));
  $("active-count").textContent = jobs.length > TOP_ACTIVE ? `(${TOP_ACTIVE} of ${jobs.length})` : `(${jobs.length})`;
}

export function renderRecent(state) {
  const jobs = [...state.jobs.values()].filter((j) => TERMINAL.has(j.status));
  jobs.sort((a, b) => (b.finished_at || 0) - (a.finished_at || 0) || a.id.localeCompare(b.id));
  const head = h("thead", {}, h("tr", {}, ["finished", "job", "service", "status", "duration", "attempt", "failure class", "message"].map((t) => h("th", {}, t))));
  const rows = jobs.slice(0, TOP_RECENT).map((j) =>
    h(
      "tr",
      { data: { job: j.id, status: j.status } },
      h("td", {}, clock(j.finished_at)),
      h("td", {}, jobLink(j.id)),
      h("td", {}, j.service),
      h("td", {}, statusBadge(j.status)),
      h("td", {}, j.started_at && j.finished_at ? duration(j.finished_at - j.started_at) : ""),
      h("td", { class: "num" }, String(j.attempt)),
      h("td", {}, j.failure_class),
      h("td", { class: "msg" }, j.message),
    ),
  );
  fill($("recent"), head, h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "nothing ended yet"))));
}

export function renderLog(state) {
  fill($("log"), state.log.slice(0, 20).map((l) => h("li", {}, h("span", { class: "muted" }, clock(l.ts)), " ", l.text)));
}

export function renderAll(state) {
  const now = Date.now() + state.skewMs;
  renderHeader(state);
  renderMachines(state, now);
  renderQueues(state);
  renderActive(state, now);
  renderRecent(state);
  renderLog(state);
}

// -- flows -----------------------------------------------------------------------------------------

export const TOP_FLOWS = 10;
export const TOP_FLOW_STEPS = 20;

// The flows the page knows (app.js reads them from GET /api/flows/{id}): the ones not ended first,
// then the ones that ended lately; each step with its state and progress, a link to its job.
export function renderFlows(flows) {
  const all = [...flows.values()].filter((f) => f.doc);
  const open = all.filter((f) => f.doc.status === "running").sort((a, b) => (a.doc.created_at || 0) - (b.doc.created_at || 0) || (a.doc.id < b.doc.id ? -1 : 1));
  const shown = [...open, ...all.filter((f) => f.doc.status !== "running").reverse()].slice(0, TOP_FLOWS);
  $("flows-count").textContent = `${open.length} running` + (all.length > shown.length ? ` (${all.length - shown.length} more)` : "");
  if (!shown.length) {
    fill($("flows"), h("p", { class: "muted" }, "no flow seen since this page opened"));
    return;
  }
  fill(
    $("flows"),
    shown.map((f) => {
      const steps = f.doc.steps || [];
      const ended = steps.filter((s) => TERMINAL.has(s.status) || s.status === "expired").length;
      return h(
        "div",
        { class: "flow", data: { flow: f.doc.id, state: f.doc.status } },
        h("h3", {}, h("span", { class: "mono" }, f.doc.id), " ", statusBadge(f.doc.status), h("span", { class: "muted" }, ` ${ended}/${steps.length} ended`)),
        h(
          "table",
          { class: "grid" },
          h(
            "tbody",
            {},
            steps.slice(0, TOP_FLOW_STEPS).map((s) =>
              h(
                "tr",
                { data: { step: s.name, status: s.status } },
                h("td", {}, jobLink(s.id)),
                h("td", {}, statusBadge(s.status)),
                h("td", {}, ACTIVE.has(s.status) || s.status === "completed" ? progressBar(s.status === "completed" ? 100 : s.progress) : ""),
                h("td", { class: "muted" }, (s.depends_on || []).map((e) => (e.on === "completed" ? e.step : `${e.step} (${e.on})`)).join(", ")),
              ),
            ),
            steps.length > TOP_FLOW_STEPS ? h("tr", {}, h("td", { class: "muted" }, `+${steps.length - TOP_FLOW_STEPS} more steps`)) : "",
          ),
        ),
      );
    }),
  );
}

// The flow part of a job's detail: its flow, parents and children (from the flow's steps).
export function flowOfJob(flow, jobId) {
  const steps = (flow && flow.steps) || [];
  const me = steps.find((s) => s.id === jobId);
  if (!me) return "";
  const byName = new Map(steps.map((s) => [s.name, s]));
  const parents = (me.depends_on || []).map((e) => byName.get(e.step)).filter(Boolean);
  const children = steps.filter((s) => (s.depends_on || []).some((e) => e.step === me.name));
  const links = (list) => (list.length ? list.map((s) => [jobLink(s.id), " ", statusBadge(s.status), " "]) : h("span", { class: "muted" }, "none"));
  return h(
    "div",
    { class: "flow-of", data: { flow: flow.id } },
    h("h3", {}, "flow"),
    h("p", {}, h("span", { class: "mono" }, flow.id), " ", statusBadge(flow.status), ` step ${me.name}`),
    h("p", { class: "parents" }, "parents: ", links(parents)),
    h("p", { class: "children" }, "children: ", links(children)),
  );
}
