"""`emp bench`'s ``api`` scenario: the coordinator's figures for the closing note (issue 10).

A coordinator app (:func:`emp.coordinator.api.create_app`, auth on with a token of the run's own)
is served in THIS process on a free loopback port, over the bench's Redis and a namespace of its
own. Then:

1. ``POST /api/jobs`` with one job a request, ``clients`` concurrent keep-alive clients
   (``httpx.AsyncClient``), and with batches (``batch`` jobs a request): jobs/s and the request
   latency p50/p99. The clients run in this process too: the figures include their cost.
2. ``sockets`` monitor sockets (``/ws/monitor``, every topic, no filter: a dashboard's view, so every
   event goes to every socket) are opened by a CHILD process (:mod:`emp.bench.ws_clients`) and held
   while a busy fleet writes events at ``rate`` a second (progress writes of running jobs, and now
   and then a job completed and the next one submitted and claimed: the worker's own calls).
   The fleet's process also makes timed progress writes of one more job on a fixed schedule, and
   ONE more socket, in this process, notes when each arrives (``time.monotonic()``: one clock for
   every process of the machine). Reported: sockets still connected at the end, the
   events every socket got per second, the write → receive p50/p99 (goal p99 ≤ 50 ms; the original
   system aimed at < 100 ms) and the growth of this process's RSS (the coordinator's) for the sockets.

The arithmetic (percentiles, rates, growth) is in the pure functions at the top.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pydantic import SecretStr

import emp
from emp import defaults
from emp._process import die_with_parent
from emp.bench import ws_clients
from emp.bench.report import Metric, percentile
from emp.client import Client
from emp.coordinator.api import create_app
from emp.coordinator.api.server import runner_for
from emp.coordinator.settings import CoordinatorSettings
from emp.coordinator.ws.protocol import events_in
from emp.model.job import parse_submission
from emp.redis.calls import Calls, ClaimedJob

TARGET_PROGRESS_TO_MONITOR_P99_MS = 50.0
"""Issue 10's goal for a progress write reaching a monitor socket (the original system aimed at < 100 ms)."""

FLEET_SERVICE = "bench-api"
FLEET_LEASE_MS = 3_600_000
"""Leases of the busy fleet's jobs: longer than any run, so nothing expires while it is measured."""
REPLACE_EVERY = 10
"""One write in this many completes a job and submits and claims the next (the rest are progress)."""
RECOUNT_EVERY = 10
"""Writes between two reads of the stream's entries-added counter (the exact count of events)."""

Log = Callable[[str], None]


class BenchError(Exception):
    """The scenario could not be measured (the message says why)."""


# -- pure arithmetic ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def latency_summary(samples_ms: Sequence[float]) -> LatencySummary:
    """p50, p99 (nearest rank: values that were observed) and max of latency samples in ms."""
    if not samples_ms:
        raise ValueError("no latency samples")
    return LatencySummary(len(samples_ms), percentile(samples_ms, 50), percentile(samples_ms, 99), max(samples_ms))


def rate(count: float, seconds: float) -> float:
    """``count`` per second over ``seconds`` (> 0)."""
    if seconds <= 0:
        raise ValueError("a rate needs a positive duration")
    return count / seconds


def delivered_to_all(received: Sequence[int], seconds: float) -> float:
    """Events per second that EVERY socket got: the fewest received by one socket over ``seconds``.
    No socket at all delivers nothing (0)."""
    return rate(min(received), seconds) if received else 0.0


def fanout_rate(received: Sequence[int], seconds: float) -> float:
    """Messages per second the server sent over all the sockets."""
    return rate(sum(received), seconds)


def growth_mb(before_bytes: int, after_bytes: int) -> float:
    """Memory growth in MB (10^6 bytes); negative when the process gave memory back."""
    return (after_bytes - before_bytes) / 1e6


def per_socket_kb(before_bytes: int, after_bytes: int, sockets: int) -> float:
    """Memory growth per socket in KB (10^3 bytes)."""
    if sockets <= 0:
        raise ValueError("no sockets")
    return (after_bytes - before_bytes) / 1e3 / sockets


def delivery_window(start: float, mark_times: Sequence[float | None], fallback_end: float) -> float:
    """Seconds from the first write (``start``) until the last socket got the last event; a socket
    that never got it counts until ``fallback_end`` (when the bench stopped waiting)."""
    ends = [fallback_end if t is None else t for t in mark_times]
    return max(ends, default=fallback_end) - start


