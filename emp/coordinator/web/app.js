// The web monitor: asks for the API token once (kept in this tab's sessionStorage), follows
// /ws/monitor (a snapshot, then events; a re-snapshot replaces the state), draws the panels at most
// a few times a second, and shows one job's detail with cancel and retry (docs/web.md).

import { $, clock, fill, h, safeLink } from "./dom.js";
import { ACTIVE, TERMINAL, applyEvent, applyMachines, applySnapshot, applyStats, emptyState } from "./state.js";
import { flowOfJob, renderAll, renderFlows } from "./view.js";

const TOKEN_KEY = "emp.token";
const NEEDS_TOKEN = document.body.dataset.auth === "token";
const MIN_FRAME_MS = 200; // at most 5 redraws a second, however busy the feed
const MACHINES_POLL_MS = 10000; // GPU readings change without events: re-read the machine records
const MAX_BACKOFF_MS = 15000;
const MAX_SHOWN_JSON = 100000; // characters of a payload or result shown in the detail

let token = sessionStorage.getItem(TOKEN_KEY) || "";
let state = emptyState();
let socket = null;
let backoff = 1000;
let machinesTimer = 0;
let detailId = "";
let detailTimer = 0;
let noticeTimer = 0;
// Flows (docs/web.md): a step's job id is `<flow id>.<step name>`, so a job seen in the feed names a
// candidate flow, read from GET /api/flows/{id} (at most FLOW_FETCHES_PER_TICK a tick; a candidate
// that is no flow is remembered, so it is asked once). A known flow is read again while it runs
// and one of its steps had an event; an ended one is kept (the newest KEEP_ENDED_FLOWS).
const FLOW_TICK_MS = 1000;
const FLOW_FETCHES_PER_TICK = 10;
const KEEP_ENDED_FLOWS = 5;
const NOT_FLOW_MAX = 5000;
const flows = new Map(); // flow id -> {doc, dirty}
const notFlows = new Set();
let snapshots = 0; // snapshots received; shown (data-snapshots on #conn) once drawn, for tests

class Unauthorized extends Error {}

// -- HTTP ------------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const sent = token; // requests run side by side: the first refusal clears `token` before the others see theirs
  if (sent) headers.set("Authorization", `Bearer ${sent}`);
  const resp = await fetch(path, { ...options, headers, cache: "no-store" });
  if (resp.status === 401) {
    askToken(sent ? "the coordinator refused this token" : "");
    throw new Unauthorized();
  }
  return resp;
}

async function errorText(resp) {
  try {
    const doc = await resp.json();
    return (doc && doc.error && (doc.error.message || doc.error)) || `HTTP ${resp.status}`;
  } catch {
    return `HTTP ${resp.status}`;
  }
}

// -- the token -------------------------------------------------------------------------------------

function askToken(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = "";
  closeSocket();
  clearInterval(machinesTimer);
  setConn("signed-out", "token needed");
  $("main").hidden = true;
  $("detail").hidden = true;
  detailId = "";
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("token").focus();
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const given = $("token").value.trim();
  if (!given) return;
  token = given;
  try {
    await api("/api/services"); // check the token before keeping it
  } catch (err) {
    if (err instanceof Unauthorized) return;
    // the coordinator did not answer: keep the token, the socket will retry
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  start();
});

$("logout").hidden = !NEEDS_TOKEN;
$("logout").addEventListener("click", () => askToken(""));

// -- the live feed ---------------------------------------------------------------------------------

function setConn(name, text) {
  $("conn").dataset.state = name;
  $("conn").textContent = text;
}

function closeSocket() {
  const ws = socket;
  socket = null; // its onclose sees it was replaced on purpose
  if (ws) ws.close();
}

