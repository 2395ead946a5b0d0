// The fleet as the page knows it: a snapshot from /ws/monitor, then every event after it (docs/ws.md).
// Pure: no DOM, no network. The same fold as emp/dashboard/state.py (apply_snapshot, apply_event),
// plus the counts per status, kept from the snapshot's complete counts and each job's moves.

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const ACTIVE = new Set(["assigned", "in_progress"]);
export const STATUSES = ["pending", "scheduled", "unworkable", "active", "completed", "failed", "cancelled"];

// Jobs kept in memory: every active one, and the newest ended or waiting ones up to this many
// (the snapshot lists at most 2,000 waiting and 500 ended; the counts stay exact without the rows).
export const MAX_JOBS = 5000;

const MACHINE_STATUS = {
  machine_startup: "starting",
  machine_ready: "ready",
  machine_failed: "failed",
  machine_shutdown: "offline",
};

function bucket(status) {
  return ACTIVE.has(status) ? "active" : status;
}

function num(value, fallback = 0) {
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

export function emptyState() {
  return {
    streamId: "0-0",
    skewMs: 0, // server clock minus this browser's clock, from the snapshot's `now`
    reason: "",
    note: "",
    counts: Object.fromEntries(STATUSES.map((s) => [s, 0])),
    jobs: new Map(),
    workers: new Map(),
    machines: new Map(),
    services: new Map(),
    instances: new Map(), // service instance id -> {status, machine_id, connector, message}
    log: [],
    figures: null, // from GET /api/stats: {per_minute: {completed, failed}, oldest_pending_s}
  };
}

// The header's figures the events do not carry: jobs ended per minute (the sparkline) and the
// oldest pending wait, as `emp watch` shows them, from GET /api/stats.
export function applyStats(state, doc) {
  const perMinute = doc && typeof doc.per_minute === "object" && doc.per_minute ? doc.per_minute : {};
  const list = (v) => (Array.isArray(v) ? v.map((n) => Math.max(0, Number(n) || 0)) : []);
  const oldest = doc ? Number(doc.oldest_pending_s) : NaN;
  state.figures = {
    completed: list(perMinute.completed),
    failed: list(perMinute.failed),
    oldestPendingS: Number.isFinite(oldest) ? oldest : null,
  };
}

function service(state, name) {
  let s = state.services.get(name);
  if (!s) {
    s = { name, pending: 0, unworkable: 0, signatures: 0 };
    state.services.set(name, s);
  }
  return s;
}

function worker(state, id) {
  if (!id) return null;
  let w = state.workers.get(id);
  if (!w) {
    w = { id, status: "idle", job: "", machine_id: "", services: [], completed: 0, failed: 0 };
    state.workers.set(id, w);
  }
  return w;
}

function note(state, text, ts) {
  state.log.unshift({ ts, text });
  if (state.log.length > 50) state.log.length = 50;
}

// A snapshot replaces the state. `previous` (the state before a re-snapshot) only lends the machines
// and workers the snapshot no longer lists: they are shown offline, greyed, not vanished.
export function applySnapshot(msg, previous = null) {
  const state = emptyState();
  state.streamId = String(msg.stream_id || "0-0");
  state.skewMs = msg.now ? num(msg.now) - Date.now() : 0;
  state.reason = String(msg.reason || "");
  state.note = String(msg.note || "");
  const counts = msg.counts || {};
  const done = counts.done || {};
  const services = msg.services || {};
  let pending = 0;
  for (const [name, q] of Object.entries(services)) {
    const s = service(state, name);
    s.pending = num(q.pending);
    s.unworkable = num(q.unworkable);
    s.signatures = num(q.signatures);
    pending += s.pending;
  }
  Object.assign(state.counts, {
    pending,
    scheduled: num(counts.scheduled),
    unworkable: num(counts.unworkable),
    active: num(counts.active),
    completed: num(done.completed),
    failed: num(done.failed),
    cancelled: num(done.cancelled),
  });
  for (const row of msg.jobs || []) {
    if (!row || !row.id) continue;
    state.jobs.set(String(row.id), {
      id: String(row.id),
      service: String(row.service || ""),
      status: String(row.status || ""),
      attempt: num(row.attempt),
      worker_id: String(row.worker_id || ""),
      machine_id: String(row.machine_id || ""),
      progress: row.status === "completed" ? 100 : num(row.progress),
      message: String(row.message || ""),
      failure_class: String(row.failure_class || ""),
      priority: num(row.priority, 50),
      created_at: row.created_at ?? null,
      started_at: row.started_at ?? row.assigned_at ?? null,
      finished_at: row.finished_at ?? null,
    });
  }
  for (const row of msg.workers || []) {
    if (!row || !row.id) continue;
    const w = worker(state, String(row.id));
    w.status = String(row.status || "idle");
    w.job = String(row.job || "");
    w.machine_id = String(row.machine_id || "");
    w.services = Array.isArray(row.services) ? row.services.map(String) : [];
    w.completed = num(row.completed);
    w.failed = num(row.failed);
  }
  for (const row of msg.machines || []) {
    const id = row && String(row.id || row.machine_id || "");
    if (!id) continue;
    const record = row.record && typeof row.record === "object" ? row.record : {};
    state.machines.set(id, { id, status: String(row.status || record.status || ""), record, message: "" });
  }
  if (previous) {
    for (const [id, m] of previous.machines) {
      if (!state.machines.has(id)) state.machines.set(id, { ...m, status: "offline" });
    }
    for (const [id, w] of previous.workers) {
      if (!state.workers.has(id)) state.workers.set(id, { ...w, status: "offline", job: "" });
    }
    state.instances = previous.instances;
    state.log = previous.log;
  }
  if (state.reason && state.reason !== "connect") note(state, `snapshot (${state.reason}): ${state.note}`, msg.now);
  return state;
}

export function applyMachines(state, rows) {
  // Fresh records from GET /api/machines (GPU readings move without events). A machine that is no
  // longer listed stays, greyed: offline, not vanished.
  const listed = new Set();
  for (const row of rows || []) {
    const id = row && String(row.id || "");
    if (!id) continue;
    listed.add(id);
    const record = row.record && typeof row.record === "object" ? row.record : {};
    const m = state.machines.get(id) || { id, message: "" };
    m.record = record;
    m.status = String(row.status || record.status || m.status || "");
    state.machines.set(id, m);
  }
  for (const m of state.machines.values()) if (!listed.has(m.id)) m.status = "offline";
}

// Move a job to `status`, keeping the counts per status and the per-service queue figures.
function move(state, job, status) {
  const before = job.status;
  if (before === status) return;
  if (before && state.counts[bucket(before)] !== undefined) state.counts[bucket(before)] -= 1;
  if (state.counts[bucket(status)] !== undefined) state.counts[bucket(status)] += 1;
  if (job.service) {
    const s = service(state, job.service);
    if (before === "pending") s.pending = Math.max(0, s.pending - 1);
    if (before === "unworkable") s.unworkable = Math.max(0, s.unworkable - 1);
    if (status === "pending") s.pending += 1;
    if (status === "unworkable") s.unworkable += 1;
  }
  job.status = status;
}

function free(state, workerId, jobId, outcome) {
  const w = worker(state, workerId);
  if (!w) return;
  if (w.job === jobId) {
    w.job = "";
    if (w.status === "busy") w.status = "idle";
  }
  if (outcome === "completed") w.completed += 1;
  else if (outcome === "failed") w.failed += 1;
}

function workerEvent(state, ev) {
  const w = worker(state, ev.worker);
  if (!w) return;
  const data = ev.data || {};
  if (ev.event === "worker_registered") {
    w.status = "idle";
    w.job = "";
    w.machine_id = String(data.machine_id || w.machine_id);
    if (typeof data.services === "string" && data.services) w.services = data.services.split(",");
  } else if (ev.event === "worker_offline") {
    w.status = "offline";
    w.job = "";
  } else if (ev.event === "worker_status" && typeof data.status === "string" && data.status) {
    w.status = data.status;
  }
}

function machineEvent(state, ev) {
  const data = ev.data || {};
  const id = String(ev.machine || data.machine_id || "");
  if (!id) return;
  const m = state.machines.get(id) || { id, status: "starting", record: {}, message: "" };
  m.status = MACHINE_STATUS[ev.event] || m.status;
  m.message = String(data.message || data.reason || "");
  state.machines.set(id, m);
  if (ev.event === "machine_ready") note(state, `machine ${id} ready in ${num(data.startup_s).toFixed(2)} s`, ev.ts);
  if (ev.event === "machine_failed") note(state, `machine ${id}: ${data.process || ""} failed: ${m.message}`, ev.ts);
  if (ev.event === "machine_shutdown") note(state, `machine ${id}: shutdown (${m.message})`, ev.ts);
}

function newJob(id, ev) {
  const data = ev.data || {};
  return {
    id,
    service: String(ev.service || data.service || ""),
    status: "",
    attempt: 0,
    worker_id: "",
    machine_id: "",
    progress: 0,
    message: "",
    failure_class: "",
    priority: num(data.priority, 50),
    created_at: ev.ts ?? null,
    started_at: null,
    finished_at: null,
  };
}

const JOB = {
  job_submitted(state, job) {
    move(state, job, "pending");
  },
  job_scheduled(state, job) {
    move(state, job, "scheduled");
  },
  job_assigned(state, job, ev) {
    move(state, job, ev.event === "job_started" ? "in_progress" : "assigned");
    if (ev.event === "job_assigned") {
      job.progress = 0;
      job.message = "";
    }
    job.started_at = ev.ts ?? job.started_at;
    job.finished_at = null;
    job.worker_id = ev.worker || job.worker_id;
    job.machine_id = ev.machine || job.machine_id;
    const w = worker(state, ev.worker);
    if (w) {
      w.status = "busy";
      w.job = job.id;
    }
  },
  job_progress(state, job, ev) {
    move(state, job, "in_progress");
    const data = ev.data || {};
    job.progress = Math.max(0, Math.min(100, num(data.progress, job.progress)));
    if (typeof data.message === "string") job.message = data.message;
  },
  job_completed(state, job, ev) {
    move(state, job, "completed");
    job.progress = 100;
    job.message = "";
    job.finished_at = ev.ts ?? null;
    free(state, ev.worker, job.id, "completed");
  },
  job_failed(state, job, ev) {
    const data = ev.data || {};
    move(state, job, "failed");
    job.failure_class = String(data.failure_class || "");
    job.message = String(data.error || "");
    job.finished_at = ev.ts ?? null;
    free(state, ev.worker, job.id, "failed");
    note(state, `${job.id} failed (${job.failure_class || "?"}): ${job.message}`, ev.ts);
  },
  job_retry(state, job, ev) {
    const data = ev.data || {};
    move(state, job, num(data.delay_ms) > 0 ? "scheduled" : "pending");
    job.failure_class = String(data.failure_class || "");
    job.message = String(data.error || "");
    job.finished_at = null;
    free(state, ev.worker, job.id, ev.worker ? "failed" : null);
  },
  job_requeued(state, job, ev) {
    move(state, job, "pending");
    job.progress = 0;
    free(state, ev.worker, job.id, null);
  },
  job_cancelled(state, job, ev) {
    move(state, job, "cancelled");
    job.finished_at = ev.ts ?? null;
    const reason = (ev.data || {}).reason;
    if (typeof reason === "string") job.message = reason;
    free(state, ev.worker || job.worker_id, job.id, null);
  },
  job_unworkable(state, job, ev) {
    move(state, job, "unworkable");
    job.worker_id = "";
    job.message = String((ev.data || {}).reason || "no live worker matches its requirements");
  },
};
JOB.job_started = JOB.job_assigned;
JOB.job_released = JOB.job_requeued;

// Fold one `event` message; returns the id of the job it changed (or "").
export function applyEvent(state, ev) {
  state.streamId = String(ev.id || state.streamId);
  const type = String(ev.event || "");
  if (type.startsWith("worker_")) {
    workerEvent(state, ev);
    return "";
  }
  if (type.startsWith("machine_")) {
    machineEvent(state, ev);
    return "";
  }
  if (type === "service_status") {
    const data = ev.data || {};
    if (data.id) {
      state.instances.set(String(data.id), {
        status: String(data.status || ""),
        machine_id: String(data.machine_id || ""),
        connector: String(data.connector || ""),
        message: String(data.message || ""),
      });
    }
    return "";
  }
  const handler = JOB[type];
  if (!ev.job || !handler) return "";
  const id = String(ev.job);
  let job = state.jobs.get(id);
  if (!job) {
    // A job the snapshot did not list (submitted since, or beyond its lists): follow it from now on.
    job = newJob(id, ev);
    // Not submitted since the snapshot: it was waiting beyond the snapshot's list (pending, as far
    // as the page can tell), so the counts move it from there.
    if (type !== "job_submitted") job.status = "pending";
    state.jobs.set(id, job);
    if (state.jobs.size > MAX_JOBS) evict(state);
  }
  if (ev.service && !job.service) job.service = String(ev.service);
  if (ev.attempt !== undefined && ev.attempt !== null && type !== "job_submitted") {
    job.attempt = Math.max(job.attempt, num(ev.attempt));
  }
  handler(state, job, ev);
  return id;
}

// Drop the oldest ended jobs, then the oldest waiting ones, until under MAX_JOBS (never an active job).
function evict(state) {
  const spare = [...state.jobs.values()]
    .filter((j) => !ACTIVE.has(j.status))
    .sort((a, b) => (TERMINAL.has(b.status) - TERMINAL.has(a.status)) || num(a.finished_at ?? a.created_at) - num(b.finished_at ?? b.created_at));
  for (const j of spare.slice(0, state.jobs.size - MAX_JOBS + 500)) state.jobs.delete(j.id);
}

export function successRate(counts) {
  const ended = counts.completed + counts.failed;
  return ended ? (100 * counts.completed) / ended : null;
}
