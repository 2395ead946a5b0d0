"""`emp machine up`: turn a bare GPU box into a fleet member, keep it healthy, leave it cleanly.

The run, in order (each step is a ``machine_step`` event with its duration):

1. ``machine_startup``: GPUs (NVML, or ``--gpus N`` fake ones), host info, platform ids.
2. ``install`` (when enabled): ComfyUI, its custom nodes, model links (emp.agent.provision).
   Then every service's directory and script are checked (emp.agent.preflight): a ComfyUI that
   is not installed fails the start at once (``machine_failed``, exit 1), nothing is started.
3. ``health``: the HTTP endpoint (/health, /ready, /status, /logs, POST /restart).
4. Every service process and every worker start at once under the supervisor: a worker that is
   up before its ComfyUI simply does not claim until the service answers (no fixed sleeps; the
   original slept 30 s). One step per process as it becomes ready.
5. ``machine_ready`` with the total startup time, once every worker is ready (registered, its
   service up); a process that gives up (FATAL) is reported with ``machine_failed`` and the
   machine goes on with the rest.

Then a report every ``report_interval_s`` (GPU readings, processes, workers) keeps the machine's
record alive (TTL: a box that vanishes drops out, no phantom). On SIGTERM/SIGINT: workers first
(they stop claiming, let running jobs finish within the drain timeout, release the rest back to
the queue: nothing is failed), then the services, then ``machine_shutdown`` and exit 0. A second
signal makes the workers release at once. A SIGKILL of the whole box loses no job: leases expire
and the jobs are requeued.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from emp import defaults
from emp.agent.config import MachineConfig
from emp.agent.gpu import GpuReport, refresh, resolve_gpus
from emp.agent.health import HealthServer
from emp.agent.host import host_info
from emp.agent.layout import ServicePlan, WorkerPlan, plan_machine
from emp.agent.preflight import service_problems
from emp.agent.process_state import ProcState
from emp.agent.supervisor import ProcessSpec, ProcessStatus, Supervisor
from emp.errors import ConfigError
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import NO_OPTIONS, ConnectOptions, connect

log = logging.getLogger(__name__)

READY_WORKER_STATES = ("idle", "busy")
"""A worker slot in one of these Redis states takes jobs (``paused``: its service is down)."""

WORKER_POLL_S = 2.0
"""How often the agent reads its workers' states (for /ready and the machine record)."""

READY_CHECK_TIMEOUT_S = 2.0
"""A service readiness probe (GET ready_path) that takes longer counts as not ready yet."""