function connect() {
  closeSocket();
  const url = new URL("/ws/monitor", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("access_token", token); // a browser cannot set headers on a WebSocket
  url.searchParams.set("batch", "1"); // events come as "events" messages, several a message (docs/ws.md)
  const ws = new WebSocket(url);
  socket = ws;
  let answered = false;
  setConn("connecting", "connecting");
  ws.onmessage = (event) => {
    if (socket !== ws) return;
    answered = true;
    backoff = 1000;
    onMessage(event.data);
  };
  ws.onclose = async () => {
    if (socket !== ws) return;
    socket = null;
    setConn("down", "reconnecting");
    if (!answered) {
      // A refused upgrade looks like any failure to the page: ask the API whether the token is the cause.
      try {
        await api("/api/services");
      } catch (err) {
        if (err instanceof Unauthorized) return;
      }
    }
    setTimeout(() => {
      if (socket === null && !$("main").hidden) connect();
    }, backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  };
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($("notice").hidden = true), 15000);
}

function onMessage(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return;
  }
  if (msg.type === "snapshot") {
    const previous = state.streamId === "0-0" && !state.workers.size ? null : state;
    state = applySnapshot(msg, previous);
    snapshots += 1;
    setConn("live", "live");
    if (msg.reason && msg.reason !== "connect" && msg.reason !== "request") {
      showNotice(`The view started over (${msg.reason}): ${msg.note || ""}`);
    }
    if (detailId) refreshDetailSoon(0);
    for (const job of state.jobs.values()) noteFlowJob(job.id, job.workflow_id);
  } else if (msg.type === "event" || msg.type === "events") {
    for (const ev of msg.type === "events" ? msg.events || [] : [msg]) {
      const changed = applyEvent(state, ev);
      if (changed) noteFlowJob(changed);
      if (changed && changed === detailId && ev.event !== "job_progress") refreshDetailSoon(300);
    }
  } else if (msg.type === "error") {
    showNotice(`monitor: ${msg.error}`);
  }
  scheduleRender();
}

// -- flows -----------------------------------------------------------------------------------------

function flowIdOf(jobId) {
  const dot = String(jobId).lastIndexOf(".");
  return dot > 0 ? String(jobId).slice(0, dot) : "";
}

function noteFlowJob(jobId, workflowId) {
  for (const fid of [flowIdOf(jobId), workflowId || ""]) {
    if (!fid || notFlows.has(fid)) continue;
    const known = flows.get(fid);
    if (known) known.dirty = true;
    else flows.set(fid, { doc: null, dirty: true });
  }
}

async function loadFlow(fid) {
  const entry = flows.get(fid);
  if (!entry) return;
  entry.dirty = false;
  const resp = await api(`/api/flows/${encodeURIComponent(fid)}`);
  if (resp.status === 404) {
    flows.delete(fid);
    if (notFlows.size >= NOT_FLOW_MAX) notFlows.clear();
    if (!entry.doc) notFlows.add(fid);
    return;
  }
  if (!resp.ok) {
    entry.dirty = true; // read again next tick
    return;
  }
  entry.doc = await resp.json();
  flows.delete(fid); // to the end of the line: the next tick reads the others first
  flows.set(fid, entry);
  if (entry.doc.status === "running") entry.dirty = true; // progress moves without a feed event per step
}

// The running flows the feed has not named yet (submitted before the page opened, or quiet): listed
// from GET /api/flows every FLOW_LIST_EVERY ticks, then read like the others.
const FLOW_LIST_EVERY = 5;
let flowTicks = 0;

async function listRunningFlows() {
  const resp = await api("/api/flows?limit=10&steps=0");
  if (!resp.ok) return;
  const doc = await resp.json();
  for (const f of doc.flows || []) {
    if (f && f.id && !flows.has(f.id)) flows.set(f.id, { doc: null, dirty: true });
  }
}

async function flowTick() {
  if (document.hidden || $("main").hidden) return;
  if (flowTicks++ % FLOW_LIST_EVERY === 0) {
    try {
      await listRunningFlows();
    } catch {
      // the next listing tries again
    }
  }
  const due = [...flows.entries()].filter(([, f]) => f.dirty).slice(0, FLOW_FETCHES_PER_TICK);
  if (!due.length) return;
  try {
    await Promise.all(due.map(([fid]) => loadFlow(fid)));
  } catch {
    return; // the next tick tries again
  }
  const ended = [...flows.entries()].filter(([, f]) => f.doc && f.doc.status !== "running");
  for (const [fid] of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED_FLOWS))) flows.delete(fid);
  scheduleRender();
  if (detailId && due.some(([fid]) => fid === flowIdOf(detailId))) drawDetailFlow();
}

setInterval(flowTick, FLOW_TICK_MS);

function drawDetailFlow() {
  const entry = flows.get(flowIdOf(detailId));
  fill($("detail-flow"), entry && entry.doc ? flowOfJob(entry.doc, detailId) : "");
}

