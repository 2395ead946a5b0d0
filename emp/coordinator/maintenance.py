"""The maintenance pass that any emp process can run: coordinators, `emp demo`, idle workers.

One pass, :func:`run_maintenance_once`, does three bounded things:

1. ``emp_maintain``: promote due scheduled jobs (run_at, retry backoff) and requeue expired leases
   (claims do this too when it is due; a pass makes sure it happens while no worker claims);
2. ``emp_cleanup``: trim the listing indexes of expired jobs and mark lapsed workers offline;
3. :func:`detect_unworkable`: judge each requirements signature against the live workers, with
   the matching rules of :mod:`emp.model.matching` (the same rules the claim Function runs);
4. ``emp_retire_signatures``: retire signatures whose queue stayed empty for the grace period, a
   page at a time, so the live signatures follow what is pending.

:func:`maintenance_loop` runs a pass every interval, but only in the process that wins the
``guard:maintenance`` key (``SET NX PX``) for that round, so ten processes running the loop do
the work once, not ten times. A process that dies mid-pass leaves nothing half done that the next
pass cannot finish: every step is one Function call, and each is safe to repeat.

Unworkable detection is per signature (requirements class), not per job, so it costs
O(signatures x live workers) whatever the queue depth. Per-job rules (customer allow/deny lists,
workflow-restricted workers) are not part of a signature: a job that only a worker restricted to
another customer or workflow could run stays pending rather than unworkable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from emp import defaults
from emp.model.matching import requirements_match
from emp.model.requirements import canonical_from_text
from emp.redis.calls import Calls, LiveWorker, try_guard

log = logging.getLogger(__name__)

GUARD_NAME = "maintenance"
GUARD_FRACTION = 0.9
"""The guard lives 90 % of an interval: it has lapsed by the next round, so someone always runs it,
and it outlives one pass (passes take milliseconds), so no second process runs the same round."""

MAX_PAGES = 50
"""Pages of one kind (promotions, requeues, moves of one signature) a single pass goes through at
most: a backlog larger than that is finished by the next passes, and one pass stays short."""


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one pass did. ``next_due_ms``: server time of the next scheduled job or lease deadline."""

    promoted: int = 0
    requeued: int = 0
    trimmed: int = 0
    workers_offline: int = 0
    marked_unworkable: int = 0
    revived: int = 0
    retired: int = 0
    next_due_ms: int | None = None
    elapsed_ms: float = 0.0

    @property
    def did_something(self) -> bool:
        return bool(
            self.promoted
            or self.requeued
            or self.trimmed
            or self.workers_offline
            or self.marked_unworkable
            or self.revived
            or self.retired
        )

    def summary(self) -> str:
        """One log line: only the counts that are not zero."""
        parts = [
            f"{name} {value}"
            for name, value in (
                ("promoted", self.promoted),
                ("requeued", self.requeued),
                ("trimmed", self.trimmed),
                ("workers_offline", self.workers_offline),
                ("unworkable", self.marked_unworkable),
                ("revived", self.revived),
                ("signatures_retired", self.retired),
            )
            if value
        ]
        return ", ".join(parts) or "nothing to do"


def _live_match(service: str, requirements: Any, workers: Sequence[LiveWorker]) -> bool:
    """Can some live worker that serves ``service`` run jobs with these (canonical) requirements?"""
    for w in workers:
        if w.status == "offline" or service not in w.services:
            continue
        if requirements_match(requirements, w.capabilities, service):
            return True
    return False


async def _mark(calls: Calls, service: str, sig: str, grace_ms: int, page: int) -> int:
    """Flag the signature unworkable and move its pending jobs, page by page. Returns jobs moved."""
    moved_total = 0
    for _ in range(MAX_PAGES):
        code, moved, remaining = await calls.mark_unworkable(service, sig, grace_ms, page)
        if code != "OK":  # TOO_SOON: its head job is younger than the grace; NOT_FOUND: gone meanwhile
            break
        moved_total += moved
        if remaining == 0 or moved == 0:
            break
    return moved_total


async def _revive(calls: Calls, service: str, sig: str, page: int) -> int:
    """Unflag the signature and move its unworkable jobs back to the queue. Returns jobs moved."""
    moved_total = 0
    for _ in range(MAX_PAGES):
        code, moved, remaining = await calls.revive_unworkable(service, sig, page)
        if code != "OK":
            break
        moved_total += moved
        if remaining == 0 or moved == 0:
            break
    return moved_total