def match_latencies(sent: Mapping[str, float], arrived: Mapping[str, float]) -> tuple[list[float], int]:
    """Write → receive times in ms of the marks both sides saw (``sent`` and ``arrived`` map a mark to
    a ``time.monotonic()`` reading, a clock every process of the machine shares), in the order sent;
    and how many sent marks never arrived."""
    samples = [(arrived[mark] - t) * 1000 for mark, t in sorted(sent.items(), key=lambda kv: kv[1]) if mark in arrived]
    return samples, len(sent) - len(samples)


# -- sizes ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiSizes:
    single_posts: int = 5_000
    batch_posts: int = 300
    batch: int = 100
    clients: int = 16
    batch_clients: int = 4
    sockets: int = 1_000
    rate: float = 200.0
    """Events a second the busy fleet writes, the latency probe's own writes included."""
    latency_writes: int = 1_000
    latency_interval_s: float = 0.02
    """One timed write every 20 ms: the hold lasts latency_writes × this (20 s)."""
    fleet_jobs: int = 20
    connect_timeout_s: float = 180.0


QUICK_SIZES = ApiSizes(
    single_posts=200,
    batch_posts=20,
    sockets=50,
    latency_writes=100,
    latency_interval_s=0.01,
    connect_timeout_s=60.0,
)


