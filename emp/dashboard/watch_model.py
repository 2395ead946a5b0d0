"""What `emp watch` shows, as plain data (pure: no I/O), and how it is built from what Redis answers.

:class:`WatchData` is the renderer's only input (:mod:`emp.dashboard.watch_view`). It holds the
folded :class:`~emp.dashboard.state.FleetState` (snapshot + events: workers, running jobs) and the
figures the live loop (:mod:`emp.dashboard.watch_live`) reads about once a second, each in the
same way the other commands read it: the totals from ``count_jobs`` (what `emp jobs count` prints),
machine cards from the machine agents' reports, queues from ``signatures``, throughput and recent
endings from ``job_times``. Every list is bounded (top-N), so a frame costs the same with 10 or
100,000 pending jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from emp.dashboard.state import FleetState, JobView
from emp.model.job import JobStatus
from emp.model.matching import describe_requirement, key_matches
from emp.model.requirements import Canonical, canonical_from_text
from emp.model.services import ServiceRecord

THROUGHPUT_MINUTES = 10
"""The header's sparkline covers this many minutes, one bar a minute (10 ZCOUNTs per status a poll)."""

RECENT_MAX = 30
"""Recent completions and failures kept (and read: the ``job_times`` sample per status)."""

QUEUE_ROWS_MAX = 50
"""Queue rows (service x signature) kept, deepest first."""

ENDED_KEEP = 200
"""Ended jobs the watch keeps in its fold (the newest); older ones are dropped after each read."""

WAITING_KEEP = 1000
"""Waiting jobs the watch keeps in its fold. With more pending jobs than this the view drops the
newest ones; a dropped job that starts is read back by the live loop (one read per start)."""

FLOWS_MAX = 10
"""Flows (not ended) the watch reads each poll and shows, the oldest first (emp_flows_active)."""

FLOW_STEPS_MAX = 20
"""Steps read and shown per flow (those not ended first); a bigger flow shows "+N more"."""

OFFLINE = "offline"

ACTIVE = frozenset({JobStatus.ASSIGNED, JobStatus.IN_PROGRESS})
ENDED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    util_pct: int | None = None
    mem_used_mb: int | None = None
    mem_total_mb: int | None = None
    temp_c: int | None = None


@dataclass(frozen=True)
class Badge:
    """One service instance on a machine: its connector and status."""

    name: str
    status: str


@dataclass(frozen=True)
class MachineCard:
    """One machine, from its agent's last report (or from its workers alone, with no agent)."""

    id: str
    status: str
    platform: str = ""
    uptime_s: float | None = None
    gpus: tuple[Gpu, ...] = ()
    services: tuple[Badge, ...] = ()
    reported: bool = True
    """False for a machine known only from its workers (plain `emp worker`, no agent)."""

    @property
    def offline(self) -> bool:
        return self.status == OFFLINE


@dataclass(frozen=True)
class QueueRow:
    """The waiting jobs of one service with one requirements signature."""

    service: str
    sig: str
    requirements: str
    pending: int
    unworkable: int
    oldest_wait_s: float | None
    """Age of the queue's head job (the next to run: the oldest of the highest priority)."""
    reason: str = ""
    """For an unworkable signature: the requirement no live worker meets."""


@dataclass(frozen=True)
class Ended:
    """A job that ended recently (from ``job_times``)."""

    id: str
    status: str
    service: str
    duration_s: float | None
    failure_class: str
    finished_ms: int


@dataclass(frozen=True)
class FlowStep:
    """One step of a flow as the flows panel shows it."""

    name: str
    status: str
    """The job's status ('' when its record expired)."""
    progress: float | None = None
    after: tuple[str, ...] = ()
    """Its parents' step names."""


@dataclass(frozen=True)
class FlowRow:
    """A flow with a step not ended (from ``emp_flows_active``)."""

    id: str
    created_ms: int
    open: int
    """Steps not ended (all of them, not only the listed ones)."""
    steps_total: int
    steps: tuple[FlowStep, ...] = ()

    @property
    def ended(self) -> int:
        return max(0, self.steps_total - self.open)

    @property
    def more(self) -> int:
        """Steps not listed."""
        return max(0, self.steps_total - len(self.steps))


