"""Redis time per processed job, from ``INFO commandstats`` (PURE: no Redis here).

The runner resets the server's statistics (CONFIG RESETSTAT) before an end-to-end run and reads
``INFO commandstats`` after it; these functions turn that reading into costs per processed job.
Since Redis 7 the commands a Function runs are counted in commandstats as well as the FCALL that
ran them, so FCALL's time *includes* its inner commands' time: "Lua" below is FCALL's time minus
every other command's, the part spent in the interpreter, argument and reply conversion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from emp.bench.report import CommandCost

FUNCTION_COMMANDS = ("fcall", "fcall_ro")
"""The commands whose time is emp's Redis time per job (the Functions, inner commands included)."""

BENCH_COMMANDS = frozenset({"info", "config|resetstat", "config|get", "config|set", "ping", "client|setname"})
"""What the bench itself sends around a run: never part of a job's cost."""


@dataclass(frozen=True, slots=True)
class Totals:
    """One command's totals over a stretch: calls and µs (INFO commandstats ``calls`` and ``usec``)."""

    calls: int
    usec: int


def parse(info: Mapping[str, Any]) -> dict[str, Totals]:
    """redis-py's ``INFO commandstats`` dict (``{"cmdstat_xadd": {"calls": 4, "usec": 12, ...}}``)
    → command name → :class:`Totals`, without the bench's own commands."""
    out: dict[str, Totals] = {}
    for key, stat in info.items():
        if not key.startswith("cmdstat_") or not isinstance(stat, Mapping):
            continue
        name = key.removeprefix("cmdstat_").lower()
        if name in BENCH_COMMANDS:
            continue
        out[name] = Totals(int(stat.get("calls", 0)), int(stat.get("usec", 0)))
    return out


def without_calls(totals: Mapping[str, Totals], command: str, calls: int) -> dict[str, Totals]:
    """``totals`` less ``calls`` calls of ``command`` at its average cost (the bench's own polls)."""
    out = dict(totals)
    have = out.get(command)
    if have is None or calls <= 0:
        return out
    left = max(0, have.calls - calls)
    if left == 0:
        del out[command]
        return out
    out[command] = Totals(left, round(have.usec * left / have.calls))
    return out


def add(runs: Iterable[Mapping[str, Totals]]) -> dict[str, Totals]:
    """The sum of several stretches, command by command."""
    out: dict[str, Totals] = {}
    for totals in runs:
        for name, t in totals.items():
            have = out.get(name, Totals(0, 0))
            out[name] = Totals(have.calls + t.calls, have.usec + t.usec)
    return out


def function_usec(totals: Mapping[str, Totals]) -> int:
    """µs spent in Functions (FCALL and FCALL_RO), their inner commands included."""
    return sum(totals[c].usec for c in FUNCTION_COMMANDS if c in totals)


def per_job(totals: Mapping[str, Totals], jobs: int, min_calls_per_job: float = 0.005) -> list[CommandCost]:
    """Calls and µs per processed job, costliest first; commands rarer than ``min_calls_per_job``
    are left out (the rows would be noise). A ``lua`` row gives FCALL minus every other command."""
    if jobs <= 0:
        raise ValueError("jobs must be positive")
    rows = [
        CommandCost(name, t.calls / jobs, t.usec / jobs, t.usec / t.calls if t.calls else 0.0)
        for name, t in totals.items()
        if t.calls / jobs >= min_calls_per_job
    ]
    functions = function_usec(totals)
    others = sum(t.usec for name, t in totals.items() if name not in FUNCTION_COMMANDS)
    if functions:
        rows.append(CommandCost("lua", 0.0, max(0, functions - others) / jobs, 0.0))
    return sorted(rows, key=lambda r: (-r.us_per_job, r.command))