# -- the app --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served_app(client: Client, token: str) -> AsyncIterator[str]:
    """The coordinator's app (auth on: ``token``), no upkeep, on a free loopback port; yields its URL."""
    from aiohttp import web

    settings = CoordinatorSettings(host="127.0.0.1", port=0, api_tokens=[SecretStr(token)])
    await client.calls()  # connect and load the library before the first request
    runner = runner_for(create_app(client, settings), shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = next(int(a[1]) for a in runner.addresses if isinstance(a, tuple))
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# -- POST /api/jobs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostFigure:
    requests: int
    jobs: int
    seconds: float
    latency: LatencySummary

    @property
    def jobs_per_s(self) -> float:
        return rate(self.jobs, self.seconds)


async def post_load(
    http: aiohttp.ClientSession, url: str, body: bytes, requests: int, clients: int, jobs_per_request: int
) -> PostFigure:
    """``requests`` POST /api/jobs of ``body`` from ``clients`` concurrent clients (the session's
    keep-alive connections); each answer must be 201."""
    samples: list[float] = []
    sent = 0
    headers = {"Content-Type": "application/json"}

    async def one_client() -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            t = time.perf_counter()
            async with http.post(f"{url}/api/jobs", data=body, headers=headers) as answer:
                text = await answer.text()
            samples.append((time.perf_counter() - t) * 1000)
            if answer.status != 201:
                raise BenchError(f"POST /api/jobs answered {answer.status}: {text[:200]}")

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    took = time.perf_counter() - t0
    return PostFigure(requests, requests * jobs_per_request, took, latency_summary(samples))


# -- the busy fleet -------------------------------------------------------------------------------


class BusyFleet:
    """``jobs`` running jobs, one bench worker each, whose progress (and now and then completion and
    replacement) is written through the worker's own calls at a steady rate."""

    def __init__(self, calls: Calls, jobs: int) -> None:
        self.calls = calls
        self.slots: list[tuple[str, str, int]] = []  # (worker id, job id, attempt)
        self.size = jobs
        self.run_id = uuid.uuid4().hex[:6]
        self.submitted = 0
        self.probe: tuple[str, str, int] = ("", "", 0)
        """The job whose progress is timed (worker id, job id, attempt): not one of the ``slots``."""

    async def _next_job(self, wid: str) -> tuple[str, str, int]:
        job_id = f"bench-api-{self.run_id}-{self.submitted}"
        self.submitted += 1
        wire = parse_submission({"id": job_id, "service": FLEET_SERVICE, "payload": {"steps": 0}}).to_wire()
        await self.calls.submit([wire], defaults.MAX_PAYLOAD_BYTES)
        claimed = await self.calls.claim(wid, uuid.uuid4().hex, FLEET_LEASE_MS, start=True)
        if not isinstance(claimed, ClaimedJob) or claimed.id != job_id:
            raise BenchError(f"the busy fleet's worker {wid} could not claim its job (got {claimed!r})")
        return wid, job_id, claimed.attempt

    async def setup(self) -> None:
        for i in range(self.size + 1):
            wid = f"bench-api-{self.run_id}-w{i}"
            await self.calls.register_worker(wid, "bench", [FLEET_SERVICE], {}, "", FLEET_LEASE_MS)
            self.slots.append(await self._next_job(wid))
        self.probe = self.slots.pop()

    async def timed_writes(self, writes: int, interval_s: float) -> dict[str, float]:
        """Progress writes of the probe job on a fixed schedule (one every ``interval_s``, whether or
        not the server keeps up); returns each write's mark (its message) → ``time.monotonic()`` just
        before the write."""
        wid, job_id, attempt = self.probe
        sent: dict[str, float] = {}
        began = time.monotonic()
        for i in range(writes):
            await asyncio.sleep(max(0.0, began + i * interval_s - time.monotonic()))
            mark = f"t{i}"
            sent[mark] = time.monotonic()
            await self.calls.progress(job_id, attempt, wid, 100 * i / max(1, writes), mark)
        return sent

    async def events_added(self) -> int:
        return await _events_added(self.calls)

    async def write(self, tick: int) -> None:
        i = tick % len(self.slots)
        wid, job_id, attempt = self.slots[i]
        if tick % REPLACE_EVERY == REPLACE_EVERY - 1:
            await self.calls.complete(job_id, attempt, wid, '{"ok":true}')
            self.slots[i] = await self._next_job(wid)
        else:
            await self.calls.progress(job_id, attempt, wid, float(tick % 100), f"e{tick}")

    async def run(self, events_per_s: float, stop: asyncio.Event) -> tuple[int, float]:
        """Write until ``stop`` is set, paced so that ``events_per_s`` events (every writer's) reach the
        stream; returns (events written meanwhile, seconds)."""
        base = await self.events_added()
        start = time.monotonic()
        written = tick = 0
        while not stop.is_set():
            await self.write(tick)
            tick += 1
            written = await self.events_added() - base if tick % RECOUNT_EVERY == 0 else written + 1
            delay = start + written / events_per_s - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        return await self.events_added() - base, time.monotonic() - start

    async def mark(self, text: str) -> None:
        """One last progress write whose message is ``text`` (every socket waits for it)."""
        wid, job_id, attempt = self.slots[0]
        await self.calls.progress(job_id, attempt, wid, 100.0, text)


# -- the child processes --------------------------------------------------------------------------


class Child:
    """A child process of the scenario that speaks JSON lines on its stdout and takes commands on its
    stdin (:mod:`emp.bench.ws_clients`, or this module's fleet writer); started and reaped here.
    Its stderr goes to ``log``; secrets travel in ``env``, never in argv."""

    def __init__(self, module: str, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        root = str(Path(emp.__file__).resolve().parent.parent)
        full = dict(os.environ) | env
        full["PYTHONPATH"] = root + (os.pathsep + full["PYTHONPATH"] if full.get("PYTHONPATH") else "")
        self.log = log
        self.module = module
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=full,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def line(self, key: str, timeout_s: float) -> dict[str, Any]:
        """The next line, which must be ``{key: {...}}``; BenchError when it is not, or never comes."""
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            raw = await asyncio.wait_for(asyncio.to_thread(stdout.readline), timeout_s)
        except TimeoutError:
            raise BenchError(f"{self._name()} said nothing for {timeout_s:g} s (waiting for {key!r})") from None
        if not raw:
            code = await asyncio.to_thread(self.proc.wait)
            raise BenchError(f"{self._name()} exited with code {code}: {self._tail()}")
        doc = json.loads(raw)
        if not isinstance(doc, dict) or key not in doc:
            raise BenchError(f"{self._name()} said {raw[:200]!r}, expected {key!r}")
        result: dict[str, Any] = doc[key]
        return result

    def send(self, command: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(command.encode() + b"\n")
        stdin.flush()

    def _name(self) -> str:
        return f"the bench child {self.module}"

    def _tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-lines:]) or "(empty log)"

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Close its stdin (it exits), then SIGKILL whatever is still running after ``timeout_s``."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.kill()
        await asyncio.to_thread(self.proc.wait)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def socket_child(ws_url: str, sockets: int, mark: str, token: str, log_dir: Path) -> Child:
    """The monitors' child: ``sockets`` /ws/monitor sockets (every topic) on ``ws_url``."""
    args = ["--url", f"{ws_url}/ws/monitor", "--sockets", str(sockets), "--mark", mark]
    return Child("emp.bench.ws_clients", args, {ws_clients.TOKEN_ENV: token}, log_dir / "api-ws-clients.log")


def fleet_child(redis_url: str, namespace: str, sizes: ApiSizes, mark: str, log_dir: Path) -> Child:
    """The busy fleet's child: :func:`fleet_main` in a process of its own, as workers are."""
    args = ["--namespace", namespace, "--jobs", str(sizes.fleet_jobs), "--rate", str(sizes.rate), "--mark", mark]
    args += ["--timed-writes", str(sizes.latency_writes), "--interval", str(sizes.latency_interval_s)]
    return Child("emp.bench.api_bench", args, {"EMP_REDIS_URL": redis_url}, log_dir / "api-fleet.log")


async def _fleet(redis_url: str, namespace: str, args: Any) -> int:
    async with Client(redis_url, namespace, max_payload_bytes=defaults.MAX_PAYLOAD_BYTES) as client:
        fleet = BusyFleet(await client.calls(), args.jobs)
        await fleet.setup()
        commands = await ws_clients.stdin_lines()
        ws_clients.say({"ready": {"probe_job": fleet.probe[1]}})
        if (await commands.readline()).strip() != b"go":
            return 1  # stdin closed: the bench is gone
        stop = asyncio.Event()
        producer = asyncio.create_task(fleet.run(args.rate, stop))
        try:
            sent = await fleet.timed_writes(args.timed_writes, args.interval)
        finally:
            stop.set()
            events, seconds = await producer
        await fleet.mark(args.mark)
        ws_clients.say({"result": {"events": events, "seconds": round(seconds, 3), "sent": sent}})
    return 0


def fleet_main(argv: list[str] | None = None) -> int:
    """``python -m emp.bench.api_bench``: the busy fleet (Redis URL in EMP_REDIS_URL). Prints
    ``{"ready": {"probe_job"}}`` once its jobs run; on ``go`` writes at ``--rate`` events a second
    while it makes ``--timed-writes`` progress writes of the probe job, one every ``--interval`` s;
    then writes the event carrying ``--mark`` and prints ``{"result": {"events", "seconds", "sent"}}``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m emp.bench.api_bench", description="the busy fleet's writer")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--mark", required=True)
    parser.add_argument("--timed-writes", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    args = parser.parse_args(argv)
    redis_url = os.environ.get("EMP_REDIS_URL", "")
    if not redis_url or args.jobs < 1 or args.rate <= 0 or args.timed_writes < 1 or args.interval <= 0:
        parser.error("needs EMP_REDIS_URL, --jobs >= 1, --timed-writes >= 1, --rate > 0 and --interval > 0")
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_fleet(redis_url, args.namespace, args))


class ProbeSocket:
    """The one extra monitor socket, in the coordinator's process: subscribed to the probe job's
    progress, it notes when each timed write's mark arrives (``time.monotonic()``)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def open(self, ws_url: str, job_id: str, token: str) -> AsyncIterator[ProbeSocket]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{ws_url}/ws/monitor?topics=progress&job_id={job_id}&batch=1", headers=headers) as ws,
        ):
            first = await ws.receive(timeout=60)
            if first.type != aiohttp.WSMsgType.TEXT or json.loads(first.data).get("type") != "snapshot":
                raise BenchError(f"the probe socket expected a snapshot first, got {str(first.data)[:80]!r}")
            self._task = asyncio.create_task(self._read(ws))
            try:
                yield self
            finally:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _read(self, ws: Any) -> None:
        async for msg in ws:
            now = time.monotonic()
            doc = json.loads(msg.data) if isinstance(msg.data, str) else {}
            for ev in events_in(doc):
                self.arrived.setdefault(str(ev.get("data", {}).get("message")), now)

    async def wait_for(self, marks: Sequence[str], timeout_s: float) -> None:
        """Until every mark arrived, or ``timeout_s`` passed (polled: the marks are few)."""
        deadline = time.monotonic() + timeout_s
        while any(m not in self.arrived for m in marks) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