@dataclass
class WatchData:
    """Everything one frame shows. ``now_ms`` is the server's clock of the last poll (frames
    rendered between polls add the local time elapsed since, so elapsed times keep moving)."""

    namespace: str
    redis: str
    fleet: FleetState = field(default_factory=FleetState)
    now_ms: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    machines: dict[str, MachineCard] = field(default_factory=dict)
    queues: list[QueueRow] = field(default_factory=list)
    queue_rows_total: int = 0
    completed_per_min: list[int] = field(default_factory=list)
    """Oldest minute first; the last entry is the current minute."""
    failed_per_min: list[int] = field(default_factory=list)
    recent: list[Ended] = field(default_factory=list)
    connected: bool = True
    note: str = ""
    """A line the header shows (a re-snapshot, Redis lost)."""
    polls: int = 0
    flows: list[FlowRow] = field(default_factory=list)
    """Flows not ended, the oldest first (at most FLOWS_MAX)."""
    flows_total: int = 0

    def oldest_wait_s(self) -> float | None:
        waits = [q.oldest_wait_s for q in self.queues if q.pending and q.oldest_wait_s is not None]
        return max(waits) if waits else None

    def success_rate(self) -> float | None:
        done, failed = sum(self.completed_per_min), sum(self.failed_per_min)
        return None if done + failed == 0 else done / (done + failed)

    def active_jobs(self) -> list[JobView]:
        """Running jobs, the longest-running first."""
        jobs = [j for j in self.fleet.jobs.values() if j.status in ACTIVE]
        return sorted(jobs, key=lambda j: (j.started_ms or 0, j.id))


# -- builders (pure) ----------------------------------------------------------------------------


