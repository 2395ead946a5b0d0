"""How one attempt at a job ended, as the worker's slot saw it: a small typed value per outcome.

The slot turns each into one Function call (or none): ``Completed`` → complete, ``Failed`` → fail
(the retry policy in the Function decides what follows), ``Released`` → release (no attempt used),
``Cancelled`` / ``Lost`` → nothing: the job is no longer this attempt's (cancelled by a user, or
its lease was lost and someone else may run it now).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emp import defaults
from emp.model.retry import FailureClass


@dataclass(frozen=True, slots=True)
class Completed:
    result: Any
    """What the connector returned (outputs listed under ``outputs``); JSON-encoded for Redis."""
    final_message: str = ""
    """The last progress message, not written yet: the complete call records it at 100 %."""


@dataclass(frozen=True, slots=True)
class Failed:
    failure_class: str
    """An ``emp.model.retry.FailureClass`` value (the fail Function treats any other as unknown)."""
    message: str


@dataclass(frozen=True, slots=True)
class Released:
    reason: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Cancelled by a user while running: the cancel already ended the job."""


@dataclass(frozen=True, slots=True)
class Lost:
    """The attempt is no longer current (its lease lapsed and the job was requeued)."""


AttemptResult = Completed | Failed | Released | Cancelled | Lost


def checked_result(ended: Completed, limit: int = defaults.RESULT_MAX_BYTES) -> tuple[Completed | Failed, str]:
    """``(ended, its result as the JSON text the complete call stores)``, or a malformed failure
    (and ``""``) when the result is not JSON or larger than ``limit`` bytes: a connector that returns
    megabytes must not bloat the job's hash (its bytes belong in outputs), nor end the worker."""
    if ended.result is None:
        return ended, ""
    try:
        text = json.dumps(ended.result, separators=(",", ":"), allow_nan=False)  # ASCII: len is bytes
    except (TypeError, ValueError) as exc:
        return Failed(FailureClass.MALFORMED, f"result: not JSON ({exc})"), ""
    if len(text) > limit:
        return Failed(
            FailureClass.MALFORMED,
            f"result: {len(text)} bytes is over the limit of {limit} bytes (store large data as outputs)",
        ), ""
    return ended, text
