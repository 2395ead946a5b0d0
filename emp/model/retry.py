"""What happens after a failed attempt: the retry policy, by failure class (DESIGN section 9).

The fail Function (``emp/redis/functions/fail.lua``) applies the same table inside Redis; this is
its reference and what tests and ``emp jobs explain`` use.

=====================  =======  ==============================================================
failure class          counts   decision
=====================  =======  ==============================================================
malformed              yes      fail at once (the job itself is wrong: retrying cannot help)
cancelled              no       cancel
resource_exhausted     yes      retry at once, avoiding every worker it ran out of memory on
                                (and needing more GPU memory when a live worker has more: see
                                :func:`after_out_of_memory`), if tries_before + 1 < max_attempts
                                and another live worker can run it; else fail
transient, timeout,    yes      retry after min(RETRY_BASE_MS * 2**tries_before, RETRY_MAX_MS),
unknown, worker_lost            reduced by up to RETRY_JITTER (x (1 - RETRY_JITTER * r)), if
                                tries_before + 1 < max_attempts; else fail
service_unavailable    no       retry after UNAVAILABLE_DELAY_MS (the connector was offline: not
                                the job's fault) if unavailable_before + 1 < max_unavailable;
                                else fail
=====================  =======  ==============================================================

"counts": the attempt counts against ``max_attempts`` (``tries``). A lost lease (the worker died)
is not reported by a worker: lease expiry requeues the job without using a try
(:func:`decide_lost`) and fails it as ``worker_lost`` after ``max_lost_leases`` lost leases. A
worker that reports ``worker_lost`` itself is treated like ``transient``.

One more class is set by the broker, never by a worker: ``unworkable``, for a job that stayed
unworkable (no live worker can run its requirements) for ``UNWORKABLE_RETENTION_S``; it is final.

``r`` (jitter) comes from the caller in [0, 1): Redis Functions cannot use a useful random source,
so the client sends one and the policy stays a pure function. No error text is classified here:
connectors choose the class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from emp import defaults
from emp.model.matching import JobView, can_run, gpu_memory_gb


class FailureClass(StrEnum):
    RESOURCE_EXHAUSTED = "resource_exhausted"
    MALFORMED = "malformed"
    TRANSIENT = "transient"
    SERVICE_UNAVAILABLE = "service_unavailable"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    WORKER_LOST = "worker_lost"
    UNKNOWN = "unknown"


BACKOFF_CLASSES = frozenset(
    {FailureClass.TRANSIENT, FailureClass.TIMEOUT, FailureClass.UNKNOWN, FailureClass.WORKER_LOST}
)
"""Counted failures retried with exponential backoff."""

Action = Literal["retry", "fail", "cancel"]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``action``; ``delay_ms`` before the retry; ``counts``: the attempt uses a try;
    ``avoid_worker``: the worker that failed never takes the job again (resource_exhausted)."""

    action: Action
    delay_ms: int = 0
    counts: bool = True
    avoid_worker: bool = False


def parse_failure_class(name: str | None) -> FailureClass:
    """The class named ``name``; anything unknown (or empty) is ``unknown``, as in the fail Function."""
    try:
        return FailureClass(name or FailureClass.UNKNOWN)
    except ValueError:
        return FailureClass.UNKNOWN


def backoff_ms(tries_before: int, jitter_r: float) -> int:
    """Delay before the retry that follows ``tries_before`` counted tries, jitter applied."""
    _check_jitter(jitter_r)
    delay = min(defaults.RETRY_BASE_MS * 2 ** min(max(tries_before, 0), 62), defaults.RETRY_MAX_MS)
    return int(delay * (1 - defaults.RETRY_JITTER * jitter_r))