def _int_or_none(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(float(str(value)))
    except (TypeError, ValueError):
        return None


def _gpus(record: Mapping[str, Any]) -> tuple[Gpu, ...]:
    report = record.get("gpus")
    rows = report.get("gpus") if isinstance(report, Mapping) else None
    out: list[Gpu] = []
    for i, g in enumerate(rows if isinstance(rows, list) else []):
        if not isinstance(g, Mapping):
            continue
        out.append(
            Gpu(
                index=_int_or_none(g.get("index")) or i,
                name=str(g.get("name") or "?"),
                util_pct=_int_or_none(g.get("utilization_pct")),
                mem_used_mb=_int_or_none(g.get("memory_used_mb")),
                mem_total_mb=_int_or_none(g.get("memory_total_mb")),
                temp_c=_int_or_none(g.get("temperature_c")),
            )
        )
    return tuple(out)


def _platform(record: Mapping[str, Any]) -> str:
    host = record.get("host")
    if not isinstance(host, Mapping):
        return ""
    name = str(host.get("platform") or "")
    os_name = str(host.get("os") or "")
    return " · ".join(p for p in (name, os_name) if p)


def machine_cards(
    rows: Sequence[Mapping[str, Any]],
    services: Iterable[ServiceRecord],
    now_ms: int,
    known: Mapping[str, MachineCard],
    worker_machines: Iterable[str] = (),
) -> dict[str, MachineCard]:
    """Cards from ``list_machines`` rows (``record`` decoded) and the live services. A machine seen
    before (``known``) that is no longer listed stays, greyed as offline; a machine named only by
    live workers gets a card without a report."""
    badges: dict[str, list[Badge]] = {}
    for svc in services:
        badges.setdefault(svc.machine_id, []).append(Badge(svc.connector or svc.id, svc.status))
    cards: dict[str, MachineCard] = {}
    for row in rows:
        mid = str(row.get("id") or "")
        if not mid:
            continue
        record = row.get("record")
        rec: Mapping[str, Any] = record if isinstance(record, Mapping) else {}
        started = _int_or_none(row.get("started_at")) or _int_or_none(rec.get("started_at"))
        uptime = (now_ms - started) / 1000 if started and now_ms >= started else None
        status = str(row.get("status") or rec.get("status") or "?")
        cards[mid] = MachineCard(
            id=mid,
            status=OFFLINE if status in ("shutdown", "stopped") else status,
            platform=_platform(rec),
            uptime_s=uptime,
            gpus=_gpus(rec),
            services=tuple(sorted(badges.get(mid, []), key=lambda b: b.name)),
        )
    for mid in worker_machines:
        if mid and mid not in cards:
            cards[mid] = MachineCard(mid, "live", services=tuple(badges.get(mid, [])), reported=False)
    for mid, old in known.items():
        if mid not in cards:
            cards[mid] = MachineCard(
                old.id, OFFLINE, old.platform, None, old.gpus, (), old.reported
            )  # greyed, not vanished
    return dict(sorted(cards.items()))


def unmet_requirement(canonical: Canonical, service: str, workers: Sequence[dict[str, Any]]) -> str:
    """Why no live worker can run a signature: the first requirement none of the service's live
    workers meets (the rules of :mod:`emp.model.matching`, the ones `emp jobs explain` applies)."""
    serving = [w for w in workers if service in (w.get("services") or [])]
    if not serving:
        return f"no live worker serves {service!r}"
    for key, required in canonical.positive.items():
        if not any(key_matches(key, required, w, service) for w in serving):
            return f"no live worker has {describe_requirement(key, required, service)}"
    for key, required in canonical.negative.items():
        if all(key_matches(key, required, w, service) for w in serving):
            return f"every live worker is excluded by not {describe_requirement(key, required, service)}"
    return "no live worker meets all of its requirements at once"


def _short_requirements(text: str) -> str:
    return "" if text in ("", "{}", "[]") else text


def queue_rows(
    signatures: Sequence[Mapping[str, Any]],
    workers: Sequence[dict[str, Any]],
    now_ms: int,
    limit: int = QUEUE_ROWS_MAX,
) -> tuple[list[QueueRow], int]:
    """One row per signature that holds jobs, unworkable ones first, then deepest first; at most
    ``limit`` rows (and how many there were). ``workers``: live workers' capabilities, each with
    its ``services`` list, for the unworkable reasons."""
    rows: list[QueueRow] = []
    for s in signatures:
        pending = _int_or_none(s.get("pending")) or 0
        unworkable = _int_or_none(s.get("unworkable_count")) or 0
        if not pending and not unworkable:
            continue
        service, text = str(s.get("service") or ""), str(s.get("requirements") or "{}")
        head = _int_or_none(s.get("head_created_at")) or 0
        reason = ""
        if unworkable or s.get("unworkable"):
            try:
                reason = unmet_requirement(canonical_from_text(text), service, workers)
            except ValueError:
                reason = "unreadable requirements"
        rows.append(
            QueueRow(
                service=service,
                sig=str(s.get("sig") or ""),
                requirements=_short_requirements(text),
                pending=pending,
                unworkable=unworkable,
                oldest_wait_s=(now_ms - head) / 1000 if head and pending else None,
                reason=reason,
            )
        )
    rows.sort(key=lambda r: (-r.unworkable, -r.pending, r.service, r.sig))
    return rows[:limit], len(rows)


def per_minute(cumulative: Sequence[int]) -> list[int]:
    """Counts within the last 1, 2, ... N minutes → counts per minute, the oldest minute first."""
    out: list[int] = []
    prev = 0
    for n in cumulative:
        out.append(max(0, n - prev))
        prev = max(prev, n)
    return out[::-1]


def throughput(doc: Mapping[str, Any], status: str) -> list[int]:
    counts = doc.get("counts")
    values = counts.get(status) if isinstance(counts, Mapping) else None
    return per_minute([_int_or_none(v) or 0 for v in values] if isinstance(values, list) else [])


def recent_endings(doc: Mapping[str, Any], limit: int = RECENT_MAX) -> list[Ended]:
    """Completions and failures from ``job_times`` rows, the newest first (cancellations left out)."""
    out: list[Ended] = []
    rows = doc.get("rows")
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, Mapping) or row.get("status") not in (JobStatus.COMPLETED, JobStatus.FAILED):
            continue
        finished = _int_or_none(row.get("finished_at")) or 0
        began = _int_or_none(row.get("started_at")) or _int_or_none(row.get("assigned_at"))
        out.append(
            Ended(
                id=str(row.get("id") or ""),
                status=str(row.get("status")),
                service=str(row.get("service") or ""),
                duration_s=(finished - began) / 1000 if began and finished >= began else None,
                failure_class=str(row.get("failure_class") or ""),
                finished_ms=finished,
            )
        )
    out.sort(key=lambda e: (-e.finished_ms, e.id))
    return out[:limit]


