"""GET /metrics: the Prometheus text exposition format (version 0.0.4), written here (pure, no I/O).

The format: per metric a ``# HELP name text`` and a ``# TYPE name kind`` line, then one line per
sample, ``name{label="value",...} number``; label values escape ``\\``, ``"`` and newlines, help
text escapes ``\\`` and newlines; numbers are Go-style floats (``+Inf``, ``-Inf``, ``NaN``).

What is exported (:func:`build`):

    emp_jobs{status}                                gauge   jobs per status now
    emp_queue_depth{service,sig}                    gauge   pending jobs per requirements signature
    emp_queue_unworkable{service,sig}               gauge   unworkable jobs per signature
    emp_jobs_submitted_total / _retried_total / _requeued_total   counter  running totals in Redis
    emp_jobs_ended_recent{service,status,failure_class}  gauge  jobs that ended in the last window
    emp_job_wait_seconds_recent{service}            histogram  wait times of those jobs
    emp_job_run_seconds_recent{service}             histogram  run times of those jobs
    emp_workers{state}                              gauge   live workers per state
    emp_redis_latency_seconds                       gauge   one PING round trip from the coordinator
    emp_up                                          gauge   1 when Redis answered
    emp_redis_restarts_total / emp_redis_state_lost_total   counter  Redis restarts this coordinator
                                                    noticed, and those that lost data (redis_watch.py)

The ``_recent`` families cover ``window_s`` (defaults.METRICS_WINDOW_S) and are built from the
bounded sample of :mod:`emp.coordinator.api.stats`: Redis keeps no monotonic per-service counter
(the done indexes are trimmed by retention), so these are gauges of a rolling window; the
histograms are meant for ``histogram_quantile`` without ``rate()``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from emp.coordinator.api.stats import EndedJob, ServiceDepth

__all__ = ["Metric", "Sample", "build", "escape_label", "format_value", "histogram", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float
    suffix: str = ""


@dataclass(slots=True)
class Metric:
    name: str
    kind: str  # counter | gauge | histogram | untyped
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(tuple(labels.items()), value))


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    """The exposition text: every metric with its HELP and TYPE, then its samples; ends with a newline."""
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {_escape_help(m.help)}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        for s in m.samples:
            labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in s.labels)
            lines.append(
                f"{m.name}{s.suffix}{{{labels}}} {format_value(s.value)}"
                if labels
                else f"{m.name}{s.suffix} {format_value(s.value)}"
            )
    return "\n".join(lines) + "\n"


def histogram(
    name: str, help: str, series: Mapping[tuple[tuple[str, str], ...], Sequence[float]], buckets: Sequence[float]
) -> Metric:
    """A histogram per label set: cumulative ``_bucket{le}`` (with ``+Inf``), ``_sum`` and ``_count``."""
    m = Metric(name, "histogram", help)
    bounds = sorted(buckets)
    for labels, values in series.items():
        for le in bounds:
            n = sum(1 for v in values if v <= le)
            m.samples.append(Sample((*labels, ("le", format_value(le))), n, "_bucket"))
        m.samples.append(Sample((*labels, ("le", "+Inf")), len(values), "_bucket"))
        m.samples.append(Sample(labels, float(sum(values)), "_sum"))
        m.samples.append(Sample(labels, len(values), "_count"))
    return m


@dataclass(frozen=True, slots=True)
class MetricsInput:
    """Everything /metrics reports, read beforehand (``None`` latency: Redis did not answer)."""

    up: bool
    redis_latency_s: float | None = None
    status_counts: Mapping[str, int] = field(default_factory=dict)
    depths: Sequence[ServiceDepth] = ()
    counters: Mapping[str, int] = field(default_factory=dict)
    recent: Sequence[EndedJob] = ()
    workers_by_state: Mapping[str, int] = field(default_factory=dict)
    window_s: int = 300
    buckets_s: Sequence[float] = ()
    restarts: tuple[int, int] | None = None
    """(Redis restarts this coordinator noticed, of which lost data); None: it watches none."""


def build(data: MetricsInput) -> list[Metric]:
    """The metric families of /metrics from what was read (see the module docstring)."""
    up = Metric("emp_up", "gauge", "1 when the coordinator reached Redis for this scrape, else 0")
    up.add(1 if data.up else 0)
    out = [up]
    if data.restarts is not None:
        restarts, lost = data.restarts
        for name, what, n in (
            ("emp_redis_restarts_total", "Redis restarts this coordinator noticed (a new run_id)", restarts),
            ("emp_redis_state_lost_total", "Redis restarts that came back without all of its data", lost),
        ):
            c = Metric(name, "counter", what)
            c.add(n)
            out.append(c)
    if data.redis_latency_s is not None:
        lat = Metric("emp_redis_latency_seconds", "gauge", "One PING round trip from the coordinator to Redis")
        lat.add(data.redis_latency_s)
        out.append(lat)
    if not data.up:
        return out

    jobs = Metric("emp_jobs", "gauge", "Jobs per status now (ended jobs until retention removes them)")
    for status, n in sorted(data.status_counts.items()):
        jobs.add(n, status=status)
    depth = Metric("emp_queue_depth", "gauge", "Pending jobs per service and requirements signature")
    unworkable = Metric("emp_queue_unworkable", "gauge", "Unworkable jobs per service and requirements signature")
    for svc in data.depths:
        for d in svc.signatures:
            depth.add(d.pending, service=d.service, sig=d.sig)
            unworkable.add(d.unworkable, service=d.service, sig=d.sig)
    out += [jobs, depth, unworkable]
    for key, what in (("submitted", "submitted"), ("retried", "retried after a failure"), ("requeued", "requeued")):
        c = Metric(f"emp_jobs_{key}_total", "counter", f"Jobs {what} since the namespace began (Redis stats hash)")
        c.add(data.counters.get(key, 0))
        out.append(c)

    ended = Metric(
        "emp_jobs_ended_recent",
        "gauge",
        f"Jobs that ended in the last {data.window_s} s by service, status and failure class (sampled)",
    )
    tally = Counter((j.service, j.status, j.failure_class or "") for j in data.recent)
    for (service, status, failure_class), n in sorted(tally.items()):
        ended.add(n, service=service, status=status, failure_class=failure_class)
    out.append(ended)
    waits: dict[tuple[tuple[str, str], ...], list[float]] = {}
    runs: dict[tuple[tuple[str, str], ...], list[float]] = {}
    for j in data.recent:
        labels = (("service", j.service),)
        if (w := j.wait_ms) is not None:
            waits.setdefault(labels, []).append(w / 1000)
        if j.status != "cancelled" and (r := j.run_ms) is not None:
            runs.setdefault(labels, []).append(r / 1000)
    out.append(
        histogram(
            "emp_job_wait_seconds_recent",
            f"Wait (ready to start) of jobs that ended in the last {data.window_s} s",
            dict(sorted(waits.items())),
            data.buckets_s,
        )
    )
    out.append(
        histogram(
            "emp_job_run_seconds_recent",
            f"Run time (start to end) of jobs that ended in the last {data.window_s} s",
            dict(sorted(runs.items())),
            data.buckets_s,
        )
    )
    workers = Metric("emp_workers", "gauge", "Live workers per state")
    for state, n in sorted(data.workers_by_state.items()):
        workers.add(n, state=state)
    out.append(workers)
    return out
