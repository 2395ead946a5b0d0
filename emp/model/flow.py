"""Flows: a set of jobs (steps) joined by ``depends_on`` edges (docs/flows.md). Pure: no I/O.

A flow document::

    {"id": "render-42",              # optional (a fresh id otherwise)
     "priority": 70,                  # optional: the place in line of every step (workflow_priority)
     "steps": [
       {"name": "gen", "service": "comfyui", "payload": {...}},
       {"name": "up", "service": "upscale", "depends_on": ["gen"],
        "payload": {"image": {"$from": "gen", "path": "result.outputs.0.url"}}},
       {"name": "notify", "service": "hook", "depends_on": [{"step": "up", "on": "always"}]}]}

``steps`` may also be an object ``{name: step}``. A step is a job document (emp.model.job) plus
``name`` and ``depends_on``; its job id is ``<flow id>.<name>``. An edge runs its child when the
parent ends ``completed`` (the default), ``failed``, or in any way (``always``).

:func:`parse_flow` refuses, naming the problem, a missing step, a cycle, a reference to a step that
is not a parent, and any bad job field; :func:`flow_submission` turns a valid flow into the submit
Function's jobs and flow block. :func:`resolve_path` is the rule the Function applies to a
``{"$from": P, "path": "a.b.0"}`` reference when its step becomes ready (Lua twin: _flows.lua).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emp import defaults
from emp.errors import JobValidationError
from emp.model.job import TERMINAL, JobStatus, json_depth, parse_submission

ON = ("completed", "failed", "always")
"""When an edge runs its child: the parent ended completed (default), failed, or in any way."""

STEP_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
REF_KEY = "$from"

_FLOW_KEYS = frozenset({"id", "priority", "steps"})
_STEP_ONLY = frozenset({"name", "depends_on"})
_SET_BY_FLOW = frozenset({"id", "run_at"})


@dataclass(frozen=True, slots=True)
class Edge:
    parent: str
    """The parent's step name (a flow) or job id (--after)."""
    on: str = "completed"


@dataclass(frozen=True, slots=True)
class Ref:
    """A ``{"$from": source, "path": path}`` object in a payload; ``text`` is its exact JSON text there."""

    source: str
    path: str

    @property
    def text(self) -> str:
        return _ref_text(self.source, self.path)


@dataclass(frozen=True, slots=True)
class FlowStep:
    name: str
    job: dict[str, Any]
    """The step's job document (no name, no depends_on), payload references normalized."""
    edges: tuple[Edge, ...] = ()
    refs: tuple[Ref, ...] = ()


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    priority: int | None
    steps: tuple[FlowStep, ...]
    """Parents before children (a topological order; ties in document order)."""

    def job_id(self, name: str) -> str:
        return f"{self.id}.{name}"


def _ref_text(source: str, path: str) -> str:
    return json.dumps({REF_KEY: source, "path": path}, separators=(",", ":"), ensure_ascii=False)


def find_refs(payload: Any, where: str = "payload") -> tuple[Any, list[Ref]]:
    """The payload with every reference rewritten as ``{"$from": P, "path": X}`` (that key order, so
    its JSON text is :attr:`Ref.text`), and the references in document order. A malformed reference
    (``$from`` without a string ``path``, or with other keys) raises JobValidationError."""
    refs: list[Ref] = []
    if json_depth(payload, defaults.MAX_JSON_DEPTH) > defaults.MAX_JSON_DEPTH:  # before walking it recursively
        raise JobValidationError(f"{where}: is nested more than {defaults.MAX_JSON_DEPTH} levels deep")

    def walk(v: Any, at: str) -> Any:
        if isinstance(v, dict):
            if REF_KEY in v:
                src, path = v.get(REF_KEY), v.get("path")
                if not isinstance(src, str) or not src or not isinstance(path, str) or not path or len(v) != 2:
                    raise JobValidationError(
                        f'{at}: a reference is {{"$from": "<parent>", "path": "<dot path>"}} and nothing else'
                    )
                refs.append(Ref(src, path))
                return {REF_KEY: src, "path": path}
            return {k: walk(x, f"{at}.{k}") for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, f"{at}.{i}") for i, x in enumerate(v)]
        return v

    return walk(payload, where), refs


