"""Recurring schedules, without I/O: what a schedule is, when it runs next, and what a late pass fires.

A schedule submits one job (a validated template, see :func:`emp.client.build.prepare_wires`) at every
*occurrence* of its timing: a cron expression read in a time zone (``--cron "*/5 * * * *" --tz
Europe/Paris``), or a fixed period (``--every 30s``). The occurrence time, in epoch ms, is the
idempotency key of the submission: the job id is ``sched:<name>:<occurrence_ms>`` and the fire Function
(emp/redis/functions/schedule_fire.lua) submits it only while the schedule's ``last_fired`` is older.

Timing rules (docs/schedules.md):

- ``--every``: occurrences are the multiples of the period since the Unix epoch (``--every 1m`` fires
  at each minute's second 0, ``--every 30s`` at :00 and :30), as BullMQ's ``every`` does: every
  coordinator computes the same times, and a schedule added twice fires at the same instants.
- ``--cron``: 5 fields (minute precision) or 6 (a leading seconds field), read by cronsim in the
  schedule's zone (zoneinfo; default UTC). Daylight saving time follows Debian cron, as cronsim does:
  a time that falls in the skipped hour of spring runs once at the jump, a time in the repeated hour
  of autumn runs once (the first pass); wildcard-hour expressions (``*/5 * * * *``) follow the wall
  clock, so the skipped hour has no occurrences.
- Late passes (:func:`plan`): an occurrence at most ``grace_ms`` old is *due* and fired on its own
  (a pass that came late, a leader change). Older ones were *missed* (every coordinator was down):
  policy ``skip`` drops them, ``once`` fires a single job for all of them (its occurrence is the
  latest missed one). Either way the schedule then goes on from the next occurrence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from emp import defaults

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_EVERY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ScheduleError(ValueError):
    """A schedule that cannot be accepted (bad name, cron, period, zone or policy)."""


class Missed(StrEnum):
    """What a pass does with occurrences older than the grace (every coordinator was down)."""

    SKIP = "skip"
    """Drop them: the schedule goes on with the next occurrence (the default)."""
    ONCE = "once"
    """Submit one job for all of them (at the latest missed occurrence), then go on."""


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule runs: ``cron`` (with ``tz``) or ``every_ms``, never both."""

    cron: str | None = None
    tz: str = "UTC"
    every_ms: int | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every_ms is None):
            raise ScheduleError("give exactly one of --cron and --every")
        if self.every_ms is not None:
            if self.tz != "UTC":
                raise ScheduleError("--tz applies to --cron only (--every counts from the epoch, in UTC)")
            if not defaults.SCHEDULE_EVERY_MIN_MS <= self.every_ms <= defaults.SCHEDULE_EVERY_MAX_MS:
                raise ScheduleError(
                    f"--every must be between {defaults.SCHEDULE_EVERY_MIN_MS} ms and"
                    f" {defaults.SCHEDULE_EVERY_MAX_MS // 86_400_000} days"
                )
            return
        zone(self.tz)
        assert self.cron is not None
        fields = self.cron.split()
        if len(fields) not in (5, 6):
            raise ScheduleError(f"--cron {self.cron!r}: expected 5 fields (minute hour day month weekday) or 6")
        try:
            it = CronSim(self.cron, datetime(2000, 1, 1, tzinfo=UTC))
            next(it)
        except (CronSimError, StopIteration, ValueError) as exc:
            raise ScheduleError(f"--cron {self.cron!r}: {exc or 'never matches'}") from None

    @property
    def kind(self) -> str:
        return "cron" if self.cron is not None else "every"

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.tz})"
        assert self.every_ms is not None
        return f"every {format_period(self.every_ms)}"

    def next_after(self, t_ms: int) -> int:
        """The first occurrence strictly after ``t_ms`` (epoch ms)."""
        if self.every_ms is not None:
            return (t_ms // self.every_ms + 1) * self.every_ms
        assert self.cron is not None
        start = datetime.fromtimestamp(t_ms // 1000, tz=zone(self.tz))
        # cronsim has second precision and yields times strictly after its start: starting at the
        # whole second at or before t_ms, skip an occurrence that is not after t_ms itself.
        for when in CronSim(self.cron, start):
            ms = int(when.timestamp()) * 1000
            if ms > t_ms:
                return ms
        raise ScheduleError(f"--cron {self.cron!r} never matches")  # pragma: no cover - CronSim is endless

    def previous_before(self, t_ms: int) -> int:
        """The last occurrence strictly before ``t_ms``."""
        if self.every_ms is not None:
            return ((t_ms - 1) // self.every_ms) * self.every_ms
        assert self.cron is not None
        start = datetime.fromtimestamp(-(-t_ms // 1000), tz=zone(self.tz))
        for when in CronSim(self.cron, start, reverse=True):
            ms = int(when.timestamp()) * 1000
            if ms < t_ms:
                return ms
        raise ScheduleError(f"--cron {self.cron!r} never matches")  # pragma: no cover

    def count_between(self, lo_ms: int, hi_ms: int) -> int:
        """Occurrences in [lo_ms, hi_ms) where lo_ms is one; at most SCHEDULE_MISSED_COUNT_MAX for cron."""
        if hi_ms <= lo_ms:
            return 0
        if self.every_ms is not None:
            return -(-(hi_ms - lo_ms) // self.every_ms)
        n, cur = 0, lo_ms
        while cur < hi_ms and n < defaults.SCHEDULE_MISSED_COUNT_MAX:
            n, cur = n + 1, self.next_after(cur)
        return n

    def to_fields(self) -> dict[str, str]:
        """The schedule hash's timing fields (schedule_add.lua)."""
        return {
            "kind": self.kind,
            "cron": self.cron or "",
            "tz": self.tz,
            "every_ms": "" if self.every_ms is None else str(self.every_ms),
        }

    @classmethod
    def from_fields(cls, f: dict[str, Any]) -> Timing:
        every = f.get("every_ms") or ""
        return cls(cron=f.get("cron") or None, tz=f.get("tz") or "UTC", every_ms=int(every) if every else None)


def zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"--tz {tz!r}: not a time zone (e.g. Europe/Paris, UTC)") from None


def parse_every(text: str) -> int:
    """``30s``, ``5m``, ``1h``, ``1d``, ``500ms`` or a bare number of seconds -> milliseconds."""
    m = _EVERY_RE.match(text)
    if not m:
        raise ScheduleError(f"--every {text!r}: expected a period such as 30s, 5m, 1h, 1d")
    ms = float(m.group(1)) * _UNIT_MS[m.group(2) or "s"]
    if ms != int(ms):
        raise ScheduleError(f"--every {text!r}: not a whole number of milliseconds")
    return int(ms)


def format_period(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        if ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def check_name(name: str) -> str:
    """A schedule name: letters, digits, ``_ . -`` (no ``:``, so ``sched:<name>:<ms>`` parses back)."""
    if not NAME_RE.match(name) or len(name) > defaults.SCHEDULE_NAME_MAX:
        raise ScheduleError(
            f"schedule name {name!r}: 1..{defaults.SCHEDULE_NAME_MAX} of letters, digits, _ . - (starting with"
            " a letter or digit)"
        )
    return name


def job_id(name: str, occurrence_ms: int) -> str:
    """The id of the job of one occurrence (the fire Function builds the same)."""
    return f"sched:{name}:{occurrence_ms}"


@dataclass(frozen=True, slots=True)
class Fire:
    """One step of a late pass: submit the job of ``occurrence_ms`` (None: submit nothing), record
    ``skipped`` missed occurrences, and set the schedule's next occurrence to ``next_ms``."""

    occurrence_ms: int | None
    next_ms: int
    skipped: int = 0
    coalesced: int = 1


def plan(timing: Timing, next_ms: int, now_ms: int, missed: Missed, grace_ms: int, max_steps: int) -> list[Fire]:
    """What a pass at server time ``now_ms`` does for a schedule whose next occurrence is ``next_ms``.

    Each step is one fire Function call, made in order; each step's ``next_ms`` is the next step's
    expected ``next_ms``. At most ``max_steps`` steps (the next pass goes on); nothing when
    ``next_ms`` is in the future. Occurrences at most ``grace_ms`` before ``now_ms`` each get their own
    job; older ones follow ``missed`` (module doc).
    """
    steps: list[Fire] = []
    cur = next_ms
    if cur > now_ms:
        return steps
    horizon = now_ms - grace_ms
    if cur < horizon:
        # Missed occurrences: no step each (an --every 1s schedule down for a week missed 600,000).
        first_due = timing.next_after(horizon - 1)  # the first occurrence inside the grace
        last = timing.previous_before(first_due)
        count = timing.count_between(cur, first_due)
        cur = first_due
        if missed is Missed.ONCE:
            steps.append(Fire(last, cur, coalesced=count))
        else:
            steps.append(Fire(None, cur, skipped=count, coalesced=0))
    while cur <= now_ms and len(steps) < max_steps:
        nxt = timing.next_after(cur)
        steps.append(Fire(cur, nxt))
        cur = nxt
    return steps


def template(wire: dict[str, Any]) -> dict[str, str]:
    """A schedule's job template from a validated submit wire (``prepare_wires``): every field but the
    id and run_at, as text (as redis-py would send it to emp_submit)."""
    out: dict[str, str] = {}
    for k, v in wire.items():
        if k in ("id", "run_at") or v is None:
            continue
        out[k] = repr(v) if isinstance(v, float) else str(v)
    return out
