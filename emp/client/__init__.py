"""emp's public Python API: submit jobs, follow them, act on them.

.. code-block:: python

    from emp.client import Client

    async with Client("redis://localhost:6379/0") as emp:
        job_id = await emp.submit("simulation", {"steps": 5})
        job = await emp.wait(job_id, on_progress=lambda u: print(u.status, u.progress))
        print(job.status, job.result)

:class:`Client` is async (asyncio or trio through anyio); :class:`SyncClient` offers the same
methods to code without an event loop. Errors a caller may catch: :class:`JobValidationError`
(nothing was written), :class:`JobExists`, :class:`JobNotFound`, :class:`NotRetryable`,
:class:`WaitTimeout`, :class:`BrokerError`; all derive from :class:`EmpError` (tree in emp.errors).
"""

from emp.client.client import (
    Client,
    Explanation,
    JobPage,
    JobUpdate,
    ProgressCallback,
    WorkerVerdict,
)
from emp.client.sync import SyncClient
from emp.errors import (
    BrokerError,
    ConfigError,
    EmpError,
    JobExists,
    JobNotFound,
    JobValidationError,
    NotRetryable,
    WaitTimeout,
)
from emp.model.events import Event, EventType
from emp.model.job import Job, JobStatus
from emp.model.services import ServiceRecord

__all__ = [
    "BrokerError",
    "Client",
    "ConfigError",
    "EmpError",
    "Event",
    "EventType",
    "Explanation",
    "Job",
    "JobExists",
    "JobNotFound",
    "JobPage",
    "JobStatus",
    "JobUpdate",
    "JobValidationError",
    "NotRetryable",
    "ProgressCallback",
    "ServiceRecord",
    "SyncClient",
    "WaitTimeout",
    "WorkerVerdict",
]
