"""emp.model.history: the checker's rules, one violation kind per test, on hand-built histories.

Each test builds the smallest record that breaks (or, for the exemptions, seems to break) one rule
and asserts both that the rule fires (or not) and that nothing else does, so removing a rule from
the checker fails its test. Events are built as the Functions write them (type, job, worker,
attempt, data); ids are stream ids in order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from emp.model.events import Event, EventType
from emp.model.history import Execution, Limits, Verdict, check, parse_executions
from emp.model.job import Job, JobStatus

E = EventType
_ids: Iterator[int] = itertools.count(1)


def ev(etype: EventType, job: str, attempt: int | None = None, worker: str | None = "w1", **data: Any) -> Event:
    """One stream entry; ids increase across the whole test module (stream order)."""
    return Event(id=f"{next(_ids)}-0", type=etype, job=job, worker=worker, attempt=attempt, data=data)


def rec(job_id: str, status: JobStatus = JobStatus.COMPLETED, **fields: Any) -> Job:
    return Job(id=job_id, service="simulation", status=status, **fields)


def life(job: str, attempt: int = 1, worker: str = "w1") -> list[Event]:
    """A clean life: submitted, started, progress, completed on ``attempt``."""
    return [
        ev(E.JOB_SUBMITTED, job, worker=None),
        ev(E.JOB_STARTED, job, attempt, worker),
        ev(E.JOB_PROGRESS, job, attempt, worker),
        ev(E.JOB_COMPLETED, job, attempt, worker),
    ]


VIOLATIONS = ("lost", "duplicated_commits", "multiple_terminals", "concurrent_attempts", "over_limits", "unexpected")


def only(verdict: Verdict, kind: str, job: str) -> None:
    """The verdict has exactly one violation, of ``kind``, naming ``job``."""
    found = {k: getattr(verdict, k) for k in VIOLATIONS if getattr(verdict, k)}
    assert list(found) == [kind], verdict.summary()
    assert len(found[kind]) == 1 and found[kind][0].startswith(job), found[kind]
    assert not verdict.ok


# -- the clean baseline -----------------------------------------------------------------------


def test_a_clean_run_is_ok_and_counts_outcomes_and_attempts() -> None:
    events = life("a") + life("b")
    verdict = check(["a", "b"], events, {"a": rec("a", attempt=1), "b": rec("b", attempt=1)})
    assert verdict.ok, verdict.summary()
    assert verdict.outcomes == {"completed": 2} and verdict.attempts == 2 and verdict.accepted == 2
    assert verdict.summary().startswith("OK: accepted 2, lost 0")
    assert verdict.as_dict()["lost"] == 0 and "lost_examples" not in verdict.as_dict()


# -- lost ---------------------------------------------------------------------------------------


def test_an_accepted_job_not_terminal_at_the_end_is_lost() -> None:
    events = [ev(E.JOB_SUBMITTED, "a", worker=None), ev(E.JOB_STARTED, "a", 1)]
    verdict = check(["a"], events, {"a": rec("a", JobStatus.IN_PROGRESS, attempt=1)})
    only(verdict, "lost", "a")
    assert "still in_progress" in verdict.lost[0]
    assert verdict.outcomes == {"in_progress": 1}
    assert verdict.as_dict()["lost_examples"] == verdict.lost


def test_an_accepted_job_whose_record_is_gone_is_lost() -> None:
    verdict = check(["a", "b"], life("a") + life("b"), {"a": rec("a"), "b": None})
    only(verdict, "lost", "b")
    assert "record is gone" in verdict.lost[0]
    assert verdict.outcomes == {"completed": 1}


def test_an_accepted_job_with_no_events_but_a_pending_record_is_lost() -> None:
    verdict = check(["a"], [], {"a": rec("a", JobStatus.PENDING)})
    only(verdict, "lost", "a")


# -- duplicated commits and multiple terminals -------------------------------------------------


def test_two_completions_of_one_job_are_a_duplicated_commit() -> None:
    events = life("a") + [ev(E.JOB_COMPLETED, "a", 1, "w2")]
    verdict = check(["a"], events, {"a": rec("a")})
    assert verdict.duplicated_commits == ["a: 2 job_completed events"], verdict.summary()
    # Two completions are also two terminal events: both rules see it, nothing else does.
    assert verdict.multiple_terminals and not (verdict.lost or verdict.concurrent_attempts or verdict.unexpected)


def test_failed_then_completed_is_multiple_terminals_without_a_duplicated_commit() -> None:
    events = [
        ev(E.JOB_SUBMITTED, "a", worker=None),
        ev(E.JOB_STARTED, "a", 1),
        ev(E.JOB_FAILED, "a", 1, failure_class="malformed"),
        ev(E.JOB_COMPLETED, "a", 1),
    ]
    verdict = check(["a"], events, {"a": rec("a", attempt=1)})
    only(verdict, "multiple_terminals", "a")
    assert verdict.multiple_terminals == ["a: 2 terminal events"]


def test_a_record_that_disagrees_with_the_last_terminal_event_is_flagged() -> None:
    events = [ev(E.JOB_SUBMITTED, "a", worker=None), ev(E.JOB_STARTED, "a", 1), ev(E.JOB_FAILED, "a", 1)]
    verdict = check(["a"], events, {"a": rec("a", JobStatus.COMPLETED, attempt=1)})
    only(verdict, "multiple_terminals", "a")
    assert "last event job_failed, record completed" in verdict.multiple_terminals[0]
    # The same events with the matching record are clean.
    assert check(["a"], events, {"a": rec("a", JobStatus.FAILED, attempt=1)}).ok


# -- concurrent attempts: the broker's order ------------------------------------------------------


def test_an_attempt_started_before_the_previous_one_ended_is_a_broker_overlap() -> None:
    events = [
        ev(E.JOB_SUBMITTED, "a", worker=None),
        ev(E.JOB_STARTED, "a", 1, "w1"),
        ev(E.JOB_STARTED, "a", 2, "w2"),  # no requeue of attempt 1 in between
        ev(E.JOB_COMPLETED, "a", 2, "w2"),
    ]
    verdict = check(["a"], events, {"a": rec("a", attempt=2)})
    only(verdict, "concurrent_attempts", "a")
    assert "attempt 2 began while attempt 1 was running" in verdict.concurrent_attempts[0]


def test_the_same_history_with_the_requeue_between_attempts_is_clean() -> None:
    events = [
        ev(E.JOB_SUBMITTED, "a", worker=None),
        ev(E.JOB_STARTED, "a", 1, "w1"),
        ev(E.JOB_REQUEUED, "a", 1, "w1", reason="lease_expired", lost=1),
        ev(E.JOB_STARTED, "a", 2, "w2"),
        ev(E.JOB_COMPLETED, "a", 2, "w2"),
    ]
    verdict = check(["a"], events, {"a": rec("a", attempt=2, lost=1)})
    assert verdict.ok, verdict.summary()
    assert verdict.attempts == 2


def test_an_attempt_number_that_does_not_increase_is_a_broker_overlap() -> None:
    events = [
        ev(E.JOB_SUBMITTED, "a", worker=None),
        ev(E.JOB_STARTED, "a", 2, "w1"),
        ev(E.JOB_RELEASED, "a", 2, "w1", reason="worker shutting down"),
        ev(E.JOB_STARTED, "a", 2, "w2"),  # the same attempt number again: two runs under one fence
        ev(E.JOB_COMPLETED, "a", 2, "w2"),
    ]
    verdict = check(["a"], events, {"a": rec("a", attempt=2)})
    only(verdict, "concurrent_attempts", "a")
    assert "attempt 2 began after attempt 2" in verdict.concurrent_attempts[0]


def test_assigned_then_started_is_one_attempt() -> None:
    events = [
        ev(E.JOB_SUBMITTED, "a", worker=None),
        ev(E.JOB_ASSIGNED, "a", 1),
        ev(E.JOB_STARTED, "a", 1),
        ev(E.JOB_COMPLETED, "a", 1),
    ]
    verdict = check(["a"], events, {"a": rec("a", attempt=1)})
    assert verdict.ok, verdict.summary()
    assert verdict.attempts == 1
    # Assigned for attempt 1, then started as attempt 2 with no end between: that is an overlap.
    events[2] = ev(E.JOB_STARTED, "a", 2)
    only(check(["a"], events, {"a": rec("a", attempt=2)}), "concurrent_attempts", "a")


# -- concurrent attempts: the executions (zombies) ---------------------------------------------


def _requeued_twice(job: str) -> list[Event]:
    return [
        ev(E.JOB_SUBMITTED, job, worker=None),
        ev(E.JOB_STARTED, job, 1, "w1"),
        ev(E.JOB_REQUEUED, job, 1, "w1", reason="lease_expired", lost=1),
        ev(E.JOB_STARTED, job, 2, "w2"),
        ev(E.JOB_COMPLETED, job, 2, "w2"),
    ]


def test_executions_of_two_attempts_overlapping_beyond_the_lease_are_flagged() -> None:
    runs = [Execution("a", 1, 0, 5_000, "p1"), Execution("a", 2, 1_000, 4_000, "p2")]  # 3 s together
    verdict = check(["a"], _requeued_twice("a"), {"a": rec("a", attempt=2, lost=1)}, executions=runs, lease_ms=2_000)
    only(verdict, "concurrent_attempts", "a")
    assert "attempts 1 and 2 ran together for 3000 ms (lease 2000 ms)" in verdict.concurrent_attempts[0]


def test_executions_overlapping_within_the_lease_are_the_fencing_bound_not_a_violation() -> None:
    # The zombie runs on 1.5 s into the new attempt: less than a lease, the bound G2 allows.
    runs = [Execution("a", 1, 0, 2_500, "p1"), Execution("a", 2, 1_000, 4_000, "p2")]
    verdict = check(["a"], _requeued_twice("a"), {"a": rec("a", attempt=2, lost=1)}, executions=runs, lease_ms=2_000)
    assert verdict.ok, verdict.summary()
    # The same runs judged with a shorter lease are flagged: the bound is the lease.
    short = check(["a"], _requeued_twice("a"), {"a": rec("a", attempt=2, lost=1)}, executions=runs, lease_ms=1_000)
    only(short, "concurrent_attempts", "a")


def test_an_execution_without_an_end_is_left_out_and_one_attempt_twice_is_no_overlap() -> None:
    runs = [
        Execution("a", 1, 0, None, "p1"),  # killed: its end is unknown, not guessed
        Execution("a", 2, 1_000, 9_000, "p2"),
        Execution("a", 2, 1_000, 9_000, "p3"),  # the same attempt (a retried claim): not two attempts
    ]
    verdict = check(["a"], _requeued_twice("a"), {"a": rec("a", attempt=2, lost=1)}, executions=runs, lease_ms=100)
    assert verdict.ok, verdict.summary()


# -- limits -------------------------------------------------------------------------------------


def test_more_tries_than_max_attempts_is_over_limits() -> None:
    verdict = check(["a"], life("a"), {"a": rec("a", attempt=1, tries=4, max_attempts=3)})
    only(verdict, "over_limits", "a")
    assert "4 tries, max_attempts 3" in verdict.over_limits[0]
    assert check(["a"], life("a"), {"a": rec("a", attempt=1, tries=3, max_attempts=3)}).ok


def test_counted_retries_reaching_max_attempts_are_over_limits_but_unavailable_ones_are_not() -> None:
    def history(fclass: str) -> list[Event]:
        events = [ev(E.JOB_SUBMITTED, "a", worker=None)]
        for attempt in (1, 2, 3):
            events += [ev(E.JOB_STARTED, "a", attempt), ev(E.JOB_RETRY, "a", attempt, failure_class=fclass)]
        return events + [ev(E.JOB_STARTED, "a", 4), ev(E.JOB_COMPLETED, "a", 4)]

    record = rec("a", attempt=4, tries=2, max_attempts=3)
    verdict = check(["a"], history("transient"), {"a": record})
    only(verdict, "over_limits", "a")
    assert "3 counted retries, max_attempts 3" in verdict.over_limits[0]
    assert check(["a"], history("service_unavailable"), {"a": record}).ok


def test_more_lost_leases_than_the_limit_is_over_limits_by_record_or_by_events() -> None:
    events = [ev(E.JOB_SUBMITTED, "a", worker=None)]
    for attempt in (1, 2, 3):
        events += [ev(E.JOB_STARTED, "a", attempt), ev(E.JOB_REQUEUED, "a", attempt, reason="lease_expired")]
    events += [ev(E.JOB_STARTED, "a", 4), ev(E.JOB_COMPLETED, "a", 4)]
    limits = Limits(max_lost_leases=2)
    # The events say 3 lost leases even though the record says 2.
    by_events = check(["a"], events, {"a": rec("a", attempt=4, lost=2)}, limits=limits)
    only(by_events, "over_limits", "a")
    assert "3 lost leases, limit 2" in by_events.over_limits[0]
    by_record = check(["a"], life("a"), {"a": rec("a", attempt=1, lost=3)}, limits=limits)
    only(by_record, "over_limits", "a")
    assert check(["a"], events, {"a": rec("a", attempt=4, lost=3)}, limits=Limits(max_lost_leases=3)).ok


def test_more_unavailable_requeues_than_the_limit_is_over_limits() -> None:
    verdict = check(["a"], life("a"), {"a": rec("a", attempt=1, unavailable=3)}, limits=Limits(max_unavailable=2))
    only(verdict, "over_limits", "a")
    assert "3 unavailable requeues, limit 2" in verdict.over_limits[0]
    assert check(["a"], life("a"), {"a": rec("a", attempt=1, unavailable=2)}, limits=Limits(max_unavailable=2)).ok


# -- unexpected and in doubt --------------------------------------------------------------------


def test_events_about_a_job_no_submitter_sent_are_unexpected() -> None:
    stray = [ev(E.JOB_STARTED, "ghost", 1), ev(E.JOB_COMPLETED, "ghost", 1)]
    verdict = check(["a"], life("a") + stray, {"a": rec("a")})
    assert verdict.unexpected == ["ghost"], verdict.summary()
    assert not (verdict.lost or verdict.duplicated_commits or verdict.concurrent_attempts) and not verdict.ok
    # A job with a job_submitted event (another submitter's) is known, not unexpected.
    known = check(["a"], life("a") + [ev(E.JOB_SUBMITTED, "ghost", worker=None), *stray], {"a": rec("a")})
    assert known.ok, known.summary()


def test_an_in_doubt_submit_whose_job_exists_is_recovered_and_judged() -> None:
    events = life("a") + [ev(E.JOB_STARTED, "d1", 1)]  # d1's submit timed out, but it went through
    records = {"a": rec("a"), "d1": rec("d1", JobStatus.IN_PROGRESS, attempt=1), "d2": None}
    verdict = check(["a"], events, records, in_doubt=["d1", "d2"])
    assert verdict.in_doubt == 2 and verdict.recovered == 1
    # d1 is judged as an accepted job (still running: lost); d2 never existed: neither lost nor unexpected.
    only(verdict, "lost", "d1")
    assert verdict.outcomes == {"completed": 1, "in_progress": 1}


def test_an_in_doubt_id_that_was_also_accepted_counts_once() -> None:
    verdict = check(["a"], life("a"), {"a": rec("a")}, in_doubt=["a"])
    assert verdict.ok and verdict.accepted == 1 and verdict.in_doubt == 0 and verdict.recovered == 0


# -- manual retry -------------------------------------------------------------------------------


def test_a_manual_retry_starts_a_new_life() -> None:
    events = [
        ev(E.JOB_SUBMITTED, "a", worker=None),
        ev(E.JOB_STARTED, "a", 1),
        ev(E.JOB_FAILED, "a", 1, failure_class="malformed"),
        ev(E.JOB_RETRY, "a", 1, None, manual=True, **{"from": "failed"}),
        ev(E.JOB_STARTED, "a", 2),
        ev(E.JOB_COMPLETED, "a", 2),
    ]
    verdict = check(["a"], events, {"a": rec("a", attempt=2)})
    assert verdict.ok, verdict.summary()  # two terminal events, but one per life
    assert verdict.attempts == 1  # the attempts of the current life
    # The same history with an automatic retry in place of the manual one: two terminals in one life.
    events[3] = ev(E.JOB_RETRY, "a", 1, failure_class="transient")
    only(check(["a"], events, {"a": rec("a", attempt=2)}), "multiple_terminals", "a")


def test_a_completion_in_each_life_is_not_a_duplicated_commit_but_two_in_one_life_are() -> None:
    events = life("a") + [ev(E.JOB_RETRY, "a", 1, None, manual=True), ev(E.JOB_STARTED, "a", 2)]
    events += [ev(E.JOB_COMPLETED, "a", 2)]
    assert check(["a"], events, {"a": rec("a", attempt=2)}).ok
    events += [ev(E.JOB_COMPLETED, "a", 2)]
    verdict = check(["a"], events, {"a": rec("a", attempt=2)})
    assert verdict.duplicated_commits == ["a: 2 job_completed events"], verdict.summary()


# -- parse_executions ---------------------------------------------------------------------------


def _line(job: str, attempt: int, runner: str, phase: str, t_ms: float) -> str:
    return json.dumps({"job": job, "attempt": attempt, "runner": runner, "phase": phase, "t_ms": t_ms})


def test_parse_executions_pairs_start_and_end_skips_a_cut_line_and_keeps_a_start_without_end() -> None:
    lines = [
        _line("a", 1, "100", "start", 1000.0),
        _line("b", 1, "200", "start", 1100.0),
        _line("a", 1, "100", "end", 1500.0),
        _line("b", 1, "200", "end", 1900.0)[:25],  # cut short by a SIGKILL mid-write
        "",
        '{"job": "c"}',  # no attempt, no time: skipped
        _line("a", 2, "300", "start", 2000.0),
        _line("a", 2, "300", "end", 2600.0),
    ]
    runs = parse_executions(lines)
    assert sorted(runs, key=lambda x: (x.job, x.attempt)) == [
        Execution("a", 1, 1000.0, 1500.0, "100"),
        Execution("a", 2, 2000.0, 2600.0, "300"),
        Execution("b", 1, 1100.0, None, "200"),  # its end line was cut: it ran until an unknown time
    ]


def test_parse_executions_keeps_runners_apart_and_ignores_an_end_without_a_start() -> None:
    lines = [
        _line("a", 1, "100", "start", 0.0),
        _line("a", 1, "200", "start", 10.0),  # the same attempt in two processes (a zombie's twin)
        _line("a", 1, "200", "end", 50.0),
        _line("a", 1, "100", "end", 90.0),
        _line("z", 1, "100", "end", 99.0),  # its start line was never written
    ]
    runs = parse_executions(lines)
    assert sorted(runs, key=lambda x: x.runner) == [
        Execution("a", 1, 0.0, 90.0, "100"),
        Execution("a", 1, 10.0, 50.0, "200"),
    ]