async def detect_unworkable(calls: Calls, grace_s: float, *, page: int = defaults.MAINTENANCE_PAGE) -> tuple[int, int]:
    """Mark signatures no live worker can run as unworkable; revive those one can run again.

    A signature is marked only once its head job has waited ``grace_s`` (the Function refuses
    sooner with TOO_SOON: fleets restart workers, and a rolling restart must not flip jobs to
    unworkable), and only when it has pending jobs (an empty signature is left alone, so a job
    submitted later still gets its grace). Returns (jobs marked unworkable, jobs revived).
    """
    workers = await calls.live_workers()
    rows = await calls.signatures()
    grace_ms = max(0, int(grace_s * 1000))
    marked = revived = 0
    for row in rows:
        service, sig = str(row.get("service", "")), str(row.get("sig", ""))
        try:
            requirements = canonical_from_text(str(row.get("requirements", "{}")))
        except ValueError as exc:
            # Cannot happen for requirements that went through submit; never let one row stop the pass.
            log.warning("signature %s of %s: unreadable requirements (%s); skipped", sig, service, exc)
            continue
        flagged = bool(row.get("unworkable"))
        reviving = bool(row.get("reviving"))
        pending = int(row.get("pending") or 0)
        if _live_match(service, requirements, workers):
            if flagged or reviving:
                n = await _revive(calls, service, sig, page)
                revived += n
                if n:
                    log.info("signature %s of %s: a live worker matches again; %d job(s) revived", sig, service, n)
        elif reviving or pending > 0:
            # flagged and pending > 0: jobs that entered the queue while it was being revived, or
            # that the grace held back on an earlier pass.
            n = await _mark(calls, service, sig, grace_ms, page)
            marked += n
            if n:
                log.info("signature %s of %s: no live worker matches; %d job(s) unworkable", sig, service, n)
    return marked, revived


async def maintain_pages(calls: Calls, page: int, max_lost: int) -> tuple[int, int, int | None]:
    """emp_maintain a page at a time (at most MAX_PAGES): (promoted, requeued, next due ms)."""
    promoted = requeued = 0
    next_due: int | None = None
    for _ in range(MAX_PAGES):
        p, r, next_due = await calls.maintain(page, max_lost)
        promoted, requeued = promoted + p, requeued + r
        if p < page and r < page:
            break
    return promoted, requeued, next_due


async def cleanup_pages(calls: Calls, page: int) -> tuple[int, int]:
    """emp_cleanup a page at a time (at most MAX_PAGES): (index entries trimmed, workers marked offline)."""
    trimmed = offline = 0
    for _ in range(MAX_PAGES):
        t, o = await calls.cleanup(page)
        trimmed, offline = trimmed + t, offline + o
        if t < page and o < page:
            break
    return trimmed, offline


async def retire_pages(calls: Calls, retire_grace_s: float) -> int:
    """emp_retire_signatures until its round is done (at most MAX_PAGES calls): signatures retired."""
    retired = 0
    retire_grace_ms = max(0, int(retire_grace_s * 1000))
    for _ in range(MAX_PAGES):
        n, round_done = await calls.retire_signatures(retire_grace_ms)
        retired += n
        if round_done:
            break
    return retired


async def run_maintenance_once(
    calls: Calls,
    *,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    page: int = defaults.MAINTENANCE_PAGE,
    retire_grace_s: float = defaults.SIGNATURE_RETIRE_GRACE_S,
) -> MaintenanceReport:
    """One full pass (no guard: see :func:`run_guarded_pass`). Each step is bounded by pages."""
    t0 = time.perf_counter()
    promoted, requeued, next_due = await maintain_pages(calls, page, max_lost)
    trimmed, offline = await cleanup_pages(calls, page)
    marked, revived = await detect_unworkable(calls, grace_s, page=page)
    retired = await retire_pages(calls, retire_grace_s)
    return MaintenanceReport(
        promoted=promoted,
        requeued=requeued,
        trimmed=trimmed,
        workers_offline=offline,
        marked_unworkable=marked,
        revived=revived,
        retired=retired,
        next_due_ms=next_due,
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )


async def run_guarded_pass(
    calls: Calls,
    *,
    interval_s: float,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    page: int = defaults.MAINTENANCE_PAGE,
) -> MaintenanceReport | None:
    """Run a pass if this process wins this round's guard; None when another process holds it."""
    ttl_ms = max(1, int(interval_s * 1000 * GUARD_FRACTION))
    if not await try_guard(calls, GUARD_NAME, ttl_ms):
        return None
    return await run_maintenance_once(calls, grace_s=grace_s, max_lost=max_lost, page=page)


async def maintenance_loop(
    calls: Calls,
    *,
    interval_s: float,
    grace_s: float = defaults.UNWORKABLE_GRACE_S,
    max_lost: int = defaults.MAX_LOST_LEASES,
    stop: anyio.Event,
    page: int = defaults.MAINTENANCE_PAGE,
) -> None:
    """Run guarded passes every ``interval_s`` until ``stop`` is set (or the task is cancelled).

    A pass that fails (Redis restarting, a network blip) is logged and the loop goes on: this is
    a background duty, and the next round retries. Logs one line per pass that did something.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    failing = False
    while not stop.is_set():
        try:
            report = await run_guarded_pass(calls, interval_s=interval_s, grace_s=grace_s, max_lost=max_lost, page=page)
        except Exception as exc:  # boundary of a background loop; cancellation is not an Exception
            # Once per outage at warning level: a Redis that is down for an hour must not fill the log.
            log.log(
                logging.DEBUG if failing else logging.WARNING,
                "maintenance pass failed: %s: %s",
                type(exc).__name__,
                exc,
            )
            failing, report = True, None
        else:
            if failing:
                log.info("maintenance passes work again")
            failing = False
        if report is not None and report.did_something:
            log.info("maintenance: %s (%.1f ms)", report.summary(), report.elapsed_ms)
        with anyio.move_on_after(interval_s):
            await stop.wait()
