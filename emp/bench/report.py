"""Bench results as data, and the two ways they are shown: a rich Table and a JSON dict.

PURE: nothing here measures, prints or talks to Redis. ``emp.bench.runner`` produces
:class:`Metric` values; ``emp.cli.bench`` prints what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.table import Table
from rich.text import Text

MEASUREMENTS = (
    "submit",
    "e2e",
    "pickup",
    "mixed_pickup",
    "depth",
    "sigs",
    "slowest",
    "memory",
    "comfyui",
    "api",
    "watch",
    "cluster",
)
"""Measurement names, in the order they run (``--only`` takes a subset)."""

NOT_QUICK = ("cluster",)
"""Left out of ``--quick`` unless named in ``--only`` (the cluster run starts a cluster and 4 workers)."""

Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One measured figure.

    ``value`` is in ``unit``. ``target`` (same unit), when there is one, is a minimum when
    ``better == "higher"`` and a maximum when ``better == "lower"``. ``bound == "upper"`` means the
    true value is below ``value`` (e.g. no call was slow enough to be logged: "< 1 ms").
    """

    key: str
    label: str
    value: float
    unit: str
    target: float | None = None
    better: Better = "higher"
    bound: Literal["exact", "upper"] = "exact"
    note: str = ""


@dataclass(frozen=True, slots=True)
class CommandCost:
    """One Redis command's cost per processed job (INFO commandstats over a run, divided by its jobs).

    ``command`` ``"lua"`` is not a command: FCALL's time less every other command's (see
    :mod:`emp.bench.commandstats`), its ``calls_per_job`` and ``us_per_call`` are 0."""

    command: str
    calls_per_job: float
    us_per_job: float
    us_per_call: float


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Everything one `emp bench` run produced."""

    metrics: list[Metric] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    """measurement name → why it could not run (the other measurements still ran)."""
    duration_s: float = 0.0
    redis_commands: dict[str, list[CommandCost]] = field(default_factory=dict)
    """run name (e.g. ``"e2e"`` for all end-to-end runs, ``"e2e_2p_16c"``) → Redis commands per job."""


def passed(m: Metric) -> bool | None:
    """True/False against the target; None when the metric has no target."""
    if m.target is None:
        return None
    if m.better == "higher":
        return m.value >= m.target
    return m.value <= m.target


def _num(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def format_value(m: Metric) -> str:
    """The value with its unit, e.g. ``12,345 jobs/s``, ``0.41 ms``, ``< 1 ms``, ``1.08×``."""
    text = _num(m.value)
    if m.unit == "x":
        text += "×"
    elif m.unit:
        text += f" {m.unit}"
    return f"< {text}" if m.bound == "upper" else text


def format_target(m: Metric) -> str:
    if m.target is None:
        return ""
    shown = format_value(Metric(m.key, m.label, m.target, m.unit))
    return ("≥ " if m.better == "higher" else "≤ ") + shown


def to_table(result: BenchResult, title: str = "emp bench") -> Table:
    """A rich Table: metric, value, target, pass/fail, note; failed measurements at the end."""
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")
    table.add_column("note", style="dim")
    for m in result.metrics:
        ok = passed(m)
        verdict = Text("") if ok is None else Text("pass", style="green") if ok else Text("FAIL", style="bold red")
        table.add_row(m.label, format_value(m), format_target(m), verdict, m.note)
    for name, why in result.errors.items():
        table.add_row(f"{name}: not measured", "", "", Text("error", style="bold red"), why)
    return table


def to_cost_table(name: str, rows: Sequence[CommandCost]) -> Table:
    """Where a run's Redis time per job goes: one row per command, costliest first."""
    table = Table(title=f"Redis commands per processed job: {name}", title_justify="left")
    table.add_column("command")
    table.add_column("calls/job", justify="right")
    table.add_column("µs/job", justify="right")
    table.add_column("µs/call", justify="right")
    for r in rows:
        if r.command == "lua":
            table.add_row("(Lua: FCALL less the other commands)", "", f"{r.us_per_job:.1f}", "")
        else:
            table.add_row(r.command, f"{r.calls_per_job:.2f}", f"{r.us_per_job:.1f}", f"{r.us_per_call:.2f}")
    return table


def summary(result: BenchResult) -> tuple[int, int, int]:
    """(passed, failed, measured without a target)."""
    verdicts = [passed(m) for m in result.metrics]
    return (
        sum(1 for v in verdicts if v is True),
        sum(1 for v in verdicts if v is False),
        sum(1 for v in verdicts if v is None),
    )


def metric_to_dict(m: Metric) -> dict[str, Any]:
    return {
        "label": m.label,
        "value": m.value,
        "unit": m.unit,
        "display": format_value(m),
        "target": m.target,
        "better": m.better,
        "bound": m.bound,
        "passed": passed(m),
        "note": m.note,
    }


def to_json(result: BenchResult) -> dict[str, Any]:
    """A JSON-ready dict: ``metrics`` keyed by metric key (in measurement order), plus a summary."""
    ok, failed, untargeted = summary(result)
    return {
        "metrics": {m.key: metric_to_dict(m) for m in result.metrics},
        "errors": dict(result.errors),
        "params": dict(result.params),
        "summary": {"passed": ok, "failed": failed, "no_target": untargeted, "errors": len(result.errors)},
        "duration_s": round(result.duration_s, 3),
        "redis_commands": {
            name: [
                {
                    "command": r.command,
                    "calls_per_job": round(r.calls_per_job, 4),
                    "us_per_job": round(r.us_per_job, 3),
                    "us_per_call": round(r.us_per_call, 3),
                }
                for r in rows
            ]
            for name, rows in result.redis_commands.items()
        },
    }


def all_passed(result: BenchResult) -> bool:
    """No target missed and no measurement failed to run."""
    return not result.errors and all(passed(m) is not False for m in result.metrics)


def merge(results: Sequence[BenchResult]) -> BenchResult:
    """Concatenate several results (e.g. one per measurement) in order."""
    out = BenchResult()
    for r in results:
        out.metrics.extend(r.metrics)
        out.params.update(r.params)
        out.errors.update(r.errors)
        out.redis_commands.update(r.redis_commands)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank: a value that was actually observed."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