def _edges(raw: Any, where: str) -> list[Edge]:
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise JobValidationError(f"{where}: must be a list of step names or {{step, on}} objects")
    out: list[Edge] = []
    for i, e in enumerate(raw):
        if isinstance(e, str):
            out.append(Edge(e))
        elif isinstance(e, dict) and isinstance(e.get("step"), str) and set(e) <= {"step", "on"}:
            on = e.get("on", "completed")
            if on not in ON:
                raise JobValidationError(f"{where}.{i}.on: must be one of {', '.join(ON)}, got {on!r}")
            out.append(Edge(e["step"], on))
        else:
            raise JobValidationError(f"{where}.{i}: must be a step name or {{step, on}}")
    return out


def _step_list(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, dict):
        steps = []
        for name, s in raw.items():
            if not isinstance(s, dict):
                raise JobValidationError(f"steps.{name}: must be an object")
            steps.append({**s, "name": name})
        return steps
    if isinstance(raw, list) and all(isinstance(s, dict) for s in raw):
        return [dict(s) for s in raw]
    raise JobValidationError("steps: must be a list of step objects or an object {name: step}")


def topological(names: Sequence[str], parents: Mapping[str, Sequence[str]]) -> list[str]:
    """``names`` parents first (ties in the given order); a cycle raises JobValidationError naming it."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: placed

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = path[path.index(n) :] + [n]
            raise JobValidationError(f"depends_on: a cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for p in parents.get(n, ()):
            visit(p, [*path, n])
        state[n] = 2
        order.append(n)

    for n in names:
        visit(n, [])
    return order


def _header(doc: Mapping[str, Any], flow_id: str | None) -> tuple[str, int | None]:
    unknown = sorted(set(doc) - _FLOW_KEYS)
    if unknown:
        raise JobValidationError(f"unknown flow field {unknown[0]!r} (a flow has id, priority, steps)")
    fid = flow_id or doc.get("id") or uuid.uuid4().hex[:16]
    if not isinstance(fid, str) or not re.fullmatch(r"[A-Za-z0-9_.\-:]{1,64}", fid):
        raise JobValidationError("id: 1..64 letters, digits, _ - . :")
    priority = doc.get("priority")
    if priority is not None and (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not defaults.PRIORITY_MIN <= priority <= defaults.PRIORITY_MAX
    ):
        raise JobValidationError(f"priority: must be an integer {defaults.PRIORITY_MIN}..{defaults.PRIORITY_MAX}")
    return fid, priority


def _by_name(raw_steps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    if not raw_steps:
        raise JobValidationError("steps: a flow needs at least one step")
    if len(raw_steps) > defaults.MAX_BATCH:
        raise JobValidationError(f"steps: at most {defaults.MAX_BATCH} steps in a flow")
    by_name: dict[str, dict[str, Any]] = {}
    for i, s in enumerate(raw_steps):
        name = s.get("name")
        if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
            raise JobValidationError(f"steps.{i}.name: 1..64 letters, digits, _ or -")
        if name in by_name:
            raise JobValidationError(f"steps.{i}.name: {name!r} is used twice")
        by_name[name] = s
    return by_name


def _checked_edges(by_name: Mapping[str, Mapping[str, Any]]) -> dict[str, list[Edge]]:
    edges: dict[str, list[Edge]] = {}
    for name, s in by_name.items():
        es = _edges(s.get("depends_on"), f"steps.{name}.depends_on")
        seen: set[str] = set()
        for e in es:
            if e.parent not in by_name:
                raise JobValidationError(f"steps.{name}.depends_on: no step named {e.parent!r}")
            if e.parent in seen:
                raise JobValidationError(f"steps.{name}.depends_on: {e.parent!r} is listed twice")
            seen.add(e.parent)
        edges[name] = es
    return edges


def parse_flow(doc: object, *, flow_id: str | None = None) -> Flow:
    """Validate a flow document (module docstring). Raises JobValidationError naming the problem."""
    if not isinstance(doc, Mapping):
        raise JobValidationError("a flow must be a JSON object with a steps list")
    fid, priority = _header(doc, flow_id)
    by_name = _by_name(_step_list(doc.get("steps")))
    edges = _checked_edges(by_name)
    order = topological(list(by_name), {n: [e.parent for e in es] for n, es in edges.items()})
    steps: list[FlowStep] = []
    for n, name in enumerate(order):
        job = {k: v for k, v in by_name[name].items() if k not in _STEP_ONLY}
        bad = sorted(set(job) & _SET_BY_FLOW)
        if bad:
            raise JobValidationError(f"steps.{name}.{bad[0]}: set by the flow, not by a step")
        payload, refs = find_refs(job.get("payload") or {}, f"steps.{name}.payload")
        parents = {e.parent for e in edges[name]}
        for r in refs:
            if r.source not in parents:
                raise JobValidationError(f'steps.{name}.payload: "$from": {r.source!r} is not in its depends_on')
        job["payload"] = payload
        job.setdefault("workflow_id", fid)
        job.setdefault("step", n + 1)
        job.setdefault("total_steps", len(order))
        if priority is not None:
            job.setdefault("workflow_priority", priority)
        job["id"] = f"{fid}.{name}"
        try:
            parse_submission(job)
        except JobValidationError as exc:
            raise JobValidationError([f"steps.{name}: {p}" for p in exc.problems]) from None
        steps.append(FlowStep(name, job, tuple(edges[name]), tuple(refs)))
    return Flow(fid, priority, tuple(steps))


@dataclass(frozen=True, slots=True)
class Submission:
    """What the submit Function takes for a flow or an --after job: the jobs' wires and the flow block."""

    wires: list[dict[str, Any]]
    flow_id: str
    """'' for --after jobs (no flow record)."""
    block: str
    """JSON text of the block (_flows.lua FLOW.check)."""


