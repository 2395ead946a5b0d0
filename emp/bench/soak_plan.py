"""`emp bench soak`'s plan, job mix, fault choices and report: the pure part (no I/O, no clock).

Everything random comes from one ``random.Random(seed)`` the caller owns, so a seed replays the same
mix of jobs and the same order of faults (the timing of a run still varies with the machine).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from emp.model.events import Event, EventType

FAULT_KINDS = ("kill", "pause", "drain", "reset", "drop", "blackhole", "latency", "redis_pause")
"""What the soak injects (``--faults`` takes a subset):

- ``kill``: SIGKILL a worker process (restarted);
- ``pause``: SIGSTOP a worker process for longer than the lease, then SIGCONT (its jobs are requeued and
  its late writes fenced);
- ``drain``: SIGTERM a worker process (it drains for ``--drain-timeout`` and exits; restarted);
- ``reset``: cut every connection of one worker process (TCP RST through its fault proxy);
- ``drop``: one worker's replies dropped for a moment (the calls went through; the worker times out);
- ``blackhole``: one worker's traffic dropped both ways for a moment;
- ``latency``: 50 ms added to every chunk of one worker's traffic for a few seconds;
- ``redis_pause``: SIGSTOP redis-server for less than a third of the lease, then SIGCONT.
"""

WORKER_FAULTS = frozenset({"kill", "pause", "drain", "reset", "drop", "blackhole", "latency"})
DEFAULT_WEIGHTS = {
    "kill": 3,
    "pause": 2,
    "drain": 2,
    "reset": 3,
    "drop": 2,
    "blackhole": 2,
    "latency": 2,
    "redis_pause": 1,
}

BUCKET_S = 10


@dataclass(frozen=True, slots=True)
class SoakPlan:
    minutes: float = 10.0
    seed: int = 1
    workers: int = 4
    """Worker processes."""
    concurrency: int = 4
    """Slots (worker ids) per process."""
    lease_s: float = 5.0
    rate: float = 12.0
    """Jobs submitted per second (on average)."""
    max_backlog: int = 300
    """The submitter waits while more than this many jobs are not finished (the queue stays bounded)."""
    fault_every_s: float = 5.0
    """Mean time between two faults (each gap is uniform in 0.5x..1.5x of it)."""
    faults: tuple[str, ...] = FAULT_KINDS
    poison_every_s: float = 60.0
    """A crash job (it kills every worker process that runs it) every this many seconds; 0: none."""
    drain_timeout_s: float = 2.0
    settle_timeout_s: float = 180.0
    """After the faults stop: how long every accepted job has to reach a terminal state."""

    def __post_init__(self) -> None:
        unknown = [k for k in self.faults if k not in FAULT_KINDS]
        if unknown:
            raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}: choose from {', '.join(FAULT_KINDS)}")
        if self.minutes <= 0 or self.workers < 1 or self.concurrency < 1 or self.lease_s <= 0 or self.rate <= 0:
            raise ValueError("minutes, workers, concurrency, lease and rate must be positive")

    @property
    def duration_s(self) -> float:
        return self.minutes * 60

    @property
    def reply_timeout_s(self) -> float:
        """The workers' Redis reply timeout: well inside the lease, so a lost reply costs a retry, not the lease."""
        return round(max(0.5, self.lease_s * 0.4), 3)

    def params(self) -> dict[str, Any]:
        return asdict(self) | {"reply_timeout_s": self.reply_timeout_s}


def parse_faults(text: str | None) -> tuple[str, ...]:
    """``"kill,pause"`` → the kinds in their canonical order; ``"none"`` → no faults; ValueError on unknown."""
    if text is None or text.strip() == "" or text.strip().lower() == "all":
        return FAULT_KINDS
    if text.strip().lower() == "none":
        return ()
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAULT_KINDS]
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}: choose from {', '.join(FAULT_KINDS)}")
    return tuple(k for k in FAULT_KINDS if k in names)


# -- the job mix ------------------------------------------------------------------------------------


