"""The worker process: slots that claim, run and finish jobs; heartbeats; wake-ups; shutdown.

One process runs ``concurrency`` slots. Each slot is a worker in Redis (its own id, one job at a
time); the slots share one command connection pool, one blocking connection that waits on the
process's wake list, and one pub/sub connection for cancellations.

A slot's loop: claim → run → complete-and-claim-next in ONE Function call, so a busy slot costs one
round trip per job; the completes of slots that finish together go in one call for all of them
(group commit, emp/worker/group_commit.py). A slot that finds nothing sleeps until it is woken (a
submit that matches it LPUSHes its id to the process's wake list), until the next scheduled job or
lease is due, or for ``idle_poll_s`` at most. Nothing busy-polls.

Shutdown (signals): the first SIGTERM/SIGINT stops claiming and lets running jobs finish within
``drain_timeout_s``, then releases what is still running back to the queue (no attempt used) and
exits 0; a second signal releases at once and exits 1. Heartbeats go on until the last job is
finished or released (a lease must not lapse while a job is still running).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from emp import defaults
from emp._backoff import Backoff
from emp.config import default_state_dir
from emp.errors import JobNotFound, LibraryVersionError, StaleAttempt
from emp.model.job import JobStatus, check_fleet_id
from emp.model.retry import FailureClass
from emp.redis import library
from emp.redis.calls import (
    Calls,
    ClaimedJob,
    ClaimResult,
    Completion,
    NextClaim,
    NoJob,
    NotRegistered,
    Outcome,
    OutcomeCode,
)
from emp.redis.client import NO_OPTIONS, TRANSIENT_ERRORS, ConnectOptions, connect
from emp.storage import OutputOptions, OutputSink, Storage, StorageError, open_storage
from emp.worker.attempt import AttemptResult, Cancelled, Completed, Failed, Lost, Released, checked_result
from emp.worker.connectors.base import Connector, ConnectorBinding, ConnectorError, JobContext
from emp.worker.connectors.simulation import SimulationConnector
from emp.worker.group_commit import GroupCommit
from emp.worker.progress import ProgressReporter
from emp.worker.server_clock import ServerClock
from emp.worker.service_monitor import ServiceMonitor

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_REDIS_ERRORS = TRANSIENT_ERRORS


def redis_backoff(jitter: float = 0.0) -> Backoff:
    """Delays between tries while Redis is unreachable (restarting): 50 ms doubling up to 5 s."""
    return Backoff(initial_s=0.05, factor=2.0, max_s=5.0, jitter=jitter)


@dataclass
class WorkerConfig:
    redis_url: str
    namespace: str = defaults.NAMESPACE
    redis_options: ConnectOptions = NO_OPTIONS
    """TLS files and a login beyond the URL (EMP_REDIS_CA_FILE, EMP_REDIS_PASSWORD, ...)."""
    worker_id: str | None = None
    machine_id: str = field(default_factory=socket.gethostname)
    services: list[str] = field(default_factory=lambda: ["simulation"])
    connector: str = "simulation"
    capabilities: dict[str, Any] = field(default_factory=dict)
    workflow_id: str | None = None
    concurrency: int = 1
    burst: bool = False
    max_jobs: int | None = None
    drain_timeout_s: float = defaults.DRAIN_TIMEOUT_S
    lease_ttl_s: float = defaults.LEASE_TTL_S
    worker_ttl_s: float = defaults.WORKER_TTL_S
    redis_timeout_s: float = defaults.WORKER_REDIS_TIMEOUT_S
    """How long one Redis reply may take before the call is retried on a new connection."""
    idle_poll_s: float = defaults.IDLE_POLL_S
    progress_min_interval_s: float = defaults.PROGRESS_MIN_INTERVAL_S
    max_lost_leases: int = defaults.MAX_LOST_LEASES
    maintenance_interval_s: float = defaults.MAINTENANCE_INTERVAL_S
    unworkable_grace_s: float = defaults.UNWORKABLE_GRACE_S
    output_url: str | None = None
    """Where job outputs go (EMP_OUTPUT_URL); default <state dir>/outputs."""
    output_options: OutputOptions | None = None
    """Object stores: presigned URLs, retention tag, retries (EMP_OUTPUT_*); None: the defaults."""
    service_check_interval_s: float = defaults.SERVICE_CHECK_INTERVAL_S
    service_report_interval_s: float = defaults.SERVICE_REPORT_INTERVAL_S
    service_starting_grace_s: float = defaults.SERVICE_STARTING_GRACE_S


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


def build_capabilities(cfg: WorkerConfig, models: dict[str, list[str]]) -> dict[str, Any]:
    """The capabilities document a slot registers: the operator's extra capabilities, plus the
    services, the workflow restriction and, per service, the models its connector reported."""
    caps: dict[str, Any] = json.loads(json.dumps(cfg.capabilities))  # deep copy
    caps["services"] = list(cfg.services)
    if cfg.workflow_id:
        caps["workflow_id"] = cfg.workflow_id
    if any(models.values()):
        existing = caps.get("models")
        per_service: dict[str, Any] = dict(existing) if isinstance(existing, dict) else {}
        for svc in cfg.services:
            have = per_service.get(svc)
            merged = list(have) if isinstance(have, list) else []
            merged += [m for m in models.get(svc, []) if m not in merged]
            per_service[svc] = merged
        caps["models"] = per_service
    return caps


class Slot:
    """One worker identity inside the process, running one job at a time."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.job: ClaimedJob | None = None
        self.scope: anyio.CancelScope | None = None
        self.stop_reason: str | None = None  # why the running job was interrupted
        self.wake = anyio.Event()
        self.needs_register = False

    def interrupt(self, reason: str) -> None:
        """Stop the running job: 'cancelled', 'stale' (lease lost) or 'release' (shutdown)."""
        if self.scope is not None and self.stop_reason is None:
            self.stop_reason = reason
            self.scope.cancel()

    def poke(self) -> None:
        self.wake.set()