# -- the scenario ---------------------------------------------------------------------------------


def _job_body(batch: int) -> bytes:
    job = {"service": "simulation", "payload": {"steps": 0}}
    return json.dumps(job if batch == 1 else {"jobs": [job] * batch}).encode()


async def _posts(url: str, token: str, sizes: ApiSizes, log: Log) -> list[Metric]:
    auth = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=sizes.clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, headers=auth, timeout=timeout) as http:
        await post_load(http, url, _job_body(1), 2 * sizes.clients, sizes.clients, 1)  # warm: connections, caches
        log(f"  api: {sizes.single_posts:,} POST /api/jobs, one job each, {sizes.clients} clients")
        single = await post_load(http, url, _job_body(1), sizes.single_posts, sizes.clients, 1)
        log(f"  api: {sizes.batch_posts:,} POST /api/jobs of {sizes.batch} jobs, {sizes.batch_clients} clients")
        body = _job_body(sizes.batch)
        batched = await post_load(http, url, body, sizes.batch_posts, sizes.batch_clients, sizes.batch)
    one = f"{single.requests:,} requests, {sizes.clients} keep-alive clients (aiohttp, in the coordinator's process)"
    many = f"{batched.requests:,} requests of {sizes.batch} jobs, {sizes.batch_clients} clients"
    return [
        Metric("api_post_single", "POST /api/jobs, one job a request", single.jobs_per_s, "jobs/s", note=one),
        Metric("api_post_single_p50_ms", "POST /api/jobs, one job: p50", single.latency.p50_ms, "ms", better="lower"),
        Metric(
            "api_post_single_p99_ms",
            "POST /api/jobs, one job: p99",
            single.latency.p99_ms,
            "ms",
            better="lower",
            note=f"max {single.latency.max_ms:.1f} ms",
        ),
        Metric(
            "api_post_batch",
            f"POST /api/jobs, {sizes.batch} jobs a request",
            batched.jobs_per_s,
            "jobs/s",
            note=f"{many}; {rate(batched.requests, batched.seconds):,.0f} requests/s",
        ),
        Metric(
            "api_post_batch_p99_ms",
            f"POST /api/jobs, {sizes.batch} jobs: p99",
            batched.latency.p99_ms,
            "ms",
            better="lower",
            note=f"p50 {batched.latency.p50_ms:.1f} ms, max {batched.latency.max_ms:.1f} ms",
        ),
    ]