async function pollMachines() {
  if (document.hidden || $("main").hidden) return;
  try {
    const [machines, figures] = await Promise.all([api("/api/machines"), api("/api/stats")]);
    if (machines.ok) applyMachines(state, (await machines.json()).machines);
    if (figures.ok) applyStats(state, await figures.json());
    scheduleRender();
  } catch {
    // the next poll tries again; the socket shows whether the coordinator is there
  }
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  connect();
  clearInterval(machinesTimer);
  machinesTimer = setInterval(pollMachines, MACHINES_POLL_MS);
  pollMachines();
}

$("refresh").addEventListener("click", () => {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "snapshot" }));
});

// -- drawing ---------------------------------------------------------------------------------------

let frameQueued = false;
let lastFrame = 0;

function scheduleRender() {
  if (frameQueued) return;
  frameQueued = true;
  const wait = Math.max(0, lastFrame + MIN_FRAME_MS - performance.now());
  setTimeout(
    () =>
      requestAnimationFrame(() => {
        frameQueued = false;
        lastFrame = performance.now();
        renderAll(state);
        renderFlows(flows);
        drawDetailLive();
        $("conn").dataset.snapshots = String(snapshots);
      }),
    wait,
  );
}

setInterval(() => {
  if (!$("main").hidden && [...state.jobs.values()].some((j) => ACTIVE.has(j.status))) scheduleRender(); // elapsed times
}, 1000);

// -- a job's detail --------------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const target = event.target instanceof Element ? event.target.closest("[data-open]") : null;
  if (target) openDetail(target.dataset.open);
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeDetail();
});

$("detail-close").addEventListener("click", closeDetail);

function closeDetail() {
  detailId = "";
  $("detail").hidden = true;
}

function openDetail(id) {
  detailId = id;
  $("detail").hidden = false;
  $("detail-id").textContent = id;
  $("detail-answer").textContent = "";
  fill($("detail-body"), h("p", { class: "muted" }, "loading…"));
  fill($("detail-flow"));
  drawDetailLive();
  refreshDetailSoon(0);
}

function refreshDetailSoon(ms) {
  if (detailTimer) return;
  detailTimer = setTimeout(() => {
    detailTimer = 0;
    loadDetail();
  }, ms);
}

async function loadDetail() {
  const id = detailId;
  if (!id) return;
  let resp;
  try {
    resp = await api(`/api/jobs/${encodeURIComponent(id)}?events=50`);
  } catch (err) {
    if (!(err instanceof Unauthorized) && id === detailId) fill($("detail-body"), h("p", { class: "error" }, "the coordinator did not answer"));
    return;
  }
  if (id !== detailId) return;
  if (!resp.ok) {
    fill($("detail-body"), h("p", { class: "error" }, await errorText(resp)));
    return;
  }
  const job = await resp.json();
  if (id !== detailId) return;
  fill($("detail-body"), detailBody(job));
  noteFlowJob(id);
  drawDetailFlow();
  drawDetailLive(job.status);
}

// What the live feed says of the open job: its status, progress and which buttons apply.
function drawDetailLive(fetchedStatus) {
  if (!detailId) return;
  const job = state.jobs.get(detailId);
  const status = job ? job.status : fetchedStatus || $("detail-status").dataset.status || "";
  $("detail-status").textContent = status || "?";
  $("detail-status").dataset.status = status;
  $("detail-progress").value = job ? job.progress : status === "completed" ? 100 : 0;
  $("detail-cancel").disabled = !status || TERMINAL.has(status);
  $("detail-retry").disabled = !["failed", "cancelled", "unworkable"].includes(status);
}

async function act(verb) {
  const id = detailId;
  if (!id) return;
  $("detail-answer").textContent = `${verb}…`;
  let resp;
  try {
    resp = await api(`/api/jobs/${encodeURIComponent(id)}/${verb}`, { method: "POST" });
  } catch (err) {
    if (!(err instanceof Unauthorized)) $("detail-answer").textContent = `${verb}: the coordinator did not answer`;
    return;
  }
  if (id !== detailId) return;
  if (!resp.ok) {
    $("detail-answer").textContent = `${verb} refused: ${await errorText(resp)}`;
    return;
  }
  const doc = await resp.json();
  if (verb === "cancel") {
    $("detail-answer").textContent = doc.cancelled ? `cancel sent (it was ${doc.previous_status})` : "not cancelled: the job had already ended";
  } else {
    $("detail-answer").textContent = `retry: the job is ${doc.status} again`;
  }
}

$("detail-cancel").addEventListener("click", () => act("cancel"));
$("detail-retry").addEventListener("click", () => act("retry"));

