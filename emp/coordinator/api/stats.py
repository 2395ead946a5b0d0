"""The arithmetic of GET /api/stats and /metrics (pure: numbers in, numbers out, no I/O).

Inputs come from one read-only Function call (``emp_job_times``): per status, how many jobs ended
in each recent window (exact counts from the ``done:<status>`` indexes), and the times of the newest
ended jobs (a bounded sample). From them:

- throughput: completed jobs per second over the window;
- success rate: completed / (completed + failed) (cancelled jobs are a user's choice, not counted);
- wait time: from when the job could run (created, or its run_at) to its (last) start;
- run time: from its (last) start to its end.
Percentiles are nearest-rank over the sample; ``sampled`` says the sample did not hold every job of
the window (then they describe the newest ones).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ENDED_STATUSES",
    "Depth",
    "EndedJob",
    "Percentiles",
    "WindowStats",
    "depths",
    "percentile",
    "summarize",
    "window_stats",
]

ENDED_STATUSES = ("completed", "failed", "cancelled")


def _int(v: Any) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class EndedJob:
    """One ended job of the sample (times in server epoch ms)."""

    status: str
    service: str
    failure_class: str | None
    created_at: int | None
    run_at: int | None
    assigned_at: int | None
    started_at: int | None
    finished_at: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EndedJob:
        return cls(
            status=str(row.get("status") or ""),
            service=str(row.get("service") or ""),
            failure_class=str(row["failure_class"]) if row.get("failure_class") else None,
            created_at=_int(row.get("created_at")),
            run_at=_int(row.get("run_at")),
            assigned_at=_int(row.get("assigned_at")),
            started_at=_int(row.get("started_at")),
            finished_at=_int(row.get("finished_at")),
        )

    @property
    def wait_ms(self) -> int | None:
        """From when it could run (created, or run_at if later) to its start; None if it never started."""
        start = self.started_at if self.started_at is not None else self.assigned_at
        if start is None or self.created_at is None:
            return None
        ready = max(self.created_at, self.run_at or 0)
        return max(0, start - ready)

    @property
    def run_ms(self) -> int | None:
        start = self.started_at if self.started_at is not None else self.assigned_at
        if start is None or self.finished_at is None:
            return None
        return max(0, self.finished_at - start)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Seconds; None when no job of the sample has the time."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None

    @classmethod
    def of_ms(cls, values_ms: Iterable[int]) -> Percentiles:
        values = sorted(v / 1000 for v in values_ms)
        return cls(
            count=len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=values[-1] if values else None,
        )


@dataclass(frozen=True, slots=True)
class WindowStats:
    window_s: int
    ended: dict[str, int]
    throughput_per_s: float
    success_rate: float | None
    wait_s: Percentiles
    run_s: Percentiles
    sample_size: int
    sampled: bool


def window_stats(
    windows_s: Sequence[int],
    counts: Mapping[str, Sequence[int]],
    rows: Sequence[EndedJob],
    now_ms: int,
) -> list[WindowStats]:
    """One :class:`WindowStats` per window. ``counts[status][i]``: jobs of that status that ended in
    ``windows_s[i]`` (exact); ``rows``: the sample."""
    out = []
    for i, window in enumerate(windows_s):
        since = now_ms - window * 1000
        ended = {st: int(counts.get(st, [0] * len(windows_s))[i]) for st in ENDED_STATUSES}
        inside = [r for r in rows if r.finished_at is not None and r.finished_at >= since]
        done = ended["completed"] + ended["failed"]
        sampled = any(ended[st] > sum(1 for r in inside if r.status == st) for st in ENDED_STATUSES)
        out.append(
            WindowStats(
                window_s=window,
                ended=ended,
                throughput_per_s=ended["completed"] / window if window > 0 else 0.0,
                success_rate=ended["completed"] / done if done else None,
                wait_s=Percentiles.of_ms(w for r in inside if (w := r.wait_ms) is not None),
                run_s=Percentiles.of_ms(v for r in inside if r.status != "cancelled" and (v := r.run_ms) is not None),
                sample_size=len(inside),
                sampled=sampled,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Depth:
    """Jobs waiting in one requirements signature of one service."""

    service: str
    sig: str
    requirements: Any
    pending: int
    unworkable: int
    head_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class ServiceDepth:
    service: str
    pending: int
    unworkable: int
    signatures: list[Depth] = field(default_factory=list)


def depths(rows: Iterable[Mapping[str, Any]], now_ms: int) -> list[ServiceDepth]:
    """Signature rows (``emp_signatures``) grouped per service, both sorted by name."""
    per: dict[str, list[Depth]] = {}
    for row in rows:
        head = _int(row.get("head_created_at"))
        d = Depth(
            service=str(row.get("service", "")),
            sig=str(row.get("sig", "")),
            requirements=row.get("requirements"),
            pending=_int(row.get("pending")) or 0,
            unworkable=_int(row.get("unworkable_count")) or 0,
            head_age_s=max(0.0, (now_ms - head) / 1000) if head else None,
        )
        per.setdefault(d.service, []).append(d)
    return [
        ServiceDepth(
            service=svc,
            pending=sum(d.pending for d in sigs),
            unworkable=sum(d.unworkable for d in sigs),
            signatures=sorted(sigs, key=lambda d: d.sig),
        )
        for svc, sigs in sorted(per.items())
    ]


def oldest_pending_s(services: Iterable[ServiceDepth]) -> float | None:
    """The longest a queue's next job has waited (the heads' ages; None: nothing pending)."""
    ages = [d.head_age_s for svc in services for d in svc.signatures if d.pending and d.head_age_s is not None]
    return max(ages) if ages else None


def summarize(windows_s: Sequence[int], reply: Mapping[str, Any]) -> tuple[int, list[WindowStats], list[EndedJob]]:
    """(server now ms, per-window stats, sample) from the ``emp_job_times`` reply."""
    now = _int(reply.get("now")) or 0
    raw_counts = reply.get("counts")
    counts: dict[str, list[int]] = {}
    if isinstance(raw_counts, Mapping):
        for st in ENDED_STATUSES:
            values = raw_counts.get(st)
            counts[st] = [(_int(v) or 0) for v in values] if isinstance(values, list) else [0] * len(windows_s)
    raw_rows = reply.get("rows")
    rows = [EndedJob.from_row(r) for r in raw_rows if isinstance(r, Mapping)] if isinstance(raw_rows, list) else []
    return now, window_stats(windows_s, counts, rows, now), rows
