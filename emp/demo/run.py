"""`emp demo`: a whole emp fleet on one machine, in one command.

It starts (or reuses) a local redis-server, loads the Function library, starts simulated worker
processes with different capabilities (a 24 GB "rtx4090", a 48 GB "a6000", a CPU box), serves the
coordinator in-process (the HTTP/WebSocket API on a free loopback port, with a fresh token it prints,
and the upkeep: `emp coordinator`), submits a mixed batch of jobs and follows them live from the event
stream (:mod:`emp.dashboard`: snapshot, follow, re-snapshot after a gap) until each one reached the
state it was meant to reach:

- plain jobs of varied priority: completed;
- jobs that need 40 GB or a model only some workers have: completed, on the right worker;
- a three-step workflow (one workflow_priority / workflow_datetime): completed, in step order;
- a job that fails transiently once: completed on attempt 2 (after a backoff);
- a malformed job: failed at once, no retry;
- a job that needs 80 GB, which no worker has: unworkable (after the grace period);
- a GPU box, run by the machine agent (`emp machine up` with 2 fake GPUs: a stand-in ComfyUI from
  emp/stand_ins, which ships in the package, and a worker per GPU, supervised), takes a txt2img
  job (KSampler progress, its PNG stored under ``<state_dir>/demo/<namespace>/outputs``), an
  image edit, and a workflow ComfyUI refuses (HTTP 400: failed as malformed, no retry).

Then it prints a summary and shuts everything down in order: workers get SIGTERM (they drain),
the machine agent drains its workers and stops its ComfyUIs, the local redis-server stops last.
Ctrl-C at any time does the same clean shutdown.

``--smoke`` (automatic when stdin is not a terminal) runs without the live screen, prints a plain
progress line at most once a second, and exits 0 only when every job reached its expected state
within the deadline, else 1 with the list of mismatches.

Each run uses a fresh namespace (``demo<hex>``), so runs against the same persisted Redis never
mix, and the worker processes' logs go to ``<state_dir>/demo/<namespace>/``. Jobs submitted from
another terminal into that namespace (`emp --namespace demo<hex> submit ...`, which finds the
local server through ``<state_dir>/redis.url``) join the live table, without an expectation.
At the end, the demo's jobs still open (the unworkable one) are cancelled, so nothing lingers.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
from anyio.abc import TaskStatus
from pydantic import SecretStr
from rich.console import Console, RenderableType
from rich.live import Live

from emp._ports import free_port_pair
from emp._process import die_with_parent
from emp.client import Client
from emp.config import Settings, redacted_url
from emp.coordinator.api.server import serve as serve_coordinator
from emp.coordinator.settings import CoordinatorSettings
from emp.dashboard.live import GAP_NOTE, LiveFleet
from emp.dashboard.state import MACHINE_LOGGED, SUBMITTED, apply_event, machine_line
from emp.dashboard.watch_keys import ViewOptions
from emp.dashboard.watch_live import Watcher
from emp.dashboard.watch_view import render_watch
from emp.demo.fleet import (
    COMFYUI_KIND,
    MACHINE_GPUS,
    WORKER_DRAIN_S,
    WORKER_KINDS,
    DemoWorker,
    demo_fleet,
    demo_jobs,
    expected_rows,
    machine_toml,
    worker_argv,
)
from emp.demo.view import DEMO_PANEL_LINES, END_STATES, DemoState, demo_panel, progress_line, render_summary
from emp.model.events import Event
from emp.model.job import parse_submission
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import connect
from emp.redis.embedded import EmbeddedRedis, read_live_url
from emp.redis.streams import read_after
from emp.stand_ins import ROOT as STAND_INS_ROOT

log = logging.getLogger(__name__)

SMOKE_DEADLINE_S = 60.0
"""--smoke: every job must reach its expected state within this (a healthy run takes ~15 s)."""

INTERACTIVE_DEADLINE_S = 180.0
"""The live demo gives up (and says which jobs are stuck) after this."""

DEMO_GRACE_S = 3.0
"""Unworkable grace for the demo's namespace: short, so the impossible job shows up quickly."""

MAINTENANCE_INTERVAL_S = 1.0
REGISTER_TIMEOUT_S = 30.0
"""Worker processes must all be registered within this (a cold Python start takes ~1 s)."""

