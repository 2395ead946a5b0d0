"""emp's exceptions, in one tree. Callers catch at boundaries only: the CLI (exit codes, mapped in
one table: ``emp.cli.common.EXIT_CODES``), the worker loop, and apps using ``emp.client``.

EmpError
├── ConfigError            bad settings, config file or environment (exit 2)
├── UsageError             an option or argument is unusable: bad JSON, unreadable @FILE (exit 2)
├── JobValidationError     a job refused before anything was written (exit 2); also a ValueError
├── JobNotFound            no job with that id (exit 4)
├── JobExists              a job with that id exists already (exit 2)
├── StaleAttempt           start/progress/release for an attempt that is no longer current (fencing)
├── NotRetryable           `emp jobs retry` on a job that has not ended badly (exit 2)
├── WaitTimeout            ``Client.wait`` gave up before the job ended; also a TimeoutError
└── BrokerError            Redis answered something emp does not understand, or is unreachable
      ├── BrokerFull            Redis is at maxmemory: new work refused, nothing written (HTTP 507)
      └── LibraryVersionError   the server has a newer emp library than this client

Expected outcomes are values, not exceptions: a complete/fail that arrives for a stale attempt or a
job that is gone is an ``Outcome`` whose ``code`` says so (``emp.redis.calls.OutcomeCode``), and it
still carries the next claim made in the same call.

Import rule: this module imports nothing from emp, so every package may import it, ``emp.model``
included (the model raises JobValidationError); ``emp.errors`` and ``emp.defaults`` are the only
modules the pure model may import.
"""

from __future__ import annotations


class EmpError(Exception):
    """Base of every error emp raises on purpose."""


class ConfigError(EmpError):
    """Settings, a config file or the environment are wrong; the message says which."""


class UsageError(EmpError, ValueError):
    """An option's value is unusable (bad JSON, unreadable file, malformed KEY=VALUE); nothing was written."""


class JobValidationError(EmpError, ValueError):
    """A submitted job was refused; nothing was written.

    ``problems``: one readable line per problem (``"field: what"``); the message joins them.
    """

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class JobNotFound(EmpError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class JobExists(EmpError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"a job with id {job_id!r} exists already")
        self.job_id = job_id


class StaleAttempt(EmpError):
    """The (job, attempt) pair is no longer the job's current attempt: the call changed nothing."""

    def __init__(self, job_id: str, attempt: int, status: str, current_attempt: str) -> None:
        super().__init__(
            f"stale_attempt: job {job_id} attempt {attempt} is not current "
            f"(status {status or '?'}, attempt {current_attempt or '?'})"
        )
        self.job_id = job_id
        self.attempt = attempt
        self.status = status
        self.current_attempt = current_attempt


class NotRetryable(EmpError):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}: only failed, cancelled or unworkable jobs can be retried")
        self.job_id = job_id
        self.status = status


class WaitTimeout(EmpError, TimeoutError):
    """A wait for a job ended before the job did (the job goes on)."""

    def __init__(self, job_id: str, timeout_s: float) -> None:
        super().__init__(f"job {job_id} did not end within {timeout_s:g} s")
        self.job_id = job_id
        self.timeout_s = timeout_s


class BrokerError(EmpError):
    """Redis is unreachable or answered something unexpected."""


class BrokerFull(BrokerError):
    """``broker_full``: Redis is at its ``maxmemory`` (policy ``noeviction``) and refused to admit new
    work; nothing was written (a submit is all or nothing). Work already admitted goes on, and memory
    frees as ended jobs leave (retention): retry later, or give Redis more memory."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "broker_full: Redis is out of memory (maxmemory reached); nothing was written: retry later, "
            "or raise Redis's maxmemory" + (f" ({detail})" if detail else "")
        )


class LibraryVersionError(BrokerError):
    """The server runs a newer emp Function library than this client understands."""
