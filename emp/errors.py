"""emp's exceptions. Callers catch at boundaries only: the CLI (exit codes) and the worker loop.

EmpError
├── ConfigError            bad settings, config file or environment (exit 2)
├── JobValidationError     a job refused before anything was written (exit 2)
│     (also emp.model.job.JobValidationError's base is ValueError; the CLI maps both)
├── JobNotFound            no job with that id (exit 4)
├── JobExists              a job with that id exists already (exit 2)
├── StaleAttempt           a call for an attempt that is no longer current (fencing)
├── NotRetryable           `emp jobs retry` on a job that has not ended badly
└── BrokerError            Redis answered something emp does not understand, or is unreachable
      └── LibraryVersionError   the server has a newer emp library than this client
"""

from __future__ import annotations


class EmpError(Exception):
    """Base of every error emp raises on purpose."""


class ConfigError(EmpError):
    """Settings, a config file or the environment are wrong; the message says which."""


class JobValidationError(EmpError, ValueError):
    """A submitted job was refused; nothing was written."""


class JobNotFound(EmpError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id
        self.next_claim: object = None  # set by complete/fail calls that also claimed


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
        self.next_claim: object = None  # set by complete/fail calls that also claimed


class NotRetryable(EmpError):
    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}: only failed, cancelled or unworkable jobs can be retried")
        self.status = status


class BrokerError(EmpError):
    """Redis is unreachable or answered something unexpected."""


class LibraryVersionError(BrokerError):
    """The server runs a newer emp Function library than this client understands."""