@dataclass
class AgentFiles:
    """Where a running agent leaves what local commands (`emp machine status/logs/restart`) need."""

    root: Path

    @property
    def info(self) -> Path:
        return self.root / "agent.json"

    @property
    def token(self) -> Path:
        return self.root / "token"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def write(self, info: dict[str, Any], token: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        tmp = self.info.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(self.info)

    def clear(self) -> None:
        for path in (self.info, self.token):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def agent_files(state_dir: Path) -> AgentFiles:
    return AgentFiles(state_dir / "machine")


@dataclass
class MachineAgent:
    cfg: MachineConfig
    redis_url: str
    namespace: str
    state_dir: Path
    redis_options: ConnectOptions = NO_OPTIONS
    """TLS files and a login beyond the URL; the workers read the same EMP_REDIS_* from the environment."""
    python: str = sys.executable
    say: Callable[[str], None] = lambda text: print(text, flush=True)
    gpus: GpuReport | None = None
    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    ready_s: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    worker_states: dict[str, str] = field(default_factory=dict)
    reason: str = "done"
    signals: int = 0

    def __post_init__(self) -> None:
        self.files = agent_files(self.state_dir)
        self.log_dir = self.cfg.log_dir or self.files.logs
        self.token = self.cfg.token or secrets.token_urlsafe(24)
        self.client = connect(self.redis_url, options=self.redis_options)
        self.http = httpx.AsyncClient(timeout=READY_CHECK_TIMEOUT_S, trust_env=False)  # readiness checks
        self.calls = Calls(self.client, self.namespace)
        self.host = host_info()
        self.supervisor: Supervisor | None = None
        self.health: HealthServer | None = None
        self.services: list[ServicePlan] = []
        self.workers: list[WorkerPlan] = []
        self.ttl_ms = int(max(defaults.MACHINE_TTL_S, 3 * self.cfg.report_interval_s) * 1000)
        self._stop = anyio.Event()

    # -- the run ----------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until a signal (exit 0 after a clean shutdown) or a failed start (exit 1)."""
        try:
            await library.ensure_loaded(self.client)
            code = await self._run()
        finally:
            with anyio.CancelScope(shield=True):
                self.files.clear()
                with anyio.move_on_after(2):
                    await self.client.aclose()
                    await self.http.aclose()
        return code

    async def _run(self) -> int:
        try:
            self.gpus = resolve_gpus(
                self.cfg.gpus, model=self.cfg.fake_gpu_model, memory_gb=self.cfg.fake_gpu_memory_gb
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        gpus = self.gpus
        await self._event("machine_startup", {"gpus": gpus.to_json(), "host": self.host, "config": self.cfg.source})
        self.say(f"machine {self.cfg.machine_id}: {_gpu_line(gpus)}")
        self.services, self.workers = plan_machine(
            self.cfg, gpus.gpus, python=self.python, host=_host_hardware(self.host)
        )
        if not self.workers:
            why = gpus.error or "no GPU and no per-machine service"
            return await self._fail(f"nothing to run: {why} (use --gpus N for fake GPUs)")
        if self.cfg.install.enabled and not await self._install():
            return 1
        if problems := service_problems(self.services):  # what restarts cannot fix: fail now, start nothing
            return await self._fail("; ".join(problems))
        self.supervisor = Supervisor(self._specs(), self.log_dir, on_change=self._on_change)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg)
            await self._step("health", self._start_health)
            tg.start_soon(self.supervisor.run)
            tg.start_soon(self._poll_workers)
            tg.start_soon(self._reports)
            if os.getpid() == 1:
                from emp.agent.reaper import reap_orphans

                supervisor = self.supervisor
                tg.start_soon(reap_orphans, supervisor.pids)
            tg.start_soon(self._startup)
            await self._stop.wait()
            await self._shutdown()
            tg.cancel_scope.cancel()
        return 0

    async def _startup(self) -> None:
        """Wait for every process to be ready (one step each), then announce the machine ready."""
        assert self.supervisor is not None
        supervisor = self.supervisor
        names = [s.name for s in self.services] + [w.name for w in self.workers]

        async def one(name: str) -> None:
            t0 = time.monotonic()
            while True:
                if await supervisor.wait_running(name, 1.0):
                    self._add_step(name, time.monotonic() - t0, "ready")
                    await self._event("machine_step", self.steps[-1])
                    return
                if supervisor.get(name).state == ProcState.FATAL or self._stop.is_set():
                    return

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
        if self._stop.is_set():
            return
        await self._read_worker_states()  # /ready answers from these: fresh before "ready" is said
        failed = [s.name for s in supervisor.status() if s.state == ProcState.FATAL]
        ready = [w.name for w in self.workers if supervisor.get(w.name).state == ProcState.RUNNING]
        if not ready:
            await self._fail(f"no worker became ready (failed: {', '.join(failed) or 'none'})")
            return
        self.ready_s = time.monotonic() - self.started
        self.phase = "ready"
        await self._event(
            "machine_ready", {"startup_s": round(self.ready_s, 3), "steps": self.steps, "degraded": failed}
        )
        await self._report()
        extra = f" (gave up: {', '.join(failed)})" if failed else ""
        self.say(f"machine {self.cfg.machine_id} ready in {self.ready_s:.2f} s: {len(ready)} worker(s){extra}")

    async def _shutdown(self) -> None:
        """Workers first (drain, then release), then services; the record says why we left."""
        assert self.supervisor is not None
        supervisor = self.supervisor
        self.phase = "stopping"
        self.say(
            f"machine {self.cfg.machine_id}: {self.reason}: stopping workers (drain {self.cfg.drain_timeout_s:g} s)"
        )
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self._report()
            async with anyio.create_task_group() as tg:
                for w in self.workers:
                    tg.start_soon(supervisor.stop, w.name)
            await supervisor.stop_all()
            if self.health is not None:
                await self.health.stop()
            uptime = round(time.monotonic() - self.started, 3)
            with contextlib.suppress(Exception):
                await self._event("machine_shutdown", {"reason": self.reason, "uptime_s": uptime})
        self.say(f"machine {self.cfg.machine_id} stopped")

    async def _signals(self, tg: Any) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for signum in received:
                self.signals += 1
                if self.signals == 1:
                    self.reason = signal.Signals(signum).name
                    self._stop.set()
                else:  # a second signal: workers release their jobs at once
                    self.say("second signal: workers release their jobs now")
                    self._signal_workers(signal.SIGTERM)

    def _signal_workers(self, sig: int) -> None:
        assert self.supervisor is not None
        for w in self.workers:
            pid = self.supervisor.get(w.name).pid
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)

    # -- processes --------------------------------------------------------------------------------

    def _specs(self) -> list[ProcessSpec]:
        base = dict(os.environ)
        specs = []
        for s in self.services:
            specs.append(
                ProcessSpec(
                    name=s.name,
                    argv=s.argv,
                    env={**base, **s.env},
                    cwd=s.cwd,
                    ready_check=self._http_ok(s.ready_url) if s.ready_url else None,
                    ready_timeout_s=s.kind.ready_timeout_s,
                )
            )
        worker_env = {**base, "EMP_REDIS_URL": self.redis_url, "EMP_NAMESPACE": self.namespace, "PYTHONUNBUFFERED": "1"}
        for w in self.workers:
            specs.append(
                ProcessSpec(
                    name=w.name,
                    argv=w.argv(self.python, self.namespace, self.cfg.drain_timeout_s, self.cfg.machine_id),
                    env=worker_env,
                    ready_check=self._worker_ready(w),
                    # A worker waits for its service: its readiness may take as long as the service's.
                    ready_timeout_s=(w.service.kind.ready_timeout_s if w.service else 0)
                    + defaults.MACHINE_WORKER_READY_TIMEOUT_S,
                    stop_timeout_s=self.cfg.drain_timeout_s + defaults.MACHINE_WORKER_STOP_GRACE_S,
                )
            )
        return specs

    def _http_ok(self, url: str) -> Callable[[], Any]:
        async def check() -> bool:
            return (await self.http.get(url)).status_code == 200

        return check

    def _worker_ready(self, plan: WorkerPlan) -> Callable[[], Any]:
        key = self.calls.keys.worker(plan.slot_ids[0])

        async def check() -> bool:
            return await self.client.hget(key, "status") in READY_WORKER_STATES

        return check

    async def _on_change(self, status: ProcessStatus, old: ProcState) -> None:
        log.debug("%s: %s -> %s %s", status.name, old.value, status.state.value, status.message)
        if status.state == ProcState.FATAL:
            self.say(f"{status.name} gave up: {status.message}")
            with contextlib.suppress(Exception):
                await self._event("machine_failed", {"process": status.name, "message": status.message})
        elif status.state == ProcState.BACKOFF and self.phase != "stopping":
            self.say(f"{status.name} exited ({status.last_exit_code}); restarting")

    async def restart(self, name: str) -> bool:
        assert self.supervisor is not None
        if name not in self.supervisor.names():
            return False
        await self.supervisor.restart(name)
        return True

    def tail(self, name: str, lines: int) -> list[str] | None:
        if self.supervisor is None or name not in self.supervisor.names():
            return None
        return self.supervisor.tail(name, lines)

    async def _read_worker_states(self) -> None:
        states: dict[str, str] = {}
        for w in self.workers:
            for wid in w.slot_ids:
                with contextlib.suppress(Exception):
                    states[wid] = str(await self.client.hget(self.calls.keys.worker(wid), "status") or "absent")
        self.worker_states = states

    async def _poll_workers(self) -> None:
        while True:
            await self._read_worker_states()
            await anyio.sleep(WORKER_POLL_S)

    def ready(self) -> bool:
        """At least one worker is running and takes jobs (its service is up)."""
        if self.supervisor is None or self.phase == "stopping":
            return False
        for w in self.workers:
            if self.supervisor.get(w.name).state != ProcState.RUNNING:
                continue
            if any(self.worker_states.get(wid) in READY_WORKER_STATES for wid in w.slot_ids):
                return True
        return False

    # -- reporting --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        processes = [p.to_dict() for p in self.supervisor.status()] if self.supervisor else []
        return {
            "machine_id": self.cfg.machine_id,
            "phase": self.phase,
            "ready": self.ready(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "startup_s": None if self.ready_s is None else round(self.ready_s, 3),
            "gpus": self.gpus.to_json() if self.gpus else None,
            "healthy": self.gpus.healthy if self.gpus else True,
            "host": self.host,
            "processes": processes,
            "workers": [
                {
                    "name": w.name,
                    "ids": w.slot_ids,
                    "gpu": w.gpu,
                    "service_url": w.url,
                    "states": {wid: self.worker_states.get(wid, "unknown") for wid in w.slot_ids},
                }
                for w in self.workers
            ],  # fmt: skip
            "health_url": self.health.url if self.health else None,
            "steps": self.steps,
        }

    async def _report(self) -> None:
        record = self.status() | {"status": self.phase, "started_at": int(self.started_wall * 1000)}
        await self.calls.machine_report(self.cfg.machine_id, self.ttl_ms, record)

    async def _reports(self) -> None:
        while True:
            if self.gpus is not None and self.gpus.source == "nvml":
                before = self.gpus
                self.gpus = await anyio.to_thread.run_sync(refresh, self.gpus)
                if lost := newly_lost(before, self.gpus):
                    # A GPU that fell off the bus (NVML GpuIsLost) needs the box replaced or reset:
                    # say so loudly; its worker's ComfyUI will fail and be reported as well.
                    self.say(f"GPU(s) {', '.join(map(str, lost))} lost: the machine needs attention")
                    await self._event("machine_failed", {"gpus_lost": lost, "message": "GPU fell off the bus"})
            try:
                await self._report()
            except Exception as exc:  # Redis away for a moment: the next report tries again
                log.warning("machine report: %s", exc)
            await anyio.sleep(self.cfg.report_interval_s)

    async def _event(self, etype: str, data: dict[str, Any]) -> None:
        """Best effort: a Redis blip must not take the agent (and its workers' jobs) down; the
        record's next report carries the state anyway."""
        try:
            await self.calls.machine_event(self.cfg.machine_id, etype, data, self.ttl_ms)
        except Exception as exc:
            log.warning("machine event %s not written: %s", etype, exc)

    async def _fail(self, message: str) -> int:
        self.phase = "failed"
        self.say(f"machine {self.cfg.machine_id} failed: {message}")
        await self._event("machine_failed", {"message": message})
        await self._event(
            "machine_shutdown", {"reason": "failed", "uptime_s": round(time.monotonic() - self.started, 3)}
        )
        return 1

    def _add_step(self, name: str, seconds: float, action: str, message: str = "") -> None:
        self.steps.append({"step": name, "duration_s": round(seconds, 3), "action": action, "message": message})

    async def _step(self, name: str, fn: Callable[[], Any]) -> None:
        t0 = time.monotonic()
        await fn()
        self._add_step(name, time.monotonic() - t0, "done")
        await self._event("machine_step", self.steps[-1])

    async def _start_health(self) -> None:
        self.health = HealthServer(
            self.cfg.health_host,
            self.cfg.health_port,
            status=self.status,
            ready=self.ready,
            tail=self.tail,
            restart=self.restart,
            token=self.token,
        )
        url = await self.health.start()
        self.files.write(
            {
                "machine_id": self.cfg.machine_id,
                "pid": os.getpid(),
                "health_url": url,
                "log_dir": str(self.log_dir),
                "token_file": str(self.files.token),
                "namespace": self.namespace,
            },
            self.token,
        )
        self.say(f"health endpoint at {url}")

    async def _install(self) -> bool:
        from emp.agent.provision import ProvisionConfig, StepResult, provision

        inst = self.cfg.install
        if inst.dir is None:
            await self._fail("install: no ComfyUI directory configured")
            return False

        async def on_step(step: StepResult) -> None:
            self._add_step(f"install:{step.name}", step.duration_s, step.action, step.message)
            await self._event("machine_step", self.steps[-1])

        t0 = time.monotonic()
        try:
            report = await provision(ProvisionConfig.from_install(inst, inst.dir), on_step=on_step)
        except ValueError as exc:  # a bad custom_nodes.json / models.json: nothing was touched
            await self._fail(f"install: {exc}")
            return False
        self._add_step("install", time.monotonic() - t0, "done" if report.ok else "failed")
        await self._event("machine_step", self.steps[-1])
        if not report.ok:
            await self._fail(f"install: {'; '.join(s.message for s in report.failed)[:500]}")
            return False
        for step in report.failed:  # a custom node that failed: reported, not fatal
            self.say(f"install: {step.name} failed: {step.message[:200]}")
        return True


def newly_lost(before: GpuReport, after: GpuReport) -> list[int]:
    """GPUs NVML reports lost now that were not lost at the previous reading."""
    return sorted(set(after.lost) - set(before.lost))


def _host_hardware(host: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(host.get("ram_total_gb"), int | float):
        out["ram_gb"] = int(host["ram_total_gb"])
    if isinstance(host.get("cpu_cores"), int):
        out["cpu_cores"] = host["cpu_cores"]
    return out


def _gpu_line(report: GpuReport) -> str:
    if not report.gpus:
        return report.error or "no GPU"
    names = ", ".join(f"{g.index}: {g.name} {g.memory_gb} GB" for g in report.gpus)
    return f"{len(report.gpus)} {'fake ' if report.source == 'fake' else ''}GPU(s) ({names})"


async def run_machine(
    cfg: MachineConfig,
    *,
    redis_url: str,
    namespace: str,
    state_dir: Path,
    redis_options: ConnectOptions = NO_OPTIONS,
) -> int:
    return await MachineAgent(cfg, redis_url, namespace, state_dir, redis_options).run()
