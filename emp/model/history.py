"""The history checker (issue 13): what the record of a run says about lost and duplicated work.

A run (a chaos test, ``emp bench soak``) records three things, and this module judges them, with
no I/O:

- the ids the submitters were told were **accepted** (the submit call returned), and the ids whose
  submit had an unknown outcome (a timeout: the job may or may not exist);
- every **event** of the namespace's stream, in stream order (written by the Functions in the same
  call as the change they describe, so the stream is the broker's own history);
- the **final job records**, and optionally the **executions** the service saw (when a handler
  really ran an attempt, wall-clock ms): the only view of a zombie that keeps working after it lost
  its lease.

The checks, after Jepsen's queue checkers (reference/reliability.md section 6.3):

- ``lost``: accepted, but not in a terminal state at the end (or gone);
- ``duplicated_commits``: more than one accepted completion (``job_completed``) of one job;
- ``multiple_terminals``: more than one terminal event (completed/failed/cancelled) of one job, or
  a final record that disagrees with the last terminal event;
- ``concurrent_attempts``: in the broker's history, an attempt began before the previous one ended
  (requeued, retried, released); in the executions, two attempts of one job ran at the same time for
  longer than one lease period (the fencing bound: a zombie may run on until it learns it lost);
- ``over_limits``: more counted tries, lost leases or unavailable requeues than the job's limits;
- ``unexpected``: events about a job that no submitter sent (never accepted, not in doubt, no
  ``job_submitted`` event).

A manual retry (``emp jobs retry``) starts a job's life over: counts restart after one.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from emp import defaults
from emp.model.events import TERMINAL_EVENTS, Event, EventType
from emp.model.job import TERMINAL, Job

ATTEMPT_START = frozenset({EventType.JOB_ASSIGNED, EventType.JOB_STARTED})
"""The events that begin an attempt (a claim that starts at once writes only job_started)."""

ATTEMPT_END = frozenset(
    {
        EventType.JOB_COMPLETED,
        EventType.JOB_FAILED,
        EventType.JOB_CANCELLED,
        EventType.JOB_RETRY,
        EventType.JOB_REQUEUED,
        EventType.JOB_RELEASED,
    }
)
"""The events that end the running attempt, if there is one."""


@dataclass(frozen=True, slots=True)
class Execution:
    """One attempt as the service ran it: ``start_ms``..``end_ms`` wall clock (None: its process was killed)."""

    job: str
    attempt: int
    start_ms: float
    end_ms: float | None
    runner: str = ""


@dataclass(frozen=True, slots=True)
class Limits:
    max_lost_leases: int = defaults.MAX_LOST_LEASES
    max_unavailable: int = defaults.MAX_UNAVAILABLE


@dataclass(slots=True)
class Verdict:
    accepted: int = 0
    in_doubt: int = 0
    recovered: int = 0
    """Submits of unknown outcome whose job exists after all."""
    outcomes: dict[str, int] = field(default_factory=dict)
    """Final status -> jobs (accepted and recovered ones)."""
    attempts: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated_commits: list[str] = field(default_factory=list)
    multiple_terminals: list[str] = field(default_factory=list)
    concurrent_attempts: list[str] = field(default_factory=list)
    over_limits: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated_commits
            or self.multiple_terminals
            or self.concurrent_attempts
            or self.over_limits
            or self.unexpected
        )

    def as_dict(self, examples: int = 5) -> dict[str, Any]:
        """Counts plus a few examples of each violation (JSON-ready)."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "accepted": self.accepted,
            "in_doubt": self.in_doubt,
            "recovered": self.recovered,
            "outcomes": dict(sorted(self.outcomes.items())),
            "attempts": self.attempts,
        }
        for name in ("lost", "duplicated_commits", "multiple_terminals", "concurrent_attempts", "over_limits"):
            found: list[str] = getattr(self, name)
            out[name] = len(found)
            if found:
                out[f"{name}_examples"] = found[:examples]
        out["unexpected"] = len(self.unexpected)
        if self.unexpected:
            out["unexpected_examples"] = self.unexpected[:examples]
        return out

    def summary(self) -> str:
        d = self.as_dict()
        return (
            f"{'OK' if self.ok else 'VIOLATIONS'}: accepted {d['accepted']}, lost {d['lost']}, "
            f"duplicated commits {d['duplicated_commits']}, multiple terminals {d['multiple_terminals']}, "
            f"concurrent attempts {d['concurrent_attempts']}, over limits {d['over_limits']}, "
            f"unexpected {d['unexpected']}; outcomes {d['outcomes']}; attempts {d['attempts']}"
        )


def _since_manual_retry(events: list[Event]) -> list[Event]:
    """The events of the job's current life: after its last manual retry, if any."""
    for i in range(len(events) - 1, -1, -1):
        if events[i].type == EventType.JOB_RETRY and events[i].data.get("manual"):
            return events[i + 1 :]
    return events


def _broker_overlap(job_id: str, events: list[Event]) -> str | None:
    """An attempt that began while another was still running, in the broker's own order."""
    running: int | None = None
    last_attempt = 0
    for e in events:
        if e.type in ATTEMPT_START:
            attempt = e.attempt or 0
            if e.type == EventType.JOB_STARTED and running == attempt:
                continue  # assigned, then started: one attempt
            if running is not None:
                return f"{job_id}: attempt {attempt} began while attempt {running} was running (event {e.id})"
            if attempt <= last_attempt:
                return f"{job_id}: attempt {attempt} began after attempt {last_attempt} (event {e.id})"
            running, last_attempt = attempt, attempt
        elif e.type in ATTEMPT_END:
            running = None
    return None


