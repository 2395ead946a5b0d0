"""The one ordering rule of every pending queue (``docs/internals.md``, "Order").

    score = (1000 - effective_priority) * 2^41 + clamp(effective_time_ms - EPOCH_MS, 0, 2^41 - 1)

Lower score is served first: higher priority first, then earlier effective time, exact to the
millisecond. effective_priority = workflow_priority if set else priority; effective_time =
workflow_datetime if set else created_at, so every step of an older workflow runs before a newer
workflow of the same priority. 2^41 ms is about 69 years from 2024-01-01, and the whole score
stays below 2^51, exact in a double (Lua numbers, Redis zset scores).

Ties (same priority, same millisecond) are broken by the zset member, which starts with the
12-hex-digit submission ``seq``: ``f"{seq:012x}"`` + ``":"`` (plain) or ``"!"`` (the job has an
``avoid_workers``, so a claim must read its hash first) + the job id. A retried, requeued or released
job is re-added with its original score and seq: it goes back to its place.
"""

from __future__ import annotations

from emp import defaults

EPOCH_MS = 1_704_067_200_000
"""2024-01-01T00:00:00Z: times before it sort as the epoch itself."""

TIME_SPAN = 2**41
"""Milliseconds of effective time one priority level spans."""

SEQ_DIGITS = 12
PLAIN = ":"
AVOID = "!"


def score(
    priority: int,
    created_at_ms: int,
    workflow_priority: int | None = None,
    workflow_datetime_ms: int | None = None,
) -> int:
    """The queue score of a job (lower is served first). Raises ValueError for a priority out of range."""
    prio = workflow_priority if workflow_priority is not None else priority
    if isinstance(prio, bool) or not defaults.PRIORITY_MIN <= prio <= defaults.PRIORITY_MAX:
        raise ValueError(f"priority must be between {defaults.PRIORITY_MIN} and {defaults.PRIORITY_MAX}, got {prio!r}")
    t = workflow_datetime_ms if workflow_datetime_ms is not None else created_at_ms
    rel = min(max(t - EPOCH_MS, 0), TIME_SPAN - 1)
    return (defaults.PRIORITY_MAX - prio) * TIME_SPAN + rel


def member(seq: int, job_id: str, avoid: bool = False) -> str:
    """The zset member of a job: 12 hex digits of seq, the flag char, the id."""
    if not 0 <= seq < 16**SEQ_DIGITS:
        raise ValueError(f"seq out of range: {seq}")
    return f"{seq:0{SEQ_DIGITS}x}{AVOID if avoid else PLAIN}{job_id}"


def parse_member(m: str) -> tuple[int, bool, str]:
    """``(seq, avoid, job_id)`` of a zset member. Raises ValueError for anything else."""
    if len(m) <= SEQ_DIGITS + 1 or m[SEQ_DIGITS] not in (PLAIN, AVOID):
        raise ValueError(f"not a queue member: {m!r}")
    head = m[:SEQ_DIGITS]
    if any(c not in "0123456789abcdef" for c in head):
        raise ValueError(f"not a queue member (bad seq): {m!r}")
    return int(head, 16), m[SEQ_DIGITS] == AVOID, m[SEQ_DIGITS + 1 :]
