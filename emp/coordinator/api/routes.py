"""The API's routes: one table (:data:`ROUTES`) that both the app and /openapi.json are built from,
and the handlers, each a thin layer over :class:`emp.client.Client`.

Handlers read the client and settings from the app (``CLIENT``, ``SETTINGS``); errors are raised
(emp's exceptions or :class:`ApiError`) and turned into the JSON error body by the app's middleware.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from emp import __version__, defaults
from emp.client import Client, Job, JobStatus
from emp.coordinator.api import metrics as metrics_text
from emp.coordinator.api import models as m
from emp.coordinator.api import sse, stats
from emp.coordinator.api.auth import Scope
from emp.coordinator.api.compat import from_original
from emp.coordinator.api.errors import ApiError
from emp.coordinator.api.scopes import required_scope
from emp.coordinator.leader import LeaderElection
from emp.coordinator.redis_watch import RestartWatch
from emp.coordinator.settings import CoordinatorSettings
from emp.dashboard.watch_model import throughput  # the sparkline's counts, as emp watch draws them
from emp.errors import JobValidationError
from emp.model.job import check_batch_size, parse_submission
from emp.redis.calls import flows_active
from emp.redis.client import ANY_REDIS_ERROR, UNREACHABLE_ERRORS

__all__ = ["CLIENT", "ROUTES", "SETTINGS", "STOPPING", "Param", "Route"]

CLIENT = web.AppKey("client", Client)
SETTINGS = web.AppKey("settings", CoordinatorSettings)
STOPPING = web.AppKey("stopping", asyncio.Event)
OPENAPI = web.AppKey("openapi", dict)
LEADERSHIP = web.AppKey("leadership", LeaderElection)
"""The upkeep election this coordinator takes part in (absent when it runs no upkeep)."""
REDIS_WATCH = web.AppKey("redis_watch", RestartWatch)
"""The Redis restarts this coordinator noticed (emp/coordinator/redis_watch.py; absent in a bare app)."""

REDIS_DOWN: tuple[type[BaseException], ...] = (*UNREACHABLE_ERRORS, ANY_REDIS_ERROR, TimeoutError, OSError)
"""What a read of Redis raises when it does not answer (health and metrics report it, not fail)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str  # query | path | header
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One route: what it does (for the app) and what it takes and answers (for /openapi.json)."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    response: type[BaseModel] | None = None
    also: tuple[type[BaseModel], ...] = ()
    """Other shapes the success answer takes (the description says anyOf)."""
    status: int = 200
    content_type: str = "application/json"
    body: dict[str, Any] | None = None
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    query_token: bool = False
    """Also accept the token as ?access_token= (EventSource cannot set headers)."""

    @property
    def scope(self) -> Scope | None:
        """The token scope it needs (None: open), from the one table of every route's scope."""
        return required_scope(self.method, self.path)

    @property
    def auth(self) -> bool:
        return self.scope is not None


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(status=status, text=model.model_dump_json(), content_type="application/json")


def _client(request: web.Request) -> Client:
    return request.app[CLIENT]


async def _body(request: web.Request) -> Any:
    try:
        text = await request.text()
    except UnicodeDecodeError:
        raise ApiError(422, "invalid", "body: not UTF-8 text", ["body"]) from None
    if not text.strip():
        raise ApiError(422, "invalid", 'body: empty (send a JSON job, an array of jobs, or {"jobs": [...]})', ["body"])
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ApiError(422, "invalid", f"body: not valid JSON ({exc})", ["body"]) from None
    except RecursionError:  # json's C decoder gives up near 1000 levels: was a 500
        raise ApiError(
            422, "invalid", f"body: nested too deep (a payload may nest {defaults.MAX_JSON_DEPTH} levels)", ["body"]
        ) from None


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(422, "invalid", f"{name}: must be an integer, got {raw[:40]!r}", [name]) from None
    if not lo <= value <= hi:
        raise ApiError(422, "invalid", f"{name}: must be between {lo} and {hi}", [name])
    return value


# -- jobs ---------------------------------------------------------------------------------------