def _float_or_none(value: object) -> float | None:
    try:
        return None if value in (None, "") else float(str(value))
    except (TypeError, ValueError):
        return None


def flow_rows(doc: Mapping[str, Any], limit: int = FLOWS_MAX) -> tuple[list[FlowRow], int]:
    """The flows of an ``emp_flows_active`` reply (at most ``limit``) and how many are not ended."""
    out: list[FlowRow] = []
    flows = doc.get("flows")
    for f in flows if isinstance(flows, list) else []:
        if not isinstance(f, Mapping) or not f.get("id"):
            continue
        steps: list[FlowStep] = []
        raw_steps = f.get("steps")
        for s in raw_steps if isinstance(raw_steps, list) else []:
            if not isinstance(s, Mapping):
                continue
            after = s.get("after")
            steps.append(
                FlowStep(
                    name=str(s.get("name") or s.get("id") or "?"),
                    status=str(s.get("status") or ""),
                    progress=_float_or_none(s.get("progress")),
                    after=tuple(str(a) for a in after) if isinstance(after, list) else (),
                )
            )
        out.append(
            FlowRow(
                id=str(f["id"]),
                created_ms=_int_or_none(f.get("created_at")) or 0,
                open=_int_or_none(f.get("open")) or 0,
                steps_total=_int_or_none(f.get("steps_total")) or len(steps),
                steps=tuple(steps),
            )
        )
    return out[:limit], _int_or_none(doc.get("total")) or len(out)


def prune(state: FleetState, ended_keep: int = ENDED_KEEP, waiting_keep: int = WAITING_KEEP) -> None:
    """Bound the fold: keep every running job, the newest ``ended_keep`` ended ones and the first
    ``waiting_keep`` waiting ones (by the order the view learnt of them)."""
    ended = [j.id for j in state.jobs.values() if j.status in ENDED]
    waiting = [j.id for j in state.jobs.values() if j.status not in ENDED and j.status not in ACTIVE]
    drop = ended[: max(0, len(ended) - ended_keep)] + waiting[waiting_keep:]
    for job_id in drop:
        del state.jobs[job_id]
    state.joined = len(state.jobs)


def to_json(data: WatchData) -> dict[str, Any]:
    """The frame's data as JSON: what `emp watch --json` prints."""
    fleet = data.fleet
    return {
        "namespace": data.namespace,
        "redis": data.redis,
        "now_ms": data.now_ms,
        "counts": data.counts,
        "throughput": {"completed_per_min": data.completed_per_min, "failed_per_min": data.failed_per_min},
        "success_rate": data.success_rate(),
        "oldest_pending_wait_s": data.oldest_wait_s(),
        "machines": [asdict(m) for m in data.machines.values()],
        "workers": [asdict(w) for w in sorted(fleet.workers.values(), key=lambda w: w.id)],
        "queues": [asdict(q) for q in data.queues],
        "active_jobs": [asdict(j) for j in data.active_jobs()],
        "recent": [asdict(e) for e in data.recent],
        "resnapshots": fleet.resnapshots,
        "flows": [asdict(f) for f in data.flows],
        "flows_total": data.flows_total,
    }