def job_payload(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """(kind, simulation payload) of the next ordinary job: mostly short, some long (past the lease, so
    heartbeats keep them), some that fail transiently before they succeed, a few malformed ones."""
    r = rng.random()
    if r < 0.10:
        return "noop", {"steps": 0}
    if r < 0.62:
        return "short", {"steps": rng.randint(1, 3), "step_ms": rng.randint(20, 60)}
    if r < 0.77:
        return "long", {"steps": rng.randint(10, 25), "step_ms": rng.randint(200, 300)}
    if r < 0.95:
        return "transient", {"steps": 2, "step_ms": 50, "fail": "transient", "fail_attempts": rng.randint(1, 2)}
    return "malformed", {"steps": 1, "step_ms": 20, "fail": "malformed"}


POISON_PAYLOAD: dict[str, Any] = {"steps": 2, "step_ms": 50, "fail": "crash"}
"""Kills the worker process on every attempt: stopped after max_lost_leases lost leases (worker_lost)."""


def job_doc(job_id: str, payload: dict[str, Any], priority: int) -> dict[str, Any]:
    """A submission document, as `emp submit` takes it (turned into a wire by parse_submission)."""
    return {"id": job_id, "service": "simulation", "payload": payload, "priority": priority, "max_attempts": 3}


def priority(rng: random.Random) -> int:
    return rng.choice((10, 50, 50, 50, 90))


# -- faults ---------------------------------------------------------------------------------------


def next_gap_s(rng: random.Random, plan: SoakPlan) -> float:
    return plan.fault_every_s * rng.uniform(0.5, 1.5)


def pick_fault(rng: random.Random, kinds: Sequence[str]) -> str:
    weights = [DEFAULT_WEIGHTS[k] for k in kinds]
    return rng.choices(list(kinds), weights=weights, k=1)[0]


def fault_duration_s(rng: random.Random, kind: str, plan: SoakPlan) -> float:
    """How long a fault lasts before it is reverted (0: a one-off, as kill, drain and reset are)."""
    lease = plan.lease_s
    if kind == "pause":
        # Past the lease, so its jobs are requeued; short of 1.4 leases, so the zombie's run overlaps the
        # next attempt's by less than one lease (the checker's fencing bound) once it wakes and is told.
        return lease * rng.uniform(1.1, 1.3)
    if kind == "redis_pause":
        return min(1.0, lease / 3) * rng.uniform(0.3, 1.0)
    if kind in ("drop", "blackhole"):
        # A blip: at most one reply timeout, so a worker loses at most one heartbeat to it (a partition
        # longer than the lease is T10's scenario, tests/chaos/).
        return rng.uniform(0.3, 1.0) * plan.reply_timeout_s
    if kind == "latency":
        return rng.uniform(2.0, 5.0)
    return 0.0


# -- the report -------------------------------------------------------------------------------------


def completions_per_bucket(events: Iterable[Event], start_ms: int, end_ms: int, bucket_s: int = BUCKET_S) -> list[int]:
    """job_completed events per ``bucket_s`` from ``start_ms`` (server ms) to ``end_ms``."""
    width = bucket_s * 1000
    n = max(1, -(-(end_ms - start_ms) // width))
    out = [0] * n
    for e in events:
        if e.type == EventType.JOB_COMPLETED and e.ts is not None and start_ms <= e.ts:
            out[min(n - 1, (e.ts - start_ms) // width)] += 1
    return out


def per_minute(buckets: Sequence[int], bucket_s: int = BUCKET_S) -> list[int]:
    per = max(1, 60 // bucket_s)
    return [sum(buckets[i : i + per]) for i in range(0, len(buckets), per)]


@dataclass(slots=True)
class FaultLog:
    """Faults as they were injected: kind → count, and each one (seconds since start, kind, target, length)."""

    counts: Counter[str] = field(default_factory=Counter)
    entries: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    """Faults that found no worker to act on (every one busy with another fault, or restarting)."""

    def add(self, t_s: float, kind: str, target: str, length_s: float) -> None:
        self.counts[kind] += 1
        self.entries.append({"t_s": round(t_s, 2), "kind": kind, "target": target, "length_s": round(length_s, 2)})


def render_text(report: dict[str, Any]) -> str:
    """The human summary of :func:`emp.bench.soak.run_soak`'s report dict."""
    v = report["verdict"]
    lines = [
        f"soak: {'OK' if report['ok'] else 'FAILED'} after {report['soak_s']:.0f} s of faults "
        f"(+{report['settle_s']:.0f} s to settle), seed {report['params']['seed']}",
        f"  jobs: {v['accepted']} accepted, {v['in_doubt']} in doubt ({v['recovered']} recovered), "
        f"attempts {v['attempts']}, outcomes {json.dumps(v['outcomes'])}",
        f"  lost {v['lost']}, duplicated commits {v['duplicated_commits']}, multiple terminals "
        f"{v['multiple_terminals']}, concurrent attempts {v['concurrent_attempts']}, over limits "
        f"{v['over_limits']}, unexpected {v['unexpected']}",
        f"  submitted: {json.dumps(report['jobs_submitted'])}; "
        f"failed by class: {json.dumps(report['failed_by_class'])}",
        f"  faults: {json.dumps(report['faults'])} (skipped {report['faults_skipped']})",
        f"  workers: {report['workers']['started']} processes started, {report['workers']['crashed']} died "
        "of poison or faults other than kill",
        f"  completed per minute: {report['throughput']['per_minute']}",
        f"  completed per {report['throughput']['bucket_s']} s: {report['throughput']['completed']}",
    ]
    if report["recorder_gaps"]:
        lines.append(f"  the event record has gaps: {report['recorder_gaps'][:3]}")
    for name in ("lost", "duplicated_commits", "multiple_terminals", "concurrent_attempts", "over_limits"):
        if v.get(f"{name}_examples"):
            lines.append(f"  {name}: {v[f'{name}_examples']}")
    if report.get("logs_kept"):
        lines.append(f"  worker logs kept in {report['logs_kept']}")
    return "\n".join(lines)
