"""The API's bodies as pydantic models: what the routes answer, and what /openapi.json describes.

A submitted job is validated by :class:`emp.model.job.JobSubmission` itself (through
``parse_submission``, as `emp submit` does): its JSON schema is the request schema, never a copy
(:mod:`emp.coordinator.api.openapi` derives the original system's body from it).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from emp import defaults
from emp.model.job import JobSubmission


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    code: str = Field(description="unauthorized, invalid, not_found, exists, not_retryable, unavailable, ...")
    message: str
    fields: list[str] = Field(default_factory=list, description="The body fields (or parameters) at fault")


class ErrorBody(BaseModel):
    """Every error: ``{"error": {"code", "message", "fields"}}``."""

    error: ErrorDetail


class BatchRequest(BaseModel):
    """A batch as ``{"jobs": [...]}`` (a bare array of jobs is taken too)."""

    model_config = ConfigDict(extra="forbid")

    jobs: list[JobSubmission] = Field(min_length=1, max_length=defaults.MAX_BATCH, description="Ids unique within it")


class Submitted(BaseModel):
    id: str
    status: str = Field(description="pending, scheduled or unworkable")


class SubmittedOne(Submitted):
    """One job submitted; ``job_id`` and ``success`` repeat it in the original API's names."""

    job_id: str
    success: bool = True


class SubmittedBatch(BaseModel):
    jobs: list[Submitted]


class JobOut(_Out):
    """A job as stored (emp.model.job.Job): every field; times are server epoch ms."""

    id: str
    service: str
    status: str
    priority: int
    attempt: int = 0
    max_attempts: int
    customer_id: str | None = None
    workflow_id: str | None = None
    workflow_priority: int | None = None
    workflow_datetime: int | None = None
    step: int | None = None
    total_steps: int | None = None
    created_at: int | None = None
    started_at: int | None = None
    finished_at: int | None = None
    worker_id: str | None = None
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    failure_class: str | None = None
    payload: Any = None
    requirements: dict[str, Any] | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)


class JobRow(_Out):
    """A job in a listing (the index's row: no payload or result)."""

    id: str
    service: str
    status: str
    priority: int | None = None
    attempt: int | None = None
    worker_id: str | None = None
    progress: float | None = None
    message: str | None = None
    created_at: int | None = None
    finished_at: int | None = None
    failure_class: str | None = None
    customer_id: str | None = None
    workflow_id: str | None = None


class JobPageOut(BaseModel):
    jobs: list[JobRow]
    next_cursor: str = Field(description='Pass back as ?cursor= for the next page; "" after the last one')


class CancelOut(BaseModel):
    id: str
    cancelled: bool = Field(description="False when the job had already ended (nothing changed)")
    previous_status: str | None


class RetryOut(BaseModel):
    id: str
    status: str


class WorkerOut(BaseModel):
    id: str
    machine_id: str
    status: str
    services: list[str]
    current_job: str | None
    capabilities: dict[str, Any]


class WorkersOut(BaseModel):
    workers: list[WorkerOut]


class MachinesOut(BaseModel):
    machines: list[dict[str, Any]]


class ServicesOut(BaseModel):
    services: list[dict[str, Any]]


class PercentilesOut(BaseModel):
    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


class WindowOut(BaseModel):
    window_s: int
    ended: dict[str, int]
    throughput_per_s: float = Field(description="Completed jobs per second over the window")
    success_rate: float | None = Field(description="completed / (completed + failed); null when none ended")
    wait_s: PercentilesOut
    run_s: PercentilesOut
    sample_size: int
    sampled: bool = Field(description="True when the percentiles come from the newest jobs only")


class SignatureDepthOut(BaseModel):
    sig: str
    requirements: Any
    pending: int
    unworkable: int
    head_age_s: float | None


class ServiceDepthOut(BaseModel):
    service: str
    pending: int
    unworkable: int
    signatures: list[SignatureDepthOut]


class StatsOut(BaseModel):
    now_ms: int
    jobs: dict[str, int] = Field(description="Jobs per status now")
    depth: list[ServiceDepthOut]
    windows: list[WindowOut]
    per_minute: dict[str, list[int]] = Field(
        description="Jobs completed and failed in each of the last minutes, the oldest minute first"
    )
    oldest_pending_s: float | None = Field(description="How long the longest-waiting queue head has waited")


class HealthOut(BaseModel):
    status: str = Field(description="ok, or degraded when Redis does not answer")
    redis: str
    version: str
    time_ms: int
    leader: bool | None = Field(
        default=None, description="whether this coordinator leads the upkeep now (null: it runs none)"
    )
    redis_restarts: int | None = Field(
        default=None, description="Redis restarts this coordinator noticed (its run_id changed) since it started"
    )
    redis_state_lost: int | None = Field(
        default=None, description="of those, the restarts that came back without (all of) the namespace's data"
    )


class EventOut(BaseModel):
    """One SSE message's ``data`` (the SSE ``id`` is the stream entry id, ``event`` its type)."""

    id: str
    type: str
    ts: int | None
    job: str | None
    worker: str | None
    attempt: int | None
    data: dict[str, Any]


# -- flows (docs/flows.md) -------------------------------------------------------------------------


class FlowEdgeOut(BaseModel):
    step: str
    on: str = Field(description="completed, failed or always")


class FlowStepOut(BaseModel):
    name: str
    id: str = Field(description="The step's job id (<flow id>.<name>)")
    service: str
    depends_on: list[FlowEdgeOut]
    status: str = Field(description="A job status (waiting until its parents end), or expired")
    progress: int | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    failure_class: str | None = None
    worker_id: str | None = None


class FlowOut(BaseModel):
    """A flow and each step's state (GET /api/flows/{id}; POST answers it too, as submitted)."""

    id: str
    status: str = Field(description="running, completed, failed or cancelled")
    created_at: int | None = None
    finished_at: int | None = None
    priority: int | None = None
    steps: list[FlowStepOut]


class ActiveFlowStepOut(BaseModel):
    id: str
    name: str
    service: str
    after: list[str] = Field(description="The names of the steps it waits for")
    status: str = Field(description="A job status, or '' when its job expired")
    progress: float | None = None


class ActiveFlowOut(BaseModel):
    id: str
    created_at: int | None = None
    priority: int | None = None
    open: int = Field(description="Steps not ended")
    steps_total: int
    steps: list[ActiveFlowStepOut] = Field(description="At most `steps` of them, those not ended first")


class ActiveFlowsOut(BaseModel):
    """GET /api/flows: the flows not ended, the oldest first."""

    total: int = Field(description="Flows not ended")
    flows: list[ActiveFlowOut]


class FlowEdgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    on: str = Field("completed", pattern="^(completed|failed|always)$")


class FlowStepIn(BaseModel):
    """One step: a job document (every field of JobSubmission but id and run_at) with a name and edges."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    service: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]*$", max_length=defaults.SERVICE_NAME_MAX)
    depends_on: list[str | FlowEdgeIn] = Field(default_factory=list, description="Parent step names, or {step, on}")


class FlowRequest(BaseModel):
    """A flow document (docs/flows.md). Edges must name steps of the flow and form no cycle; a
    ``{"$from": <parent step>, "path": "result.x"}`` in a payload must name one of the step's parents."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.\-:]{1,64}$")
    priority: int | None = Field(None, ge=defaults.PRIORITY_MIN, le=defaults.PRIORITY_MAX)
    steps: list[FlowStepIn] = Field(min_length=1, max_length=defaults.MAX_BATCH)
