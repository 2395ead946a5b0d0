"""emp.model.retry: the policy table, backoff and jitter bounds, lost leases."""

from __future__ import annotations

import pytest

from emp import defaults
from emp.model.matching import JobView
from emp.model.retry import (
    BACKOFF_CLASSES,
    FailureClass,
    OutOfMemory,
    RetryDecision,
    after_out_of_memory,
    backoff_ms,
    decide,
    decide_lost,
    parse_failure_class,
)

F = FailureClass
BASE, MAX = defaults.RETRY_BASE_MS, defaults.RETRY_MAX_MS


def test_failure_class_names() -> None:
    assert [str(c) for c in F] == [
        "resource_exhausted",
        "malformed",
        "transient",
        "service_unavailable",
        "timeout",
        "cancelled",
        "worker_lost",
        "unknown",
    ]


@pytest.mark.parametrize(
    ("fc", "tries_before", "max_attempts", "unavailable_before", "expected"),
    [
        (F.MALFORMED, 0, 3, 0, RetryDecision("fail", 0, True, False)),
        (F.MALFORMED, 0, 100, 0, RetryDecision("fail", 0, True, False)),
        (F.CANCELLED, 0, 3, 0, RetryDecision("cancel", 0, False, False)),
        (F.CANCELLED, 5, 3, 0, RetryDecision("cancel", 0, False, False)),
        (F.RESOURCE_EXHAUSTED, 0, 3, 0, RetryDecision("retry", 0, True, True)),
        (F.RESOURCE_EXHAUSTED, 1, 3, 0, RetryDecision("retry", 0, True, True)),
        (F.RESOURCE_EXHAUSTED, 2, 3, 0, RetryDecision("fail", 0, True, False)),
        (F.RESOURCE_EXHAUSTED, 0, 1, 0, RetryDecision("fail", 0, True, False)),
        (F.TRANSIENT, 0, 3, 0, RetryDecision("retry", BASE, True, False)),
        (F.TRANSIENT, 1, 3, 0, RetryDecision("retry", 2 * BASE, True, False)),
        (F.TRANSIENT, 2, 3, 0, RetryDecision("fail", 0, True, False)),
        (F.TIMEOUT, 0, 3, 0, RetryDecision("retry", BASE, True, False)),
        (F.TIMEOUT, 2, 3, 0, RetryDecision("fail", 0, True, False)),
        (F.UNKNOWN, 3, 10, 0, RetryDecision("retry", 8 * BASE, True, False)),
        (F.UNKNOWN, 9, 10, 0, RetryDecision("fail", 0, True, False)),
        (F.WORKER_LOST, 0, 3, 0, RetryDecision("retry", BASE, True, False)),
        (F.TRANSIENT, 10, 100, 0, RetryDecision("retry", MAX, True, False)),  # capped
        (F.SERVICE_UNAVAILABLE, 0, 3, 0, RetryDecision("retry", defaults.UNAVAILABLE_DELAY_MS, False, False)),
        # not counted: tries do not matter
        (F.SERVICE_UNAVAILABLE, 2, 3, 0, RetryDecision("retry", defaults.UNAVAILABLE_DELAY_MS, False, False)),
        (
            F.SERVICE_UNAVAILABLE,
            0,
            3,
            defaults.MAX_UNAVAILABLE - 2,
            RetryDecision("retry", defaults.UNAVAILABLE_DELAY_MS, False, False),
        ),
        (F.SERVICE_UNAVAILABLE, 0, 3, defaults.MAX_UNAVAILABLE - 1, RetryDecision("fail", 0, False, False)),
    ],
)
def test_policy_table(
    fc: FailureClass, tries_before: int, max_attempts: int, unavailable_before: int, expected: RetryDecision
) -> None:
    assert decide(fc, tries_before, max_attempts, unavailable_before, 0.0) == expected


def test_max_attempts_three_means_three_attempts() -> None:
    tries, outcomes = 0, []
    while True:
        d = decide(F.TRANSIENT, tries, 3)
        outcomes.append(d.action)
        if d.action != "retry":
            break
        tries += 1 if d.counts else 0
    assert outcomes == ["retry", "retry", "fail"]