def flow_submission(flow: Flow, max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES) -> Submission:
    """The wires (each step's job, validated) and block of a parsed flow."""
    wires = [dict(parse_submission(s.job).to_wire(max_payload_bytes)) for s in flow.steps]
    steps = []
    for s in flow.steps:
        if not s.edges:
            continue
        steps.append(
            {
                "id": flow.job_id(s.name),
                "parents": [[flow.job_id(e.parent), e.on, e.parent] for e in s.edges],
                "refs": [[r.source, r.path, r.text] for r in s.refs],
            }
        )
    record_steps = [
        {
            "name": s.name,
            "id": flow.job_id(s.name),
            "service": s.job.get("service") or "",
            "depends_on": [{"step": e.parent, "on": e.on} for e in s.edges],
        }
        for s in flow.steps
    ]
    record = {"steps": json.dumps(record_steps, separators=(",", ":"))}
    if flow.priority is not None:
        record["priority"] = str(flow.priority)
    block = {"steps": steps, "record": record}
    return Submission(wires, flow.id, json.dumps(block, separators=(",", ":"), ensure_ascii=False))


def after_submission(
    doc: Mapping[str, Any],
    parents: Sequence[str],
    on: str = "completed",
    max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES,
) -> Submission:
    """One job that waits for existing jobs (``emp submit --after``); ``$from`` names a parent's id."""
    if not parents:
        raise JobValidationError("after: at least one job id")
    if on not in ON:
        raise JobValidationError(f"after: on must be one of {', '.join(ON)}")
    if len(set(parents)) != len(parents):
        raise JobValidationError("after: a job id is listed twice")
    if doc.get("run_at") is not None:
        raise JobValidationError("after: a job that waits for others cannot also have run_at / --delay")
    payload, refs = find_refs(doc.get("payload") or {})
    for r in refs:
        if r.source not in parents:
            raise JobValidationError(f'payload: "$from": {r.source!r} is not one of the --after jobs')
    wire = dict(parse_submission({**doc, "payload": payload}).to_wire(max_payload_bytes))
    if wire["id"] in parents:
        raise JobValidationError("after: a job cannot wait for itself")
    block = {
        "steps": [
            {
                "id": wire["id"],
                "parents": [[p, on, ""] for p in parents],
                "refs": [[r.source, r.path, r.text] for r in refs],
            }
        ]
    }
    return Submission([wire], "", json.dumps(block, separators=(",", ":"), ensure_ascii=False))


# -- resolution (the twin of _flows.lua FLOW.ref_value) ----------------------------------------------

_JSON_FIELDS = frozenset({"result", "history"})


