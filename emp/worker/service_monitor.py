"""Watches the service behind one connector: health checks, readiness, status reports to Redis.

Every ``check_interval_s`` (sooner after :meth:`ServiceMonitor.suspect`) it asks the connector
for its health and derives the state (``emp.model.services``). The worker claims only while
:attr:`ServiceMonitor.ready`: a worker whose ComfyUI is restarting stops taking jobs (it does not
fail them) and resumes when the service answers again. The state goes to Redis
(``emp_service_status``) when it changes and every ``report_interval_s``, with a TTL, so the fleet
view never keeps a service whose worker died.

Active/idle is sampled at check time, not flipped per job: a worker running thousands of short
jobs a second must not write a status per job. So "active" means "was running a job when last
checked", at most ``check_interval_s`` late.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from emp import defaults
from emp.model.services import READY_STATES, ServiceState, derive_state
from emp.redis.calls import Calls
from emp.worker.connectors.base import Connector, Health

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 5.0
"""A health check that takes longer than this counts as offline."""


class ServiceMonitor:
    def __init__(
        self,
        connector: Connector,
        *,
        service_id: str,
        record: dict[str, Any],
        busy: Callable[[], bool],
        on_ready: Callable[[], Awaitable[None]] | None = None,
        on_down: Callable[[], None] | None = None,
        check_interval_s: float = defaults.SERVICE_CHECK_INTERVAL_S,
        report_interval_s: float = defaults.SERVICE_REPORT_INTERVAL_S,
        ttl_s: float = defaults.SERVICE_STATUS_TTL_S,
        starting_grace_s: float = defaults.SERVICE_STARTING_GRACE_S,
    ) -> None:
        self.connector = connector
        self.service_id = service_id
        self.record = record
        self.busy = busy
        self.on_ready = on_ready
        self.on_down = on_down
        self.check_interval_s = check_interval_s
        self.report_interval_s = report_interval_s
        self.ttl_ms = int(ttl_s * 1000)
        self.starting_grace_s = starting_grace_s
        self.state = ServiceState.STARTING
        self.health = Health("offline", "not checked yet")
        self.ever_ok = False
        self.started = time.monotonic()
        self.last_report = 0.0
        self.reported_state: ServiceState | None = None
        self._ready = anyio.Event()
        self._recheck = anyio.Event()

    @property
    def ready(self) -> bool:
        return self.state in READY_STATES

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the service is ready, at most ``timeout_s``; True when it is."""
        with anyio.move_on_after(timeout_s):
            await self._ready.wait()
        return self.ready

    def suspect(self, reason: str) -> None:
        """A job just found the service unreachable: stop claiming now and check again at once."""
        if self.ready:
            log.warning("service %s suspected down: %s", self.service_id, reason)
            self._set_state(ServiceState.OFFLINE if self.ever_ok else ServiceState.STARTING)
        self._recheck.set()

    async def _probe(self) -> Health:
        try:
            with anyio.fail_after(HEALTH_TIMEOUT_S):
                return await self.connector.health()
        except TimeoutError:
            return Health("offline", f"health check timed out after {HEALTH_TIMEOUT_S:g} s")
        except Exception as exc:  # a connector bug must not stop the monitor
            return Health("error", f"health check failed: {type(exc).__name__}: {exc}")

    async def check(self) -> ServiceState:
        """One health check; updates the state (and readiness). Never raises."""
        self.health = await self._probe()
        was_ready = self.ready
        if self.health.ok:
            self.ever_ok = True
        within_grace = time.monotonic() - self.started < self.starting_grace_s
        self._set_state(
            derive_state(self.health.state, busy=self.busy(), ever_ok=self.ever_ok, within_grace=within_grace)
        )
        if self.ready and not was_ready:
            log.info("service %s is up (%s)", self.service_id, self.connector.name)
            if self.on_ready is not None:
                try:
                    await self.on_ready()
                except Exception:
                    log.exception("service %s: on-ready hook failed", self.service_id)
        elif was_ready and not self.ready:
            log.warning("service %s is %s: %s", self.service_id, self.state, self.health.message)
        return self.state

    def _set_state(self, state: ServiceState) -> None:
        self.state = state
        if state in READY_STATES:
            self._ready.set()
        elif self._ready.is_set():
            self._ready = anyio.Event()
            if self.on_down is not None:
                self.on_down()  # idle slots leave the idle sets now, not at their next poll

    async def report(self, calls: Calls, *, force: bool = False) -> None:
        """Write the state to Redis if it changed, if the report interval passed, or if forced."""
        now = time.monotonic()
        if not force and self.state == self.reported_state and now - self.last_report < self.report_interval_s:
            return
        record = {**self.record, "message": self.health.message, "info": self.health.info}
        await calls.service_status(self.service_id, self.state.value, self.ttl_ms, record)
        self.reported_state, self.last_report = self.state, now

    async def run(self, calls: Calls, report_errors: tuple[type[BaseException], ...]) -> None:
        """Check and report forever. Redis trouble skips a report; the next round tries again."""
        while True:
            await self.check()
            try:
                await self.report(calls)
            except report_errors as exc:
                log.debug("service status report: %s", exc)
            self._recheck = anyio.Event()
            with anyio.move_on_after(self.check_interval_s):
                await self._recheck.wait()

    async def report_stopped(self, calls: Calls) -> None:
        """The worker leaves: the service is offline as far as the fleet is concerned."""
        self.health = Health("offline", "worker stopped")
        self._set_state(ServiceState.OFFLINE)
        await self.report(calls, force=True)