def test_max_unavailable_parameter() -> None:
    assert decide(F.SERVICE_UNAVAILABLE, 0, 3, 0, 0.0, max_unavailable=1).action == "fail"
    assert decide(F.SERVICE_UNAVAILABLE, 0, 3, 0, 0.0, max_unavailable=2).action == "retry"
    assert decide(F.SERVICE_UNAVAILABLE, 0, 3, 1, 0.0, max_unavailable=2).action == "fail"


def test_class_names_as_strings() -> None:
    assert decide("transient", 0, 3) == decide(F.TRANSIENT, 0, 3)
    assert decide("no-such-class", 0, 3) == decide(F.UNKNOWN, 0, 3)
    assert parse_failure_class("timeout") is F.TIMEOUT
    assert parse_failure_class("OOM") is F.UNKNOWN
    assert parse_failure_class("") is F.UNKNOWN
    assert parse_failure_class(None) is F.UNKNOWN


@pytest.mark.parametrize("fc", sorted(BACKOFF_CLASSES))
@pytest.mark.parametrize("tries_before", [0, 1, 2, 5, 6, 7, 30, 200])
@pytest.mark.parametrize("r", [0.0, 0.25, 0.5, 0.999999])
def test_jitter_bounds(fc: FailureClass, tries_before: int, r: float) -> None:
    d = decide(fc, tries_before, 1000, 0, r)
    full = min(BASE * 2**tries_before, MAX)
    assert d.action == "retry"
    assert full * (1 - defaults.RETRY_JITTER) <= d.delay_ms <= full
    assert d.delay_ms == int(full * (1 - defaults.RETRY_JITTER * r))
    assert d.delay_ms == backoff_ms(tries_before, r)


def test_jitter_zero_is_the_full_delay() -> None:
    assert [backoff_ms(t, 0.0) for t in range(8)] == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]


@pytest.mark.parametrize("r", [-0.1, 1.0, 1.5])
def test_jitter_out_of_range(r: float) -> None:
    with pytest.raises(ValueError, match="jitter_r"):
        decide(F.TRANSIENT, 0, 3, 0, r)


def test_decide_lost() -> None:
    assert decide_lost(0) == RetryDecision("retry", 0, False, False)
    assert decide_lost(defaults.MAX_LOST_LEASES - 2) == RetryDecision("retry", 0, False, False)
    assert decide_lost(defaults.MAX_LOST_LEASES - 1) == RetryDecision("fail", 0, False, False)
    assert decide_lost(0, max_lost_leases=1).action == "fail"
    assert decide_lost(1, max_lost_leases=3).action == "retry"
    assert decide_lost(2, max_lost_leases=3).action == "fail"


# -- out of memory ---------------------------------------------------------------------------------


def _gpu(gb: float) -> dict[str, object]:
    return {"services": ["comfyui"], "hardware": {"gpu_memory_gb": gb}}


def test_resource_exhausted_with_no_other_worker_fails_at_once() -> None:
    d = decide("resource_exhausted", 0, 5, other_worker=False)
    assert d.action == "fail" and d.counts and d.delay_ms == 0


def test_out_of_memory_raises_the_floor_only_when_a_bigger_worker_is_live() -> None:
    fleet = [("w8", _gpu(8)), ("w16", _gpu(16)), ("w24", _gpu(24))]
    first = after_out_of_memory(JobView("comfyui"), "w8", _gpu(8), fleet)
    assert first == OutOfMemory(("w8",), 8.0, other_worker=True)
    second = after_out_of_memory(JobView("comfyui", avoid_workers=("w8",), gpu_gb_over=8), "w16", _gpu(16), fleet)
    assert second == OutOfMemory(("w8", "w16"), 16.0, other_worker=True)
    last = after_out_of_memory(JobView("comfyui", avoid_workers=("w8", "w16"), gpu_gb_over=16), "w24", _gpu(24), fleet)
    assert last == OutOfMemory(("w8", "w16", "w24"), 16.0, other_worker=False)


def test_out_of_memory_with_only_the_same_size_left_keeps_no_floor() -> None:
    fleet = [("a", _gpu(24)), ("b", _gpu(24)), ("cpu", {"services": ["comfyui"]})]
    assert after_out_of_memory(JobView("comfyui"), "a", _gpu(24), fleet) == OutOfMemory(("a",), None, True)