def _wires(raw: Any, max_payload_bytes: int) -> tuple[list[dict[str, Any]], bool]:
    """Validate the body into submit wires, as `emp submit` does; (wires, whether it was a batch).
    Raises JobValidationError listing every problem (nothing is written)."""
    if isinstance(raw, list):
        docs, batch = raw, True
    elif isinstance(raw, dict) and set(raw) == {"jobs"} and isinstance(raw["jobs"], list):
        docs, batch = raw["jobs"], True
    elif isinstance(raw, dict):
        docs, batch = [raw], False
    else:
        raise JobValidationError('body: must be a job (JSON object), an array of jobs, or {"jobs": [...]}')
    check_batch_size(len(docs))
    wires: list[dict[str, Any]] = []
    problems: list[str] = []
    for i, doc in enumerate(docs):
        try:
            mapped = from_original(doc) if isinstance(doc, Mapping) else doc
            wires.append(parse_submission(mapped).to_wire(max_payload_bytes))
        except JobValidationError as exc:
            if not batch:
                raise
            for p in exc.problems:
                problems.append(f"jobs[{i}]: {p}" if p.startswith(("unknown field", "a job")) else f"jobs[{i}].{p}")
    if problems:
        raise JobValidationError(problems)
    ids = [str(w["id"]) for w in wires]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise JobValidationError(f"id: {dup!r} appears more than once in the batch")
    return wires, batch