class Unresolved(LookupError):
    """A reference's path does not lead to a value."""


def resolve_path(record: Mapping[str, str], path: str) -> Any:
    """The value at ``path`` in a job's record (its hash fields as text): the first segment names a
    field, a JSON field (``result``) is decoded, a number indexes an array from 0. Raises Unresolved."""
    segs = [s for s in path.split(".") if s]
    if not segs:
        raise Unresolved("the path is empty")
    if segs[0] not in record:
        raise Unresolved(f"the parent has no {segs[0]}")
    v: Any = record[segs[0]]
    if len(segs) > 1 or segs[0] in _JSON_FIELDS:
        try:
            v = json.loads(v)
        except ValueError:
            if len(segs) > 1:
                raise Unresolved(f"{segs[0]} is not JSON") from None
    for i, s in enumerate(segs[1:], start=2):
        nothing = Unresolved(f"nothing at {'.'.join(segs[:i])}")
        if isinstance(v, dict):
            if s not in v:
                raise nothing
            v = v[s]
        elif isinstance(v, list) and s.isdigit() and int(s) < len(v):
            v = v[int(s)]
        else:
            raise nothing
    return v


# -- reading a flow back ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepState:
    name: str
    id: str
    service: str
    depends_on: tuple[Edge, ...]
    status: str
    """A JobStatus value, or 'expired' when the job is gone."""
    progress: int | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    failure_class: str | None = None
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class FlowState:
    id: str
    created_at: int | None
    finished_at: int | None
    priority: int | None
    steps: tuple[StepState, ...]
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """running until every step ended; then completed (all completed), failed (one failed), or cancelled."""
        st = {s.status for s in self.steps}
        if not st <= {str(t) for t in TERMINAL} | {"expired"}:
            return "running"
        if st <= {JobStatus.COMPLETED.value}:
            return "completed"
        if JobStatus.FAILED.value in st:
            return "failed"
        return "cancelled" if JobStatus.CANCELLED.value in st else "completed"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "priority": self.priority,
            "steps": [
                {
                    "name": s.name,
                    "id": s.id,
                    "service": s.service,
                    "depends_on": [{"step": e.parent, "on": e.on} for e in s.depends_on],
                    "status": s.status,
                    "progress": s.progress,
                    "message": s.message,
                    "result": s.result,
                    "error": s.error,
                    "failure_class": s.failure_class,
                    "worker_id": s.worker_id,
                }
                for s in self.steps
            ],
        }


def _opt_int(v: Any) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def flow_state(record: Mapping[str, str], jobs: Mapping[str, Mapping[str, str]]) -> FlowState:
    """A flow as emp_flow_get returns it: its record and the hashes of its steps' jobs."""
    try:
        raw_steps = json.loads(record.get("steps") or "[]")
    except ValueError:
        raw_steps = []
    steps = []
    for s in raw_steps if isinstance(raw_steps, list) else []:
        if not isinstance(s, dict):
            continue
        jid = str(s.get("id", ""))
        h = jobs.get(jid)
        result: Any = None
        if h and h.get("result"):
            try:
                result = json.loads(h["result"])
            except ValueError:
                result = h["result"]
        steps.append(
            StepState(
                name=str(s.get("name", "")),
                id=jid,
                service=str(s.get("service", "")),
                depends_on=tuple(
                    Edge(str(e.get("step")), str(e.get("on", "completed")))
                    for e in s.get("depends_on") or []
                    if isinstance(e, dict)
                ),
                status=(h.get("status") or "expired") if h else "expired",
                progress=_opt_int(h.get("progress")) if h else None,
                message=(h.get("message") or None) if h else None,
                result=result,
                error=(h.get("error") or None) if h else None,
                failure_class=(h.get("failure_class") or None) if h else None,
                worker_id=(h.get("worker_id") or None) if h else None,
            )
        )
    known = {"id", "created_at", "finished_at", "priority", "steps", "open"}
    return FlowState(
        id=str(record.get("id", "")),
        created_at=_opt_int(record.get("created_at")),
        finished_at=_opt_int(record.get("finished_at")),
        priority=_opt_int(record.get("priority")),
        steps=tuple(steps),
        extra={k: v for k, v in record.items() if k not in known},
    )