async def _events_added(calls: Calls) -> int:
    """The events stream's entries-added counter (every event ever written to it, trims or not)."""
    info: Any = await calls.client.xinfo_stream(calls.keys.events)
    return int(info["entries-added"])


async def _sockets(
    client: Client, redis_url: str, url: str, token: str, sizes: ApiSizes, log_dir: Path, log: Log
) -> list[Metric]:
    calls = await client.calls()
    me = psutil.Process()
    mark = f"bench-last-{uuid.uuid4().hex}"
    ws_url = url.replace("http://", "ws://", 1)
    fleet = fleet_child(redis_url, calls.keys.namespace, sizes, mark, log_dir)
    sockets: Child | None = None
    hold_s = sizes.latency_writes * sizes.latency_interval_s
    try:
        probe_job = (await fleet.line("ready", 60.0))["probe_job"]
        gc.collect()
        rss_before = me.memory_info().rss
        log(f"  api: a child process opens {sizes.sockets:,} monitor sockets")
        sockets = socket_child(ws_url, sizes.sockets, mark, token, log_dir)
        ready = await sockets.line("ready", sizes.connect_timeout_s)
        rss_connected = me.memory_info().rss
        if ready["connected"] == 0:
            raise BenchError(f"no monitor socket could connect: {ready.get('errors')}")
        log(
            f"  api: {ready['connected']:,}/{sizes.sockets:,} connected in {ready['seconds']:.1f} s; another child "
            f"writes {sizes.rate:g} events/s for {hold_s:.0f} s"
        )
        async with ProbeSocket().open(ws_url, probe_job, token) as probe:
            cpu_child = psutil.Process(sockets.pid)
            cpu_before = sum(me.cpu_times()[:2]), sum(cpu_child.cpu_times()[:2])
            base = await _events_added(calls)
            start = time.monotonic()
            fleet.send("go")
            written = await fleet.line("result", hold_s + 120.0)  # the marked event is written
            written_at = time.monotonic()
            events = await _events_added(calls) - base
            sockets.send("report")
            result = await sockets.line("result", 120.0)
            await probe.wait_for(list(written["sent"]), 10.0)
            stopped_waiting = time.monotonic()
            rss_after = me.memory_info().rss
            cpu = sum(me.cpu_times()[:2]) - cpu_before[0], sum(cpu_child.cpu_times()[:2]) - cpu_before[1]
            samples, lost = match_latencies(written["sent"], probe.arrived)
    finally:
        if sockets is not None:
            await sockets.stop()
        await fleet.stop()
    if not samples:
        raise BenchError(f"none of the {sizes.latency_writes:,} timed progress writes reached the probe socket")
    tallies = result["sockets"]
    received = [int(t["events"]) for t in tallies]
    got_mark = sum(1 for t in tallies if t["mark_at"] is not None)
    slow = sum(int(t["resyncs"].get("slow", 0)) for t in tallies)
    closes = Counter(str(t["close_code"]) for t in tallies if t["closed"])
    window = delivery_window(start, [t["mark_at"] for t in tallies], stopped_waiting)
    held = stopped_waiting - start
    latency = latency_summary(samples)
    connected = int(result["connected"])
    opened = int(ready["connected"])
    closed = ", ".join(f"{n:,} closed with code {code}" for code, n in closes.most_common()) or "none closed"
    return [
        Metric(
            "api_ws_connected",
            f"monitor sockets connected at the end, of {sizes.sockets:,} opened",
            connected,
            "sockets",
            target=float(sizes.sockets),
            note=f"opened by a child process in {ready['seconds']:.1f} s; {got_mark:,} got the last event; {closed}",
        ),
        Metric(
            "api_ws_events_written",
            "busy fleet: events written",
            rate(events, written_at - start),
            "events/s",
            note=f"{events:,} events in {written_at - start:.1f} s (the stream's entries-added) by a child "
            "process: progress, complete, submit, claim",
        ),
        Metric(
            "api_ws_delivered_to_all",
            "events delivered to every socket",
            delivered_to_all(received, window),
            "events/s",
            note=f"fewest events one socket got / {window:.1f} s; fan-out {fanout_rate(received, window):,.0f} "
            f"messages/s; {slow:,} slow-socket resyncs",
        ),
        Metric(
            "api_progress_to_monitor_p50_ms",
            f"progress write → monitor socket, p50 ({opened:,} sockets held)",
            latency.p50_ms,
            "ms",
            better="lower",
            note=f"{sizes.latency_writes:,} writes by the fleet's process, one every "
            f"{sizes.latency_interval_s * 1000:.0f} ms; one more socket, here; {lost:,} never arrived",
        ),
        Metric(
            "api_progress_to_monitor_p99_ms",
            f"progress write → monitor socket, p99 ({opened:,} sockets held)",
            latency.p99_ms,
            "ms",
            target=TARGET_PROGRESS_TO_MONITOR_P99_MS,
            better="lower",
            note=f"max {latency.max_ms:.1f} ms; the original system aimed at < 100 ms",
        ),
        Metric(
            "api_ws_rss_growth_mb",
            f"coordinator RSS growth for {opened:,} sockets",
            growth_mb(rss_before, rss_after),
            "MB",
            better="lower",
            note=f"{per_socket_kb(rss_before, rss_after, opened):.0f} KB/socket at the end "
            f"({growth_mb(rss_before, rss_connected):.1f} MB once connected); CPU {100 * cpu[0] / held:.0f}% "
            f"of a core here, {100 * cpu[1] / held:.0f}% in the socket child",
        ),
    ]


async def measure(redis_url: str, namespace: str, sizes: ApiSizes, log_dir: Path, log: Log) -> list[Metric]:
    """The whole scenario against ``redis_url``; writes only to ``namespace`` (the caller drops it)."""
    token = secrets.token_urlsafe(24)
    async with (
        Client(redis_url, namespace, max_payload_bytes=defaults.MAX_PAYLOAD_BYTES) as client,
        served_app(client, token) as url,
    ):
        out = await _posts(url, token, sizes, log)
        out += await _sockets(client, redis_url, url, token, sizes, log_dir, log)
    return out


if __name__ == "__main__":
    raise SystemExit(fleet_main())