def decide(
    failure_class: FailureClass | str,
    tries_before: int,
    max_attempts: int,
    unavailable_before: int = 0,
    jitter_r: float = 0.0,
    max_unavailable: int = defaults.MAX_UNAVAILABLE,
    other_worker: bool = True,
) -> RetryDecision:
    """The decision after one failed attempt (see the table in the module docstring).

    ``tries_before``: counted tries before this one; ``unavailable_before``: service_unavailable
    requeues before this one; ``jitter_r``: a random number in [0, 1) from the caller;
    ``other_worker``: for resource_exhausted, whether another live worker can run the job
    (:attr:`OutOfMemory.other_worker`).
    """
    _check_jitter(jitter_r)
    fc = parse_failure_class(failure_class)
    if fc is FailureClass.MALFORMED:
        return RetryDecision("fail", counts=True)
    if fc is FailureClass.CANCELLED:
        return RetryDecision("cancel", counts=False)
    if fc is FailureClass.SERVICE_UNAVAILABLE:
        if unavailable_before + 1 < max_unavailable:
            return RetryDecision("retry", delay_ms=defaults.UNAVAILABLE_DELAY_MS, counts=False)
        return RetryDecision("fail", counts=False)
    if tries_before + 1 >= max_attempts:
        return RetryDecision("fail", counts=True)
    if fc is FailureClass.RESOURCE_EXHAUSTED:
        if not other_worker:
            return RetryDecision("fail", counts=True)
        return RetryDecision("retry", delay_ms=0, counts=True, avoid_worker=True)
    return RetryDecision("retry", delay_ms=backoff_ms(tries_before, jitter_r), counts=True)


def decide_lost(lost_before: int, max_lost_leases: int = defaults.MAX_LOST_LEASES) -> RetryDecision:
    """After a lease expired (the worker died): requeue at once without using a try, or fail as
    ``worker_lost`` when this is the ``max_lost_leases``-th lost lease."""
    if lost_before + 1 >= max_lost_leases:
        return RetryDecision("fail", counts=False)
    return RetryDecision("retry", delay_ms=0, counts=False)


@dataclass(frozen=True, slots=True)
class OutOfMemory:
    """What running out of memory on one worker changes about a job (the fail Function's twin).

    ``avoid_workers``: every worker it ran out of memory on, this one included; ``gpu_gb_over``:
    only a worker with more GPU memory than this takes it; ``other_worker``: some live worker other
    than those can run it (False: the job fails at once, :func:`decide`).
    """

    avoid_workers: tuple[str, ...]
    gpu_gb_over: float | None
    other_worker: bool


def after_out_of_memory(job: JobView, worker_id: str, worker_caps: Any, live: Iterable[tuple[str, Any]]) -> OutOfMemory:
    """The job ``job`` ran out of memory on ``worker_id`` (capabilities ``worker_caps``); ``live``:
    (id, capabilities with ``services``) of the live workers.

    The choice fits the signature model: the job's requirements (and so its queue) never change;
    the avoided workers and the memory floor are per-job rules, checked near the queue head. The
    floor rises to the failing worker's GPU memory only when a live worker that may run the job
    has more: "prefer more memory" without stranding a job whose fleet has nothing bigger (then
    it goes to another worker of the same size, and fails once none is left).
    """
    avoid = job.avoid_workers if worker_id in job.avoid_workers else (*job.avoid_workers, worker_id)
    view = replace(job, avoid_workers=avoid)
    failed_gb = gpu_memory_gb(worker_caps)
    others = [caps for wid, caps in live if wid not in avoid and can_run(view, caps, wid)]
    if not others:
        return OutOfMemory(avoid, job.gpu_gb_over, other_worker=False)
    bigger = failed_gb is not None and any((gpu_memory_gb(c) or 0.0) > failed_gb for c in others)
    return OutOfMemory(avoid, failed_gb if bigger else job.gpu_gb_over, other_worker=True)


def _check_jitter(r: float) -> None:
    if not 0.0 <= r < 1.0:
        raise ValueError(f"jitter_r must be in [0, 1), got {r!r}")