function json(value) {
  let text = JSON.stringify(value, null, 2) ?? "null";
  if (text.length > MAX_SHOWN_JSON) text = `${text.slice(0, MAX_SHOWN_JSON)}\n… (${text.length - MAX_SHOWN_JSON} more characters)`;
  return h("pre", { class: "json" }, text);
}

function fieldsTable(job) {
  const rows = [
    ["service", job.service],
    ["priority", job.priority],
    ["attempt", `${job.attempt} of ${job.max_attempts}`],
    ["worker", job.worker_id],
    ["machine", job.machine_id],
    ["customer", job.customer_id],
    ["workflow", job.workflow_id],
    ["created", clock(job.created_at)],
    ["started", clock(job.started_at)],
    ["finished", clock(job.finished_at)],
    ["message", job.message],
    ["failure class", job.failure_class],
    ["error", job.error],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  return h("table", { class: "fields" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, String(v))))));
}

function attemptsTable(job) {
  const history = Array.isArray(job.history) ? job.history : [];
  const rows = history.map((a) =>
    h(
      "tr",
      { data: { attempt: a.attempt } },
      h("td", { class: "num" }, String(a.attempt ?? "")),
      h("td", { class: "mono" }, String(a.worker_id || "")),
      h("td", {}, String(a.outcome || "")),
      h("td", {}, String(a.failure_class || "")),
      h("td", { class: "msg" }, String(a.error || "")),
      h("td", {}, clock(a.started_at)),
      h("td", {}, clock(a.ended_at)),
    ),
  );
  if (job.attempt && !history.some((a) => a.attempt === job.attempt)) {
    rows.push(
      h(
        "tr",
        { data: { attempt: job.attempt } },
        h("td", { class: "num" }, String(job.attempt)),
        h("td", { class: "mono" }, String(job.worker_id || "")),
        h("td", {}, `${job.status} (current)`),
        h("td", {}, String(job.failure_class || "")),
        h("td", { class: "msg" }, String(job.error || "")),
        h("td", {}, clock(job.started_at)),
        h("td", {}, clock(job.finished_at)),
      ),
    );
  }
  if (!rows.length) return h("p", { class: "muted" }, "not run yet");
  const head = h("thead", {}, h("tr", {}, ["#", "worker", "outcome", "failure class", "error", "started", "ended"].map((t) => h("th", {}, t))));
  return h("table", { class: "grid" }, head, h("tbody", {}, rows));
}

function outputsList(result) {
  const outputs = result && typeof result === "object" && Array.isArray(result.outputs) ? result.outputs : [];
  if (!outputs.length) return h("p", { class: "muted" }, "none");
  return h(
    "ul",
    { class: "plain" },
    outputs.slice(0, 200).map((o) => h("li", {}, safeLink(o.url, String(o.name || o.url)), h("span", { class: "muted" }, ` ${o.content_type || ""} ${o.size ?? ""} bytes`))),
  );
}

function eventsTable(events) {
  if (!Array.isArray(events) || !events.length) return h("p", { class: "muted" }, "none");
  const rows = [...events].reverse().map((e) =>
    h(
      "tr",
      {},
      h("td", {}, clock(e.ts)),
      h("td", {}, String(e.type || "")),
      h("td", { class: "num" }, String(e.attempt ?? "")),
      h("td", { class: "mono" }, String(e.worker || "")),
      h("td", { class: "mono msg" }, JSON.stringify(e.data ?? {})),
    ),
  );
  const head = h("thead", {}, h("tr", {}, ["time", "event", "#", "worker", "data"].map((t) => h("th", {}, t))));
  return h("table", { class: "grid" }, head, h("tbody", {}, rows));
}

function detailBody(job) {
  const result = job.result;
  let rest = result;
  if (result && typeof result === "object" && !Array.isArray(result) && "outputs" in result) {
    rest = { ...result };
    delete rest.outputs;
  }
  return [
    fieldsTable(job),
    h("h3", {}, "outputs"),
    outputsList(result),
    h("h3", {}, "attempts"),
    attemptsTable(job),
    h("h3", {}, "payload"),
    json(job.payload),
    job.requirements ? [h("h3", {}, "requirements"), json(job.requirements)] : "",
    result !== null && result !== undefined ? [h("h3", {}, "result"), json(rest)] : "",
    h("h3", {}, "events (newest first)"),
    eventsTable(job.events),
  ];
}

// -- start -----------------------------------------------------------------------------------------

if (NEEDS_TOKEN && !token) askToken("");
else start();
