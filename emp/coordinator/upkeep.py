"""The coordinators' upkeep: one leader at a time keeps Redis tidy, every write fenced by its lease.

:func:`upkeep_loop` is what ``emp coordinator`` runs. Every coordinator takes part in the election
(:class:`emp.coordinator.leader.LeaderElection`); the leader runs a pass every ``interval_s`` (1 s):

1. ``emp_maintain``: requeue jobs whose lease expired (their worker died) and promote due scheduled
   jobs (run_at, retry backoff);
2. ``emp_machines_offline``: machines whose reports stopped leave the live set (machine_shutdown,
   reason "report lapsed");
3. ``emp_cleanup``: retention (the ``done:<status>`` listing indexes trimmed by end time, and jobs
   that ended before a retention shorter than the library's deleted), workers whose registration
   lapsed marked offline, long-unworkable jobs failed, the ``services`` set pruned;
4. recurring schedules: each due schedule's occurrences, planned in Python
   (:func:`emp.model.schedule.plan`) and fired one ``emp_schedule_fire`` call each (docs/schedules.md);

and, every ``slow_interval_s`` (5 s), the steps that read every live worker and signature:

5. unworkable detection and revival (:func:`emp.coordinator.maintenance.detect_unworkable`: a
   signature no live worker can run is marked after its grace period; one a worker that registered
   since can run is revived);
6. ``emp_retire_signatures``: signatures whose queue stayed empty for the grace period retire.

Each step is a series of Function calls, each bounded by a page and safe to repeat, and each pass
stops after ``MAX_PAGES`` pages of a kind (the next pass goes on). A coordinator killed between two
calls loses nothing: every call is atomic, and whatever it did not do is still there for the next
leader. Every call carries the leader's fence (:class:`emp.redis.calls.UpkeepCalls`), so a leader
that lost its lease cannot sweep. None of this is needed for correctness when no coordinator runs:
claims requeue expired leases and promote due jobs themselves (``_housekeeping.lua``), and idle
workers run :func:`emp.coordinator.maintenance.maintenance_loop`. Details: docs/upkeep.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from emp import defaults
from emp.coordinator.leader import LeaderElection
from emp.coordinator.lease_policy import LeasePolicy, SlowSteps
from emp.coordinator.maintenance import MAX_PAGES, cleanup_pages, detect_unworkable, maintain_pages, retire_pages
from emp.errors import JobValidationError
from emp.model.schedule import Missed, ScheduleError, Timing, plan
from emp.redis.calls import Calls, Fence, NotLeader, UpkeepCalls

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpkeepReport:
    """What one pass did. ``slow``: whether it ran the slow steps (unworkable, retirement)."""

    promoted: int = 0
    requeued: int = 0
    machines_offline: int = 0
    trimmed: int = 0
    workers_offline: int = 0
    marked_unworkable: int = 0
    revived: int = 0
    retired: int = 0
    schedules_fired: int = 0
    schedules_skipped: int = 0
    slow: bool = False
    elapsed_ms: float = 0.0

    def counts(self) -> dict[str, int]:
        return {
            "promoted": self.promoted,
            "requeued": self.requeued,
            "machines_offline": self.machines_offline,
            "trimmed": self.trimmed,
            "workers_offline": self.workers_offline,
            "unworkable": self.marked_unworkable,
            "revived": self.revived,
            "signatures_retired": self.retired,
            "schedules_fired": self.schedules_fired,
            "schedules_skipped": self.schedules_skipped,
        }

    @property
    def did_something(self) -> bool:
        return any(self.counts().values())

    def summary(self) -> str:
        """One log line: only the counts that are not zero."""
        return ", ".join(f"{k} {v}" for k, v in self.counts().items() if v) or "nothing to do"


async def run_upkeep_pass(
    calls: UpkeepCalls,
    *,
    slow: bool = True,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    page: int = defaults.MAINTENANCE_PAGE,
    retire_grace_s: float = defaults.SIGNATURE_RETIRE_GRACE_S,
    schedule_grace_s: float = defaults.SCHEDULE_GRACE_S,
) -> UpkeepReport:
    """One pass, in the order of the module doc; raises :class:`NotLeader` as soon as a call is fenced."""
    t0 = time.perf_counter()
    promoted, requeued, _due = await maintain_pages(calls, page, max_lost)
    machines = 0
    for _ in range(MAX_PAGES):
        n = await calls.machines_offline(page)
        machines += n
        if n < page:
            break
    trimmed, offline = await cleanup_pages(calls, page)
    fired, skipped = await fire_schedules(calls, grace_ms=round(schedule_grace_s * 1000))
    marked = revived = retired = 0
    if slow:
        marked, revived = await detect_unworkable(calls, grace_s, page=page)
        retired = await retire_pages(calls, retire_grace_s)
    return UpkeepReport(
        promoted=promoted,
        requeued=requeued,
        machines_offline=machines,
        trimmed=trimmed,
        workers_offline=offline,
        marked_unworkable=marked,
        revived=revived,
        retired=retired,
        schedules_fired=fired,
        schedules_skipped=skipped,
        slow=slow,
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )


async def fire_schedules(
    calls: UpkeepCalls,
    *,
    grace_ms: int = round(defaults.SCHEDULE_GRACE_S * 1000),
    page: int = defaults.SCHEDULE_PAGE,
    max_steps: int = defaults.SCHEDULE_CATCHUP_MAX,
) -> tuple[int, int]:
    """The schedule step: fire the occurrences of up to ``page`` due schedules, at most ``max_steps``
    calls each (the next pass goes on). Returns (jobs submitted, missed occurrences skipped).

    Each fire is one fenced ``emp_schedule_fire`` call that submits the occurrence's job only while the
    schedule still has the ``next_ms`` this pass planned from, and its ``last_fired`` is older: a
    second coordinator, a restarted one or a replayed call cannot submit it twice.
    """
    now, rows = await calls.schedule_due(page)
    fired = skipped = 0
    for row in rows:
        name = row.get("name", "")
        try:
            timing, missed, expected = Timing.from_fields(row), Missed(row.get("missed") or "skip"), int(row["next_ms"])
        except (ScheduleError, ValueError, KeyError) as exc:
            log.warning("schedule %r cannot be planned (%s); skipped this pass", name, exc)
            continue
        for step in plan(timing, expected, now, missed, grace_ms, max_steps):
            try:
                reply = await calls.schedule_fire(
                    name,
                    expected_next=expected,
                    occurrence=step.occurrence_ms,
                    next_ms=step.next_ms,
                    skipped=step.skipped,
                    coalesced=step.coalesced,
                    fence=calls.fence,
                )
            except JobValidationError as exc:
                log.warning("schedule %r not fired: %s", name, exc)
                break
            if reply[0] != "OK":  # GONE, PAUSED, MOVED: it changed since it was read; the next pass sees it
                break
            fired += reply[1] in ("pending", "unworkable")
            skipped += step.skipped
            expected = step.next_ms
    return fired, skipped


async def upkeep_loop(
    calls: Calls,
    *,
    stop: anyio.Event,
    interval_s: float = defaults.UPKEEP_INTERVAL_S,
    slow_interval_s: float = defaults.MAINTENANCE_INTERVAL_S,
    lease_s: float = defaults.LEADER_LEASE_S,
    retention_s: float = defaults.RETENTION_S,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    page: int = defaults.MAINTENANCE_PAGE,
    retire_grace_s: float = defaults.SIGNATURE_RETIRE_GRACE_S,
    election: LeaderElection | None = None,
    on_pass: Callable[[UpkeepReport], None] | None = None,
) -> None:
    """Take part in the upkeep election until ``stop`` is set, and sweep while leading.

    ``election``: pass one to read :attr:`LeaderElection.is_leader` from elsewhere (a status page);
    by default one for role ``upkeep`` with a ``lease_s`` lease. ``retention_s``: how long ended jobs
    stay (Settings.retention_s). ``on_pass``: called with each pass's report (metrics). A pass that
    fails (Redis restarting) is logged once per outage and the next one retries; a fenced call ends
    the term at once (the election steps down and tries again).
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    if retention_s <= 0:
        raise ValueError("retention_s must be positive")
    retention_ms = round(retention_s * 1000)
    election = election or LeaderElection(calls, policy=LeasePolicy(lease_s=lease_s))

    async def sweep(fence: Fence) -> None:
        fenced = UpkeepCalls(calls, fence, retention_ms)
        slow_steps = SlowSteps(slow_interval_s)
        failing = False
        while True:
            try:
                report = await run_upkeep_pass(
                    fenced,
                    slow=slow_steps.due(time.monotonic()),
                    grace_s=grace_s,
                    max_lost=max_lost,
                    page=page,
                    retire_grace_s=retire_grace_s,
                )
            except NotLeader:
                raise
            except Exception as exc:  # boundary of a background loop; cancellation is not an Exception
                log.log(
                    logging.DEBUG if failing else logging.WARNING, "upkeep pass failed: %s: %s", type(exc).__name__, exc
                )
                failing = True
            else:
                if failing:
                    log.info("upkeep passes work again")
                failing = False
                if report.did_something:
                    log.info("upkeep (token %d): %s (%.1f ms)", fence.token, report.summary(), report.elapsed_ms)
                if on_pass is not None:
                    on_pass(report)
            await anyio.sleep(interval_s)

    await election.run(stop=stop, body=sweep)