class Worker:
    def __init__(
        self,
        cfg: WorkerConfig,
        connector: Connector | None = None,
        *,
        bindings: list[ConnectorBinding] | None = None,
        storage: Storage | None = None,
    ) -> None:
        if cfg.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.cfg = cfg
        if bindings is None:
            bindings = [ConnectorBinding(connector or SimulationConnector(), list(cfg.services))]
        self.bindings = bindings
        self.routes: dict[str, Connector] = {}
        for b in bindings:
            for svc in b.services:
                if svc in self.routes:
                    raise ValueError(f"service {svc!r} is served by two connectors")
                self.routes[svc] = b.connector
        missing = [svc for svc in cfg.services if svc not in self.routes]
        if missing:
            raise ValueError(f"no connector serves service(s) {', '.join(missing)}")
        self.storage: Storage = storage or open_storage(
            cfg.output_url or str(default_state_dir() / defaults.OUTPUT_DIR_NAME), cfg.output_options
        )
        base = cfg.worker_id or default_worker_id()
        self.base_id = base
        ids = [base] if cfg.concurrency == 1 else [f"{base}-{i}" for i in range(cfg.concurrency)]
        for wid in ids:
            check_fleet_id(wid, "worker id", defaults.WORKER_ID_MAX)
        check_fleet_id(cfg.machine_id, "machine id", defaults.MACHINE_ID_MAX)
        self.slots = [Slot(i) for i in ids]
        self.by_id = {s.worker_id: s for s in self.slots}
        self.wake_token = f"{base}-{uuid.uuid4().hex[:8]}"
        # Claim request ids: unique per process run (the wake token is), and cheaper than a uuid4 a job.
        self._request_ids = (f"{self.wake_token}:{n}" for n in itertools.count())
        self.lease_ms = int(cfg.lease_ttl_s * 1000)
        self.worker_ttl_ms = int(cfg.worker_ttl_s * 1000)
        self.accepting = True
        self.forced = False
        self.finished_jobs = 0
        self.caps: dict[str, Any] = {}
        self.calls: Calls | None = None
        # Batches of half the slots, two in flight: Redis runs one while the process runs the other's jobs.
        self.commits = GroupCommit(self._send_completions, max_in_flight=2, max_batch=(cfg.concurrency + 1) // 2)
        self.draining = anyio.Event()
        self.monitors = [self._monitor(b) for b in bindings]
        self.paused: set[str] = set()  # slots told to Redis they are paused (service down)
        self.background: TaskGroup | None = None  # progress writes run here, off the job's path
        self.registered = False  # the first registration of every slot is done
        self.server_clock = ServerClock()  # idle waits end at server deadlines, whatever this host's clock says

    def _monitor(self, binding: ConnectorBinding) -> ServiceMonitor:
        conn = binding.connector
        where = binding.url.split("://", 1)[-1].rstrip("/") if binding.url else self.base_id
        served = set(binding.services)
        return ServiceMonitor(
            conn,
            service_id=f"{self.cfg.machine_id}:{binding.name or conn.name}:{where}",
            record={
                "connector": conn.name,
                "url": binding.url,
                "services": list(binding.services),
                "machine_id": self.cfg.machine_id,
                "workers": [s.worker_id for s in self.slots],
            },
            busy=lambda: any(s.job is not None and s.job.service in served for s in self.slots),
            on_ready=self._refresh_capabilities,
            on_down=self._poke_all,
            check_interval_s=self.cfg.service_check_interval_s,
            report_interval_s=self.cfg.service_report_interval_s,
            starting_grace_s=self.cfg.service_starting_grace_s,
        )

    def _poke_all(self) -> None:
        for slot in self.slots:
            slot.poke()

    def services_ready(self) -> bool:
        return all(m.ready for m in self.monitors)

    async def _models(self) -> dict[str, list[str]]:
        """Each service's models, from its connector; a service that cannot answer yet has none
        (the worker registers again with them once the service is up)."""
        out: dict[str, list[str]] = {}
        for b, monitor in zip(self.bindings, self.monitors, strict=True):
            try:
                with anyio.fail_after(10):
                    models = await b.connector.list_models()
            except Exception as exc:
                log.info("models of %s unavailable for now: %s", b.name or b.connector.name, exc)
                models = []
            monitor.record["models"] = models[: defaults.SERVICE_RECORD_MODELS]
            for svc in b.services:
                out[svc] = models
        return out

    async def _refresh_capabilities(self) -> None:
        """A service came up: advertise its models now (register again if they changed). Before the
        first registration there is nothing to refresh: run() registers with fresh models."""
        if self.calls is None or not self.registered:
            return
        caps = build_capabilities(self.cfg, await self._models())
        if caps != self.caps:
            self.caps = caps
            for slot in self.slots:
                await self._retrying(functools.partial(self._register, slot), "register")
            log.info("capabilities updated: models %s", caps.get("models", {}))

    # -- signals --------------------------------------------------------------------------

    def handle_signal(self, signum: int) -> None:
        """First signal: drain. Second: release running jobs at once. Plain method, for tests."""
        if self.accepting:
            log.info("signal %s: draining (%.0f s for running jobs)", signum, self.cfg.drain_timeout_s)
            self.stop_accepting()
        else:
            log.warning("second signal %s: releasing running jobs now", signum)
            self.forced = True
            self.release_all()

    def stop_accepting(self) -> None:
        self.accepting = False
        self.draining.set()
        for s in self.slots:
            s.poke()

    def release_all(self) -> None:
        for s in self.slots:
            s.interrupt("release")
            s.poke()

    # -- main -----------------------------------------------------------------------------

    async def run(self) -> int:
        options = self.cfg.redis_options
        # Every call has a reply timeout: a reply lost on the way must not hang the worker for good.
        timeout_s = self.cfg.redis_timeout_s
        client = connect(self.cfg.redis_url, options=options, max_connections=len(self.slots) + 8, timeout_s=timeout_s)
        blocking = connect(
            self.cfg.redis_url, options=options, max_connections=2, timeout_s=timeout_s + defaults.WAKE_WAIT_S
        )
        self.calls = calls = Calls(client, self.cfg.namespace)
        try:
            await self._retrying(lambda: library.ensure_loaded(client), "load library")
            await self._retrying(self._read_server_clock, "read the server clock")
            for monitor in self.monitors:
                await monitor.check()  # first readings before registering: models need the service
            self.caps = build_capabilities(self.cfg, await self._models())
            for slot in self.slots:
                await self._retrying(functools.partial(self._register, slot), "register")
            self.registered = True
            log.info(
                "worker %s up: %d slot(s), services %s, namespace %s",
                self.base_id,
                len(self.slots),
                ",".join(self.cfg.services),
                self.cfg.namespace,
            )
            async with anyio.create_task_group() as tg:
                self.background = tg
                tg.start_soon(self._signals, tg)
                tg.start_soon(self._heartbeats)
                tg.start_soon(self._wake_listener, blocking)
                tg.start_soon(self._cancel_listener)
                tg.start_soon(self._maintenance)
                tg.start_soon(self._drain_timer)
                for monitor in self.monitors:
                    tg.start_soon(monitor.run, calls, TRANSIENT_REDIS_ERRORS)
                async with anyio.create_task_group() as slots:
                    for slot in self.slots:
                        slots.start_soon(self._slot_loop, slot)
                tg.cancel_scope.cancel()
            with anyio.move_on_after(5, shield=True):
                for slot in self.slots:
                    with contextlib.suppress(Exception):
                        await calls.worker_offline(slot.worker_id, "shutdown" if not self.accepting else "done")
                for monitor in self.monitors:
                    with contextlib.suppress(Exception):
                        await monitor.report_stopped(calls)
            log.info(
                "worker %s stopped: %d job(s) finished; %d complete call(s) for %d job(s)",
                self.base_id,
                self.finished_jobs,
                self.commits.calls,
                self.commits.entries,
            )
            return 1 if self.forced else 0
        finally:
            with anyio.move_on_after(2, shield=True):
                for b in self.bindings:
                    with contextlib.suppress(Exception):
                        await b.connector.aclose()
                await client.aclose()
                await blocking.aclose()

    async def _register(self, slot: Slot) -> None:
        assert self.calls is not None
        await self.calls.register_worker(
            slot.worker_id,
            self.cfg.machine_id,
            self.cfg.services,
            self.caps,
            self.wake_token,
            self.worker_ttl_ms,
            paused=not self.services_ready(),
        )
        slot.needs_register = False

    async def _retrying(self, fn: Callable[[], Awaitable[T]], what: str) -> T:
        """Run fn() until it succeeds, backing off on connection trouble (Redis restarting)."""
        backoff: Backoff | None = None  # built on the first error only: it seeds a Random (costly a job)
        while True:
            try:
                return await fn()
            except TRANSIENT_REDIS_ERRORS as exc:
                if self.forced and what in ("claim", "register"):
                    raise
                backoff = backoff or redis_backoff(jitter=0.5)
                delay = backoff.next()
                log.warning("%s: redis unavailable (%s); retrying in %.1f s", what, exc, delay)
                await anyio.sleep(delay)

    # -- slots ----------------------------------------------------------------------------

    def _wants_more(self) -> bool:
        if not self.accepting:
            return False
        if self.cfg.max_jobs is not None and self.finished_jobs >= self.cfg.max_jobs:
            self.stop_accepting()
            return False
        return True

    def _next_claim(self) -> NextClaim:
        return NextClaim(next(self._request_ids), self.lease_ms, True, self.cfg.max_lost_leases)

    async def _send_completions(self, batch: Sequence[Completion]) -> list[Outcome]:
        """One group-commit call, retried as a whole while Redis is unreachable (idempotent)."""
        assert self.calls is not None
        calls = self.calls
        return await self._retrying(lambda: calls.complete_many(batch), "complete")

    async def _claim(self, slot: Slot) -> ClaimResult:
        assert self.calls is not None
        calls = self.calls
        nxt = self._next_claim()  # one request id for every retry of this claim: idempotent
        return await self._retrying(
            lambda: calls.claim(slot.worker_id, nxt.request_id, nxt.lease_ms, nxt.start, nxt.max_lost), "claim"
        )

    async def _slot_loop(self, slot: Slot) -> None:
        result: ClaimResult | None = None
        while True:
            if result is None:
                if not self._wants_more():
                    return
                if not self.services_ready():
                    await self._paused_wait(slot)
                    continue
                slot.wake = anyio.Event()
                result = await self._claim(slot)
            if isinstance(result, ClaimedJob):
                result = await self._run_and_finish(slot, result)
                continue
            if isinstance(result, NotRegistered):
                await self._retrying(lambda: self._register(slot), "register")
                result = None
                continue
            assert isinstance(result, NoJob)
            if self.cfg.burst and result.next_scheduled_ms is None:
                return  # nothing pending or scheduled that this worker can run (see --burst)
            await self._idle_wait(slot, result.next_due_ms)
            result = None

    async def _paused_wait(self, slot: Slot) -> None:
        """The service is down: leave the idle sets (once) and wait for it, or for shutdown."""
        assert self.calls is not None
        calls = self.calls
        if slot.worker_id not in self.paused:
            down = [m for m in self.monitors if not m.ready]
            reason = "; ".join(f"{m.connector.name} {m.state}: {m.health.message}" for m in down)[:500]
            self.paused.add(slot.worker_id)
            log.info("slot %s paused: %s", slot.worker_id, reason)
            with contextlib.suppress(*TRANSIENT_REDIS_ERRORS):
                await calls.worker_pause(slot.worker_id, reason)
        for monitor in self.monitors:
            if not monitor.ready and self.accepting:
                await monitor.wait_ready(0.25)
        if self.services_ready():
            self.paused.discard(slot.worker_id)
            log.info("slot %s resumes claiming", slot.worker_id)

    async def _idle_wait(self, slot: Slot, next_due_ms: int | None) -> None:
        timeout = self.cfg.idle_poll_s
        if next_due_ms is not None:
            until = self.server_clock.seconds_until(next_due_ms)
            if until is None:  # no reading of Redis's clock yet: this host's will do until the first
                until = next_due_ms / 1000 - time.time()
            timeout = min(timeout, max(0.005, until + 0.002))
        if slot.needs_register:
            return
        with anyio.move_on_after(timeout):
            await slot.wake.wait()

    async def _run_and_finish(self, slot: Slot, job: ClaimedJob) -> ClaimResult | None:
        """Run the job, then complete/fail/release it, claiming the next job in the same call."""
        assert self.calls is not None
        calls = self.calls
        ended = await self._run(slot, job)
        result = ""
        if isinstance(ended, Completed):
            ended, result = checked_result(ended)
        self.finished_jobs += 1
        if isinstance(ended, Failed) and ended.failure_class == FailureClass.SERVICE_UNAVAILABLE:
            for monitor in self.monitors:
                if monitor.connector is self.routes.get(job.service):
                    monitor.suspect(ended.message)
        nxt = self._next_claim() if self._wants_more() and self.services_ready() else None
        if isinstance(ended, Completed):
            outcome = await self.commits.complete(
                Completion(job.id, job.attempt, slot.worker_id, result, nxt, ended.final_message)
            )
        elif isinstance(ended, Failed):
            fclass, message, r = ended.failure_class, ended.message, random.random()
            outcome = await self._retrying(
                lambda: calls.fail(job.id, job.attempt, slot.worker_id, fclass, message, r, nxt), "fail"
            )
            if not outcome.refused:
                log.info("job %s attempt %d failed (%s): %s", job.id, job.attempt, fclass, message)
        elif isinstance(ended, Released):
            reason = ended.reason
            try:
                await self._retrying(lambda: calls.release(job.id, job.attempt, slot.worker_id, reason), "release")
                log.info("job %s attempt %d released: %s", job.id, job.attempt, reason)
            except (StaleAttempt, JobNotFound) as exc:  # cancelled or requeued meanwhile
                log.info("job %s: %s", job.id, exc)
            return None
        else:  # cancelled or lease lost: the job is no longer ours; nothing to write.
            log.info("job %s attempt %d stopped: %s", job.id, job.attempt, type(ended).__name__.lower())
            return None
        if outcome.refused:
            # A retried call whose first try went through, or a job cancelled/requeued meanwhile.
            log.info("job %s attempt %d: %s %s", job.id, job.attempt, outcome.code, " ".join(outcome.detail))
        elif outcome.code == OutcomeCode.ALREADY:  # a retried complete whose first try went through (lost reply)
            log.info("job %s attempt %d: already completed", job.id, job.attempt)
        return outcome.next_claim

    async def _run(self, slot: Slot, job: ClaimedJob) -> AttemptResult:
        assert self.calls is not None
        reporter = ProgressReporter(
            self.calls, job.id, job.attempt, slot.worker_id, self.cfg.progress_min_interval_s, self.background
        )
        slot.job, slot.stop_reason = job, None
        connector = self.routes.get(job.service)
        if connector is None:  # a job of a service this worker does not serve (cannot happen by matching)
            slot.job = None
            return Failed(FailureClass.MALFORMED, f"this worker has no connector for service {job.service!r}")
        try:
            sink = OutputSink(self.storage, job.id, job.attempt)
        except Exception as exc:  # no job may take its worker down: fail it, go on
            slot.job = None
            return Failed(FailureClass.UNKNOWN, f"cannot prepare the job's output folder: {exc}")
        ctx = JobContext(job.id, job.attempt, job.payload, reporter.update, sink, job.service)
        outcome: AttemptResult = Released("interrupted")
        try:
            with anyio.CancelScope() as scope:
                slot.scope = scope
                if not self.accepting and self.forced:
                    scope.cancel()
                try:
                    if job.timeout_s:
                        with anyio.fail_after(job.timeout_s):
                            value = await connector.run(ctx)
                    else:
                        value = await connector.run(ctx)
                    final_message = await reporter.flush(completing=True)
                    outcome = Completed(with_outputs(value, sink), final_message or "")
                except TimeoutError:
                    outcome = Failed(FailureClass.TIMEOUT, f"job exceeded its timeout of {job.timeout_s:g} s")
                except ConnectorError as exc:
                    outcome = Failed(exc.failure_class, str(exc))
                except StorageError as exc:  # the store is down or slow: retry later, never complete without outputs
                    outcome = Failed(FailureClass.TRANSIENT, f"output storage: {exc}")
                except (StaleAttempt, JobNotFound):  # requeued, or gone (Redis restarted empty)
                    outcome = Lost()
                except LibraryVersionError:  # a newer library was loaded: this worker stops (run_worker)
                    raise
                except TRANSIENT_REDIS_ERRORS as exc:
                    outcome = Failed(FailureClass.TRANSIENT, f"redis error while running: {exc}")
                except Exception as exc:  # a connector bug must fail the job, not kill the worker
                    log.exception("job %s: connector error", job.id)
                    outcome = Failed(FailureClass.UNKNOWN, f"{type(exc).__name__}: {exc}")
            if scope.cancelled_caught:
                reason = slot.stop_reason or "release"
                if reason == "release":
                    outcome = Released("worker shutting down")
                else:
                    outcome = Cancelled() if reason == "cancelled" else Lost()
        finally:
            slot.job, slot.scope = None, None
        return outcome

    # -- background tasks -----------------------------------------------------------------

    async def _signals(self, tg: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.handle_signal(signum)

    async def _drain_timer(self) -> None:
        await self.draining.wait()
        with anyio.move_on_after(self.cfg.drain_timeout_s):
            while any(s.job is not None for s in self.slots):
                await anyio.sleep(0.05)
            return
        if any(s.job is not None for s in self.slots):
            log.info("drain timeout (%.0f s): releasing running jobs", self.cfg.drain_timeout_s)
            self.release_all()

    async def _heartbeats(self) -> None:
        assert self.calls is not None
        interval = self.cfg.lease_ttl_s * defaults.HEARTBEAT_FRACTION
        interval = min(interval, self.cfg.worker_ttl_s * defaults.HEARTBEAT_FRACTION)
        while True:
            await anyio.sleep(interval)
            with contextlib.suppress(*TRANSIENT_REDIS_ERRORS):  # the heartbeats below say it if Redis is away
                await self._read_server_clock()
            for slot in self.slots:
                job = slot.job
                try:
                    jobs = [(job.id, job.attempt)] if job else []
                    registered, states = await self.calls.heartbeat(
                        slot.worker_id, self.lease_ms, self.worker_ttl_ms, jobs
                    )
                except TRANSIENT_REDIS_ERRORS as exc:
                    log.warning("heartbeat: redis unavailable (%s)", exc)
                    break
                if not registered:
                    slot.needs_register = True
                    slot.poke()
                if job and states and states[0] != "ok" and slot.job is job:
                    slot.interrupt("cancelled" if states[0] == JobStatus.CANCELLED else "stale")

    async def _read_server_clock(self) -> None:
        assert self.calls is not None
        sent = time.monotonic()
        server_ms = await self.calls.server_time_ms()
        self.server_clock.sample(server_ms, sent, time.monotonic())

    async def _wake_listener(self, blocking: Any) -> None:
        """BLPOP the process's wake list; each item names the slot a submission chose to wake."""
        key = Calls(blocking, self.cfg.namespace).keys.wake(self.wake_token)
        backoff = redis_backoff()
        lost_connection = False
        while True:
            try:
                item = await blocking.blpop([key], timeout=defaults.WAKE_WAIT_S)
                backoff.reset()
            except TRANSIENT_REDIS_ERRORS as exc:
                log.debug("wake listener: %s", exc)
                lost_connection = True
                await anyio.sleep(backoff.next())
                continue
            if lost_connection:
                # Redis came back (maybe restarted empty): idle-set entries may be gone, so every
                # idle slot claims again now (and re-registers if its registration is gone).
                lost_connection = False
                for slot in self.slots:
                    slot.poke()
            if item:
                woken = self.by_id.get(item[1])
                if woken is not None:
                    woken.poke()

    async def _cancel_listener(self) -> None:
        assert self.calls is not None
        channel = self.calls.keys.cancel_channel
        backoff = redis_backoff()
        while True:
            pubsub = self.calls.client.pubsub()
            try:
                await pubsub.subscribe(channel)
                backoff.reset()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    job_id = message.get("data")
                    for slot in self.slots:
                        if slot.job is not None and slot.job.id == job_id:
                            log.info("job %s cancelled: interrupting", job_id)
                            slot.interrupt("cancelled")
            except TRANSIENT_REDIS_ERRORS as exc:
                log.debug("cancel listener: %s", exc)
                await anyio.sleep(backoff.next())
            finally:
                with anyio.move_on_after(1, shield=True), contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _maintenance(self) -> None:
        """Unworkable detection and retention, by whichever process wins the guard each round."""
        assert self.calls is not None
        try:
            from emp.coordinator.maintenance import maintenance_loop
        except ImportError:  # pragma: no cover - maintenance ships with the package
            return
        stop = anyio.Event()
        while True:
            try:
                await maintenance_loop(
                    self.calls,
                    interval_s=self.cfg.maintenance_interval_s,
                    grace_s=self.cfg.unworkable_grace_s,
                    max_lost=self.cfg.max_lost_leases,
                    stop=stop,
                )
                return
            except TRANSIENT_REDIS_ERRORS as exc:
                log.debug("maintenance: %s", exc)
                await anyio.sleep(1)


def with_outputs(value: Any, sink: OutputSink) -> Any:
    """The job's result with the stored outputs listed under ``outputs`` (a non-object result is
    kept under ``value``). Unchanged when the job stored nothing."""
    if not sink.stored:
        return value
    result: dict[str, Any] = dict(value) if isinstance(value, dict) else {"value": value}
    result["outputs"] = [o.to_json() for o in sink.stored]
    return result


async def run_worker(cfg: WorkerConfig, bindings: list[ConnectorBinding] | None = None) -> int:
    """Run a worker process until it is told to stop (or, with burst/max_jobs, until done).

    The server loaded a newer, incompatible Function library (a rolling upgrade): the worker stops
    with LibraryVersionError itself, which the CLI prints as one line, rather than a task group's
    traceback; its supervisor starts the new release."""
    try:
        return await Worker(cfg, bindings=bindings).run()
    except BaseExceptionGroup as group:
        found, _ = group.split(LibraryVersionError)
        if found is None:
            raise
        newer: BaseException = found
        while isinstance(newer, BaseExceptionGroup):
            newer = newer.exceptions[0]
        raise newer from None