async def submit_jobs(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    wires, batch = _wires(await _body(request), client.max_payload_bytes or defaults.MAX_PAYLOAD_BYTES)
    statuses = await client.submit_wires(wires)
    jobs = [m.Submitted(id=str(w["id"]), status=str(s)) for w, s in zip(wires, statuses, strict=True)]
    if batch:
        return _json(m.SubmittedBatch(jobs=jobs), 201)
    one = jobs[0]
    return _json(m.SubmittedOne(id=one.id, status=one.status, job_id=one.id, success=True), 201)


def _job_out(job: Job) -> dict[str, Any]:
    d = job.to_dict()
    if job.events:
        d["events"] = [sse.event_data(ev) for ev in job.events]
    return d


async def get_job(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    n = _int_param(request, "events", 0, 0, 100)
    job = await _client(request).get(job_id, events=n)
    if job is None:
        raise ApiError(404, "not_found", f"no job with id {job_id!r}")
    return web.Response(text=json.dumps(_job_out(job), default=str), content_type="application/json")


# Waiting flow steps have no listing index (docs/flows.md): GET /api/flows/{id} shows them.
LISTABLE = ("", "active", *(str(s) for s in JobStatus))


def _row(raw: Job) -> m.JobRow:
    return m.JobRow(
        id=raw.id,
        service=raw.service,
        status=str(raw.status),
        priority=raw.priority,
        attempt=raw.attempt,
        worker_id=raw.worker_id,
        progress=raw.progress,
        message=raw.message,
        created_at=raw.created_at,
        finished_at=raw.finished_at,
        failure_class=raw.failure_class,
        customer_id=raw.customer_id,
        workflow_id=raw.workflow_id,
    )


async def list_jobs(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status", "")
    if status not in LISTABLE:
        allowed = ", ".join(s for s in LISTABLE if s)
        raise ApiError(422, "invalid", f"status: {status[:40]!r} is not one of {allowed}", ["status"])
    service = request.query.get("service", "")
    cursor = request.query.get("cursor", "")
    limit = _int_param(request, "limit", defaults.LIST_PAGE, 1, defaults.LIST_PAGE_MAX)
    client = _client(request)
    rows: list[m.JobRow] = []
    # A service filter (or index entries of expired jobs) can make one call's page short while more
    # rows follow: call again from the returned cursor, a bounded number of times.
    for _ in range(defaults.API_LIST_FILL_CALLS):
        try:
            page = await client.list(
                status=status or None, service=service or None, cursor=cursor, limit=limit - len(rows)
            )
        except JobValidationError as exc:
            raise ApiError(
                422, "invalid", f"cursor: {exc} (pass back a next_cursor as it was given)", ["cursor"]
            ) from None
        rows += [_row(j) for j in page.jobs]
        cursor = page.next_cursor
        if not cursor or len(rows) >= limit:
            break
    return _json(m.JobPageOut(jobs=rows, next_cursor=cursor))


async def cancel_job(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    previous = await _client(request).cancel(job_id, "cancelled through the HTTP API")
    return _json(m.CancelOut(id=job_id, cancelled=previous is not None, previous_status=previous))


async def retry_job(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    status = await _client(request).retry(job_id)
    return _json(m.RetryOut(id=job_id, status=str(status)))


async def job_events(request: web.Request) -> web.StreamResponse:
    job_id = request.match_info["id"]
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    try:
        after = sse.parse_last_event_id(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid", f"Last-Event-ID: {exc}", ["Last-Event-ID"]) from None
    client = _client(request)
    if await client.get(job_id) is None:
        raise ApiError(404, "not_found", f"no job with id {job_id!r}")
    return await sse.stream_job_events(request, client, job_id, after or "0-0", stopping=request.app[STOPPING])


# -- fleet --------------------------------------------------------------------------------------


async def list_workers(request: web.Request) -> web.StreamResponse:
    live = await _client(request).live_workers()
    workers = [
        m.WorkerOut(
            id=w.id,
            machine_id=w.machine_id,
            status=w.status,
            services=list(w.services),
            current_job=w.job or None,
            capabilities=dict(w.capabilities),
        )
        for w in sorted(live, key=lambda w: w.id)
    ]
    return _json(m.WorkersOut(workers=workers))


async def list_machines(request: web.Request) -> web.StreamResponse:
    rows = await _client(request).machines()
    return web.Response(text=json.dumps({"machines": rows}, default=str), content_type="application/json")


async def list_services(request: web.Request) -> web.StreamResponse:
    records = await _client(request).services()
    return web.Response(
        text=json.dumps({"services": [r.to_json() for r in records]}, default=str), content_type="application/json"
    )


# -- figures ------------------------------------------------------------------------------------


async def _figures(client: Client) -> tuple[dict[str, int], list[dict[str, Any]], dict[str, Any]]:
    windows_ms = [w * 1000 for w in defaults.STATS_WINDOWS_S]
    counts, sigs, times = await asyncio.gather(
        client.count(), client.signatures(), client.job_times(windows_ms, defaults.STATS_SAMPLE_MAX)
    )
    return counts, sigs, times


async def get_stats(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    minutes = [60_000 * (i + 1) for i in range(defaults.STATS_SPARK_MINUTES)]
    (counts, sigs, times), by_minute = await asyncio.gather(_figures(client), client.job_times(minutes, 0))
    now, windows, _ = stats.summarize(defaults.STATS_WINDOWS_S, times)
    depth = stats.depths(sigs, now)
    out = {
        "now_ms": now,
        "jobs": counts,
        "depth": [asdict(d) for d in depth],
        "windows": [asdict(w) for w in windows],
        "per_minute": {s: throughput(by_minute, s) for s in ("completed", "failed")},
        "oldest_pending_s": stats.oldest_pending_s(depth),
    }
    return _json(m.StatsOut.model_validate(out))


def _restarts(request: web.Request) -> tuple[int, int] | None:
    """(Redis restarts noticed, of which lost data), or None when this app watches none."""
    watch = request.app.get(REDIS_WATCH)
    return None if watch is None else (watch.restarts, watch.state_lost)


async def get_metrics(request: web.Request) -> web.StreamResponse:
    client = _client(request)
    try:
        latency = await asyncio.wait_for(client.ping(), timeout=defaults.API_SHUTDOWN_TIMEOUT_S)
        counts, sigs, times = await _figures(client)
        counters, live = await asyncio.gather(client.counters(), client.live_workers())
    except REDIS_DOWN:
        data = metrics_text.MetricsInput(up=False, restarts=_restarts(request))
    else:
        windows = [defaults.METRICS_WINDOW_S]
        now, _, rows = stats.summarize(defaults.STATS_WINDOWS_S, times)
        since = now - defaults.METRICS_WINDOW_S * 1000
        data = metrics_text.MetricsInput(
            up=True,
            redis_latency_s=latency,
            status_counts=counts,
            depths=stats.depths(sigs, now),
            counters=counters,
            recent=[r for r in rows if r.finished_at is not None and r.finished_at >= since],
            workers_by_state=dict(Counter(w.status for w in live)),
            window_s=windows[0],
            buckets_s=defaults.METRICS_BUCKETS_S,
            restarts=_restarts(request),
        )
    body = metrics_text.render(metrics_text.build(data))
    return web.Response(body=body.encode(), headers={"Content-Type": metrics_text.CONTENT_TYPE})


async def health(request: web.Request) -> web.StreamResponse:
    import time

    try:
        await asyncio.wait_for(_client(request).ping(), timeout=2.0)
        redis_state, status, code = "ok", "ok", 200
    except REDIS_DOWN:
        redis_state, status, code = "unreachable", "degraded", 503
    election = request.app.get(LEADERSHIP)
    watch = request.app.get(REDIS_WATCH)
    out = m.HealthOut(
        status=status,
        redis=redis_state,
        version=__version__,
        time_ms=int(time.time() * 1000),
        leader=None if election is None else election.is_leader,
        redis_restarts=None if watch is None else watch.restarts,
        redis_state_lost=None if watch is None else watch.state_lost,
    )
    return _json(out, code)


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(text=json.dumps(request.app[OPENAPI]), content_type="application/json")


# -- flows (docs/flows.md) ------------------------------------------------------------------------


async def submit_flow(request: web.Request) -> web.StreamResponse:
    """The body is a flow document (emp.model.flow): every step is submitted in one all-or-nothing call."""
    client = _client(request)
    doc = await _body(request)
    if not isinstance(doc, dict):
        raise ApiError(422, "invalid", "body: a flow is a JSON object with a steps list", ["body"])
    try:
        flow_id = await client.submit_flow(doc)
    except JobValidationError as exc:
        # What JSON Schema cannot say about a flow (edges name its steps, no cycle, a step's own job
        # fields) is named as the field `steps` (`id` for the flow's id).
        where = ["id"] if all(p.startswith("id:") for p in exc.problems) else ["steps"]
        raise ApiError(422, "invalid", str(exc).replace("\n", "; "), where) from None
    state = await client.flow(flow_id)
    if state is None:  # cannot happen: it was just written (and a record outlives its steps' end)
        raise ApiError(404, "not_found", f"no flow with id {flow_id!r}")
    return _json(m.FlowOut.model_validate(state.to_json()), 201)


def _num(v: Any) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def active_flows_out(doc: Mapping[str, Any]) -> dict[str, Any]:
    """emp_flows_active's JSON (loosely typed: Lua text, and cjson writes an empty list as {}) in the
    API's types."""
    flows = []
    for f in doc.get("flows") or []:
        created, priority = _num(f.get("created_at")), _num(f.get("priority"))
        steps = [
            {
                "id": str(s.get("id", "")),
                "name": str(s.get("name", "")),
                "service": str(s.get("service", "")),
                "after": [str(a) for a in s.get("after") or [] if isinstance(a, str)],
                "status": str(s.get("status", "")),
                "progress": _num(s.get("progress")),
            }
            for s in f.get("steps") or []
            if isinstance(s, Mapping)
        ]
        flows.append(
            {
                "id": str(f.get("id", "")),
                "created_at": None if created is None else int(created),
                "priority": None if priority is None else int(priority),
                "open": int(_num(f.get("open")) or 0),
                "steps_total": int(_num(f.get("steps_total")) or 0),
                "steps": steps,
            }
        )
    return {"total": int(_num(doc.get("total")) or 0), "flows": flows}


async def list_flows(request: web.Request) -> web.StreamResponse:
    limit = _int_param(request, "limit", defaults.FLOWS_PAGE, 1, defaults.LIST_PAGE_MAX)
    steps = _int_param(request, "steps", defaults.FLOWS_STEPS, 0, defaults.LIST_PAGE_MAX)
    doc = await flows_active(await _client(request).calls(), limit, steps)
    return _json(m.ActiveFlowsOut.model_validate(active_flows_out(doc)))


async def get_flow(request: web.Request) -> web.StreamResponse:
    flow_id = request.match_info["id"]
    state = await _client(request).flow(flow_id)
    if state is None:
        raise ApiError(404, "not_found", f"no flow with id {flow_id!r}")
    return _json(m.FlowOut.model_validate(state.to_json()))


# -- the table ----------------------------------------------------------------------------------

_ID = Param("id", "path", "The job's id (percent-encoded: an id with '/' is sent as %2F)", required=True)
_EVENT_ID = {"type": "string", "pattern": f"^({sse.DESCRIBED_EVENT_ID})?$", "description": "<ms>-<seq>"}
_SUBMIT_BODY = {
    "description": "One job (emp's fields or the original system's), an array of jobs, or {\"jobs\": [...]}; "
    f"a batch holds 1 to {defaults.MAX_BATCH} jobs and is all-or-nothing",
    "schemas": ["JobSubmission", "OriginalJob", "BatchRequest"],
}

ROUTES: tuple[Route, ...] = (
    Route(
        "POST", "/api/jobs", submit_jobs, "Submit one job or a batch", "jobs",
        response=m.SubmittedOne, also=(m.SubmittedBatch,), status=201, body=_SUBMIT_BODY,
        errors=(409, 413, 422, 503, 507),
    ),
    Route(
        "GET", "/api/jobs", list_jobs, "List jobs from the indexes, a page at a time", "jobs",
        response=m.JobPageOut, errors=(422, 503),
        params=(
            Param("status", "query", "pending, scheduled, active, assigned, in_progress, unworkable, completed, "
                  "failed or cancelled (empty: every status, running first)",
                  {"type": "string", "enum": list(LISTABLE)}),
            Param("service", "query", "Only this service's jobs"),
            Param("cursor", "query", "next_cursor of the previous page (empty: the first page)"),
            Param("limit", "query", f"Jobs per page, 1 to {defaults.LIST_PAGE_MAX}",
                  {"type": "integer", "minimum": 1, "maximum": defaults.LIST_PAGE_MAX, "default": defaults.LIST_PAGE}),
        ),
    ),
    Route(
        "GET", "/api/jobs/{id}", get_job, "One job", "jobs", response=m.JobOut, errors=(404, 422, 503),
        params=(_ID, Param("events", "query", "Also its newest N events (0 to 100)",
                           {"type": "integer", "minimum": 0, "maximum": 100, "default": 0})),
    ),
    Route("POST", "/api/jobs/{id}/cancel", cancel_job, "Cancel a job", "jobs", response=m.CancelOut,
          params=(_ID,), errors=(404, 503)),
    Route("POST", "/api/jobs/{id}/retry", retry_job, "Run a failed, cancelled or unworkable job again", "jobs",
          response=m.RetryOut, params=(_ID,), errors=(404, 409, 503, 507)),
    Route(
        "GET", "/api/jobs/{id}/events", job_events, "Follow a job's events (Server-Sent Events)", "jobs",
        response=m.EventOut, content_type="text/event-stream", errors=(404, 422, 503), query_token=True,
        params=(
            _ID,
            Param("Last-Event-ID", "header", "Resume after this event id (EventSource sends it on reconnect)",
                  _EVENT_ID),
            Param("last_event_id", "query", "The same, for clients that cannot set headers", _EVENT_ID),
            Param("access_token", "query", "The API token, for clients that cannot set headers"),
        ),
    ),
    # flows (docs/flows.md); the body of POST is a flow document: {id?, priority?, steps: [...]}
    Route("POST", "/api/flows", submit_flow, "Submit a flow: steps with depends_on edges, all or nothing", "flows",
          response=m.FlowOut, status=201, errors=(409, 413, 422, 503, 507),
          body={"description": "A flow document: {id?, priority?, steps: [{name, service, depends_on, ...job}]}",
                "schemas": ["FlowRequest"], "models": (m.FlowRequest,), "jobs_array": False}),
    Route("GET", "/api/flows", list_flows, "The flows not ended, the oldest first, with their steps' states", "flows",
          response=m.ActiveFlowsOut, errors=(422, 503), params=(
              Param("limit", "query", f"Flows, 1 to {defaults.LIST_PAGE_MAX}",
                    {"type": "integer", "minimum": 1, "maximum": defaults.LIST_PAGE_MAX,
                     "default": defaults.FLOWS_PAGE}),
              Param("steps", "query", f"Steps per flow, 0 to {defaults.LIST_PAGE_MAX} (those not ended first)",
                    {"type": "integer", "minimum": 0, "maximum": defaults.LIST_PAGE_MAX,
                     "default": defaults.FLOWS_STEPS}),
          )),
    Route("GET", "/api/flows/{id}", get_flow, "A flow and each step's state, progress and result", "flows",
          response=m.FlowOut, params=(Param("id", "path", "The flow's id", required=True),), errors=(404, 503)),
    Route("GET", "/api/workers", list_workers, "Live workers", "fleet", response=m.WorkersOut, errors=(503,)),
    Route("GET", "/api/machines", list_machines, "Live machines", "fleet", response=m.MachinesOut, errors=(503,)),
    Route("GET", "/api/services", list_services, "Services (ComfyUI, A1111, ...) reported by workers", "fleet",
          response=m.ServicesOut, errors=(503,)),
    Route("GET", "/api/stats", get_stats, "Queue depths, throughput, success rate, wait and run times", "figures",
          response=m.StatsOut, errors=(503,)),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics (text format 0.0.4)", "figures",
          content_type=metrics_text.CONTENT_TYPE),
    Route("GET", "/health", health, "Liveness, and whether Redis answers (503 when not)", "meta",
          response=m.HealthOut),
    Route("GET", "/openapi.json", openapi, "This description (OpenAPI 3.1)", "meta"),
)  # fmt: skip