def _execution_overlaps(executions: Iterable[Execution], lease_ms: float) -> list[str]:
    """Attempts of one job that ran together for longer than a lease. An execution with no end (its
    process was killed) ended at an unknown time: it is left out rather than guessed."""
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for x in executions:
        by_job[x.job].append(x)
    found: list[str] = []
    for job_id, runs in by_job.items():
        runs.sort(key=lambda x: x.start_ms)
        for i, a in enumerate(runs):
            if a.end_ms is None:
                continue
            for b in runs[i + 1 :]:
                if b.attempt == a.attempt or b.end_ms is None:
                    continue
                overlap = min(a.end_ms, b.end_ms) - max(a.start_ms, b.start_ms)
                if overlap > lease_ms:
                    found.append(
                        f"{job_id}: attempts {a.attempt} and {b.attempt} ran together for {overlap:.0f} ms"
                        f" (lease {lease_ms:.0f} ms)"
                    )
    return found


def _limit_violations(job: Job, events: list[Event], limits: Limits) -> list[str]:
    found: list[str] = []
    lost_events = sum(1 for e in events if e.type == EventType.JOB_REQUEUED and e.data.get("reason") == "lease_expired")
    counted_retries = sum(
        1
        for e in events
        if e.type == EventType.JOB_RETRY and e.data.get("failure_class") not in (None, "service_unavailable")
    )
    if job.tries > job.max_attempts:
        found.append(f"{job.id}: {job.tries} tries, max_attempts {job.max_attempts}")
    if counted_retries >= job.max_attempts:
        found.append(f"{job.id}: {counted_retries} counted retries, max_attempts {job.max_attempts}")
    if job.lost > limits.max_lost_leases or lost_events > limits.max_lost_leases:
        found.append(f"{job.id}: {max(job.lost, lost_events)} lost leases, limit {limits.max_lost_leases}")
    if job.unavailable > limits.max_unavailable:
        found.append(f"{job.id}: {job.unavailable} unavailable requeues, limit {limits.max_unavailable}")
    return found


def check(
    accepted: Iterable[str],
    events: Iterable[Event],
    records: Mapping[str, Job | None],
    *,
    in_doubt: Iterable[str] = (),
    executions: Iterable[Execution] = (),
    lease_ms: float = defaults.LEASE_TTL_S * 1000,
    limits: Limits | None = None,
) -> Verdict:
    """Judge a run. ``records`` must hold the final record (or None) of every accepted and in-doubt id."""
    limits = limits or Limits()
    accepted_ids = set(accepted)
    doubt_ids = set(in_doubt) - accepted_ids
    by_job: dict[str, list[Event]] = defaultdict(list)
    submitted: set[str] = set()
    for e in events:
        if not e.job:
            continue
        by_job[e.job].append(e)
        if e.type == EventType.JOB_SUBMITTED:
            submitted.add(e.job)
    verdict = Verdict(accepted=len(accepted_ids), in_doubt=len(doubt_ids))
    outcomes: Counter[str] = Counter()
    recovered = {j for j in doubt_ids if records.get(j) is not None}
    verdict.recovered = len(recovered)
    for job_id in sorted(accepted_ids | recovered):
        job = records.get(job_id)
        life = _since_manual_retry(by_job.get(job_id, []))
        verdict.attempts += len({e.attempt for e in life if e.type in ATTEMPT_START})
        if job is None:
            verdict.lost.append(f"{job_id}: accepted, but its record is gone")
            continue
        outcomes[str(job.status)] += 1
        if job.status not in TERMINAL:
            verdict.lost.append(f"{job_id}: accepted, still {job.status} at the end")
        completions = sum(1 for e in life if e.type == EventType.JOB_COMPLETED)
        if completions > 1:
            verdict.duplicated_commits.append(f"{job_id}: {completions} job_completed events")
        terminals = [e for e in life if e.type in TERMINAL_EVENTS]
        if len(terminals) > 1:
            verdict.multiple_terminals.append(f"{job_id}: {len(terminals)} terminal events")
        elif terminals and job.status in TERMINAL and terminals[-1].type != f"job_{job.status}":
            verdict.multiple_terminals.append(f"{job_id}: last event {terminals[-1].type}, record {job.status}")
        if overlap := _broker_overlap(job_id, life):
            verdict.concurrent_attempts.append(overlap)
        verdict.over_limits += _limit_violations(job, life, limits)
    verdict.concurrent_attempts += _execution_overlaps(executions, lease_ms)
    known = accepted_ids | doubt_ids | submitted
    verdict.unexpected = sorted(j for j in by_job if j not in known)
    verdict.outcomes = dict(outcomes)
    return verdict


def parse_executions(lines: Iterable[str]) -> list[Execution]:
    """Executions from JSONL ``{"job", "attempt", "runner", "phase": "start"|"end", "t_ms"}`` lines (the
    simulation connector writes them to EMP_SIM_EXEC_LOG). Lines cut short by a SIGKILL are skipped."""
    started: dict[tuple[str, int, str], float] = {}
    runs: list[Execution] = []
    for line in lines:
        try:
            doc = json.loads(line)
            key = (str(doc["job"]), int(doc["attempt"]), str(doc.get("runner", "")))
            t_ms = float(doc["t_ms"])
        except (ValueError, KeyError, TypeError):
            continue
        if doc.get("phase") == "start":
            started[key] = t_ms
        elif doc.get("phase") == "end" and key in started:
            runs.append(Execution(key[0], key[1], started.pop(key), t_ms, key[2]))
    runs += [Execution(job, attempt, t, None, runner) for (job, attempt, runner), t in started.items()]
    return runs