STOP_TIMEOUT_S = WORKER_DRAIN_S + 5.0
"""After SIGTERM, a worker process gets this long to exit before SIGKILL."""

DEMO_VIEW = ViewOptions(keys=False)
"""The demo draws the watch screen but reads no keys (Ctrl-C stops it): the footer says so."""

LIVE_PACE = 2.0
"""The live screen stretches job steps by this, so a person can follow them (~15 s in all)."""

COMFYUI_STEP_MS = 20.0
"""The stand-in ComfyUI's KSampler time per step (the txt2img job has 20 steps)."""

SMOKE_LINE_INTERVAL_S = 1.0
LIVE_REFRESH_S = 0.1
EXIT_INTERRUPTED = 130


# -- the run --------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    worker: DemoWorker
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: Any = None

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join("    " + line for line in text.strip().splitlines()[-lines:])


@dataclass
class Demo:
    """One run of the demo against a Redis at ``url`` (already running)."""

    settings: Settings
    url: str
    smoke: bool
    workers: int
    deadline_s: float
    console: Console
    out: TextIO
    namespace: str = field(default_factory=lambda: "demo" + secrets.token_hex(3))
    procs: list[WorkerProcess] = field(default_factory=list)
    interrupted: bool = False
    force: bool = False
    api_url: str | None = None
    """The coordinator's URL once it serves."""

    def __post_init__(self) -> None:
        self.state = DemoState(self.namespace, redacted_url(self.url), deadline_s=self.deadline_s)
        self.client = connect(self.url, options=self.settings.connect_options())
        self.calls = Calls(self.client, self.namespace)
        self.fleet = demo_fleet(self.workers)
        self.live = LiveFleet(
            self.calls,
            self.state.fleet,
            on_event=self._on_event,
            after_read=self._check_done,
            on_resnapshot=self._on_resnapshot,
        )
        self.done = anyio.Event()
        self.t0 = time.monotonic()
        self.log_dir = self.settings.state_dir / "demo" / self.namespace

    # -- top level --------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run to the end (or a signal); the summary is printed before the shutdown starts."""
        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch_signals, tg.cancel_scope)
                    await self._main()
                    tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # One error (Redis unreachable, say) reaches the CLI as itself, for its exit code.
                raise _sole(group) from None
            code = self._report()
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()
        return code

    def _report(self) -> int:
        """Print the summary; the exit code: 0 every job as expected, 1 not, 130 interrupted."""
        if not self.state.jobs:  # the workers never came up: _main said why
            return EXIT_INTERRUPTED if self.interrupted else 1
        self.state.elapsed_s = time.monotonic() - self.t0
        self.console.print(render_summary(self.state))
        if self.interrupted:
            self._say("interrupted: stopping the workers and cancelling the jobs still open")
            return EXIT_INTERRUPTED
        outputs = sorted(p for p in self.output_dir.rglob("*") if p.is_file()) if self.output_dir.is_dir() else []
        if outputs:
            self._say(f"job outputs: {_plural(len(outputs), 'file', 'files')} under {self.output_dir}")
        if not self.state.all_reached():
            self._say("mismatches:\n" + "\n".join("  " + m for m in self.state.mismatches()))
            return 1
        return 0

    async def _watch_signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self.interrupted = True
                self.state.phase = "interrupted: shutting down"
                scope.cancel()
                return

    async def _main(self) -> None:
        await library.ensure_loaded(self.client)
        self._say(f"emp demo: namespace {self.namespace}, redis {redacted_url(self.url)}, logs in {self.log_dir}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        last = await self.client.xrevrange(self.calls.keys.events, "+", "-", count=1)
        before_start = str(last[0][0]) if last else "0-0"
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            try:
                await tg.start(self._serve_coordinator, stop)
                await self._run_fleet(before_start)
            finally:
                stop.set()  # the coordinator stops serving; the task group waits for it

    async def _serve_coordinator(self, stop: anyio.Event, *, task_status: TaskStatus[str]) -> None:
        """The coordinator (API + upkeep) of the demo's namespace until ``stop``, on a free loopback
        port with a fresh token; its URL and token are printed so the API can be tried while the
        demo runs (README: curl examples)."""
        token = secrets.token_urlsafe(18)
        settings = CoordinatorSettings(
            api_tokens=[SecretStr(token)], host="127.0.0.1", port=0, maintenance_interval_s=MAINTENANCE_INTERVAL_S
        )
        client = Client(
            self.url,
            self.namespace,
            max_payload_bytes=self.settings.max_payload_bytes,
            connect_options=self.settings.connect_options(),
        )

        def ready(url: str) -> None:
            self.api_url = url
            self._say(f"coordinator: {url}  token: {token}")
            self._say(f'  try: curl -H "Authorization: Bearer {token}" "{url}/api/jobs?limit=5"')
            self._say(f"  web monitor: {url}/ (paste the token)")
            task_status.started(url)

        try:
            await serve_coordinator(
                client,
                settings,
                stop=stop,
                grace_s=DEMO_GRACE_S,
                max_lost=self.settings.max_lost_leases,
                on_ready=ready,
            )
        finally:
            with anyio.move_on_after(2, shield=True):
                await client.aclose()

    async def _run_fleet(self, before_start: str) -> None:
        await self._start_machine()
        self._start_workers()
        if not await self._wait_registered():
            return
        await self._machine_ready(before_start)
        await self.live.start()
        await self._submit()
        self.t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.live.follow)
            tg.start_soon(self._watch_workers)
            if self.smoke:
                tg.start_soon(self._print_progress)
            with anyio.move_on_after(self.deadline_s):
                if self.smoke:
                    await self.done.wait()
                else:
                    await self._live_until_done()
            tg.cancel_scope.cancel()

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- workers ----------------------------------------------------------------------------------

    async def _start_machine(self) -> None:
        """`emp machine up --gpus 2`: a GPU box with a stand-in ComfyUI (the fake of emp/stand_ins)
        and a worker per fake GPU, supervised by the machine agent, as on a rented box."""
        step_ms = COMFYUI_STEP_MS * (1.0 if self.smoke else LIVE_PACE)
        config = self.log_dir / "machine.toml"
        config.write_text(
            machine_toml(
                machine_id=f"demo-box-{self.namespace}",
                gpus=MACHINE_GPUS,
                base_port=free_port_pair(),
                step_ms=step_ms,
                comfyui_out=self.log_dir / "comfyui-output",
                root=STAND_INS_ROOT,
            ),
            encoding="utf-8",
        )
        env = self._child_env() | {
            "EMP_STATE_DIR": str(self.log_dir / "machine-state"),
            "EMP_OUTPUT_URL": str(self.output_dir),
        }
        path = self.log_dir / "machine.log"
        out = open(path, "ab")  # closed in _shutdown, once the process has exited
        proc = subprocess.Popen(
            [sys.executable, "-m", "emp", "machine", "up", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        box = DemoWorker("gpu-box", COMFYUI_KIND)
        self.procs.append(WorkerProcess(box, proc, path, out))
        self._say(
            f"machine agent: emp machine up, {MACHINE_GPUS} fake GPUs, a stand-in ComfyUI and a worker per GPU "
            f"(log {path}); job outputs go to {self.output_dir}"
        )

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "EMP_REDIS_URL": self.url,
                "EMP_NAMESPACE": self.namespace,
                "EMP_UNWORKABLE_GRACE_S": f"{DEMO_GRACE_S:g}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    @property
    def output_dir(self) -> Path:
        return self.log_dir / "outputs"

    def _start_workers(self) -> None:
        env = self._child_env()
        for worker in self.fleet:
            if worker.on_machine:
                continue  # the machine agent starts these
            path = self.log_dir / f"{worker.name}.log"
            out = open(path, "ab")  # closed in _shutdown, once the process has exited
            # A session of its own: a Ctrl-C in the terminal reaches the demo only, which then
            # stops the workers in order (one SIGTERM each: drain), instead of every process at once.
            proc = subprocess.Popen(
                worker_argv(worker, self.namespace, output_url=str(self.output_dir)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,  # no orphan worker if the demo is SIGKILLed
            )
            self.procs.append(WorkerProcess(worker, proc, path, out))
            log.info("started worker %s (pid %d)", worker.worker_id, proc.pid)

    async def _wait_registered(self) -> bool:
        want = sum(w.slot_count for w in self.fleet)
        own = [w for w in self.fleet if not w.on_machine]
        machine = len(self.fleet) - len(own)
        agent = f" and a machine agent ({_plural(machine, 'GPU worker', 'GPU workers')})" if machine else ""
        self._say(f"starting {_plural(len(own), 'worker process', 'worker processes')}{agent} ({want} slots)...")
        with anyio.move_on_after(REGISTER_TIMEOUT_S):
            while True:
                live = await self.calls.live_workers()
                if len(live) >= want:
                    return True
                dead = [p for p in self.procs if p.proc.poll() is not None]
                if dead:
                    for p in dead:
                        self._say(f"worker {p.worker.worker_id} exited with code {p.proc.returncode}:\n{p.tail()}")
                    return False
                await anyio.sleep(0.1)
        self._say(f"workers did not register within {REGISTER_TIMEOUT_S:g} s; logs in {self.log_dir}")
        for p in self.procs:
            self._say(f"{p.worker.worker_id}:\n{p.tail()}")
        return False

    async def _watch_workers(self) -> None:
        """A worker process that dies is reported (its jobs come back when their leases lapse)."""
        reported: set[int] = set()
        while True:
            for p in self.procs:
                if p.proc.poll() is not None and p.proc.pid not in reported:
                    reported.add(p.proc.pid)
                    self.state.log.append(f"worker process {p.worker.worker_id} exited ({p.proc.returncode})")
            if all(p.proc.poll() is not None for p in self.procs):
                self.done.set()
                return
            await anyio.sleep(0.5)

    # -- jobs -------------------------------------------------------------------------------------

    async def _submit(self) -> None:
        now_ms = int(time.time() * 1000)
        jobs = demo_jobs(now_ms, pace=1.0 if self.smoke else LIVE_PACE)
        max_payload = self.settings.max_payload_bytes
        wires = [parse_submission({"id": j.id, **j.submission}).to_wire(max_payload) for j in jobs]
        for expected in expected_rows(jobs, wires, self.fleet):
            self.state.add_job(expected)
        statuses = await self.calls.submit(wires, max_payload)
        for job, status in zip(jobs, statuses, strict=True):
            view = self.state.jobs[job.id]
            if view.status == SUBMITTED:  # the stream has not told us more yet
                view.status = status
        self._say(
            f"submitted {len(jobs)} jobs; add your own from another terminal with: "
            f"emp --namespace {self.namespace} submit simulation --payload '{{\"steps\": 20}}'"
        )

    async def _machine_ready(self, since: str) -> None:
        """Wait (briefly) for the box's machine_ready, which may come before the view follows the
        stream: the workers register first, the agent announces the machine right after."""
        with anyio.move_on_after(REGISTER_TIMEOUT_S):
            while True:
                for ev in await read_after(self.client, self.calls.keys.events, since, block_ms=200):
                    since = ev.id
                    if ev.type in MACHINE_LOGGED:
                        apply_event(self.state.fleet, ev)
                        self._on_event(ev)
                        return

    def _on_event(self, ev: Event) -> None:
        """The box's lifecycle goes to stdout too with --smoke (the live screen shows the log)."""
        if self.smoke and ev.type in MACHINE_LOGGED:
            self._say(machine_line(ev))

    def _on_resnapshot(self) -> None:
        if self.smoke:
            self._say(GAP_NOTE)

    def _check_done(self) -> None:
        own = self.state.own_jobs()
        if self.state.all_reached() or all(j.status in END_STATES for j in own):
            self.done.set()

    # -- display ----------------------------------------------------------------------------------

    async def _live_until_done(self) -> None:
        """The watch screen (`emp watch`'s renderer, full screen) with the demo's expected-vs-actual
        panel under it, until every job reached its state; the summary follows on the normal screen."""
        watcher = Watcher(self.calls, namespace=self.namespace, redis_label=redacted_url(self.url), live=self.live)
        await watcher.poll()

        def frame() -> RenderableType:
            self.state.elapsed_s = time.monotonic() - self.t0
            extra = demo_panel(self.state)
            width, height = self.console.size
            return render_watch(
                watcher.data,
                width,
                height,
                DEMO_VIEW,
                now_ms=watcher.now_ms(),
                extra=extra,
                extra_height=DEMO_PANEL_LINES,
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.poll_forever)
            with Live(frame(), console=self.console, auto_refresh=False, screen=True) as live:
                while not self.done.is_set():
                    live.update(frame(), refresh=True)
                    with anyio.move_on_after(LIVE_REFRESH_S):
                        await self.done.wait()
                live.update(frame(), refresh=True)
            tg.cancel_scope.cancel()

    async def _print_progress(self) -> None:
        last = ""
        while True:
            self.state.elapsed_s = time.monotonic() - self.t0
            line = progress_line(self.state)
            if line.partition("] ")[2] != last:
                last = line.partition("] ")[2]
                self._say(line)
            await anyio.sleep(SMOKE_LINE_INTERVAL_S)

    # -- shutdown ---------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Cancel what the demo leaves unfinished, SIGTERM the workers (drain), wait, then SIGKILL."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_second_signal)
            try:
                await self._cancel_leftovers()
                await self._stop_workers()
            finally:
                tg.cancel_scope.cancel()
        for p in self.procs:
            if p.log_file is not None:
                p.log_file.close()
        with anyio.move_on_after(2):
            await self.client.aclose()

    async def _watch_second_signal(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                self._say("second signal: killing the workers now")
                self.force = True

    async def _cancel_leftovers(self) -> None:
        """Jobs left pending or unworkable would stay in Redis forever: cancel them (terminal jobs
        expire after the retention period)."""
        left = [j.id for j in self.state.own_jobs() if j.status not in ("completed", "failed", "cancelled")]
        if not left:
            return
        with anyio.move_on_after(5):
            for job_id in left:
                try:
                    await self.calls.cancel(job_id, "emp demo ended")
                except Exception as exc:  # Redis gone: nothing left to tidy
                    log.info("cancel %s: %s", job_id, exc)
                    return

    async def _stop_workers(self) -> None:
        running = [p for p in self.procs if p.proc.poll() is None]
        if not running:
            return
        workers = [p for p in running if not p.worker.on_machine]
        agent = " and the machine agent" if len(workers) < len(running) else ""
        self._say(f"stopping {_plural(len(workers), 'worker process', 'worker processes')}{agent}...")
        for p in running:
            _signal(p.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(p.proc.poll() is None for p in running):
            if self.force or time.monotonic() > deadline:
                for p in running:
                    if p.proc.poll() is None:
                        log.warning("worker %s did not stop: SIGKILL", p.worker.worker_id)
                        _signal(p.proc, signal.SIGKILL)
                for p in running:
                    await anyio.to_thread.run_sync(p.proc.wait)
                break
            await anyio.sleep(0.05)


def _sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside nested single-member groups; the group itself otherwise."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _redis_for(settings: Settings, out: TextIO) -> tuple[str, EmbeddedRedis | None]:
    """The Redis to use: EMP_REDIS_URL, else a live local server of an earlier `emp demo` (two
    servers must not share one data directory), else a new one whose data persists under
    ``<state_dir>/redis`` and whose URL other local commands find (`emp submit`, `emp watch`)."""
    if settings.redis_url:
        return settings.redis_url, None
    live = read_live_url(settings.state_dir)
    if live:
        print(f"using the local redis-server already running at {live}", file=out, flush=True)
        return live, None
    server = EmbeddedRedis(settings.state_dir / "redis", persist=True)
    server.start()
    server.write_url_file(settings.state_dir)
    return server.url, server


async def run_demo(
    settings: Settings,
    *,
    smoke: bool = False,
    workers: int = len(WORKER_KINDS),
    deadline_s: float | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo; returns the exit code (0: every job reached its expected state, 1: not,
    130: interrupted). Non-interactive (``smoke``) whenever stdin or the console is not a terminal."""
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    console = console or Console(highlight=False)
    # A live screen needs a terminal on both ends: piped output gets the plain progress lines.
    smoke = smoke or not sys.stdin.isatty() or not console.is_terminal
    out = sys.stdout
    deadline = deadline_s if deadline_s is not None else SMOKE_DEADLINE_S if smoke else INTERACTIVE_DEADLINE_S
    url, server = _redis_for(settings, out)
    try:
        demo = Demo(settings, url, smoke, workers, deadline, console, out)
        return await demo.run()
    finally:
        if server is not None:
            server.stop()
