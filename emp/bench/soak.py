"""`emp bench soak --minutes N`: mixed jobs under random faults, judged by the history checker.

One run (issue 13 part 5), on a private redis-server:

- ``--workers`` `emp worker` processes (``--concurrency`` slots each), each reaching Redis through a
  fault proxy of its own (:class:`emp.bench.fault_proxy.FaultProxy`), with the simulation service's
  execution log on (EMP_SIM_EXEC_LOG); a supervisor restarts every process that exits (under a new
  worker id, as a restarted machine would have);
- a submitter of mixed simulation jobs at ``--rate`` (:func:`emp.bench.soak_plan.job_payload`: no-op,
  short, long past the lease, transient failures that succeed on a later attempt, malformed ones,
  priorities 10/50/90) and, every ``--poison-every`` seconds, a crash job that kills every worker
  process that runs it; it holds back while the backlog is over ``max_backlog``;
- an :class:`emp.redis.history.EventRecorder` tailing the namespace's events from the first one;
- a fault injector (``random.Random(--seed)``): every ``--fault-every`` seconds on average one of
  :data:`emp.bench.soak_plan.FAULT_KINDS` (SIGKILL, SIGSTOP past the lease, SIGTERM drain, connection
  resets, dropped replies, a short black hole, added latency, a Redis SIGSTOP shorter than the lease).

After ``--minutes`` the faults stop and every fault is reverted; the run waits (up to
``settle_timeout_s``) until no job of the namespace is left unfinished, stops the workers, and runs the
checker (:func:`emp.model.history.check`) on the accepted ids, the recorded events, the final job
records and the execution log. The report: the verdict (lost, duplicated commits, ...), completions
per 10 s and per minute (from the job_completed events' server times), faults by kind, worker
processes started and crashed. ``ok`` only when the verdict is clean and the event record whole.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

import emp
from emp import defaults
from emp._process import die_with_parent
from emp.bench.fault_proxy import FaultProxy
from emp.bench.soak_plan import (
    POISON_PAYLOAD,
    WORKER_FAULTS,
    FaultLog,
    SoakPlan,
    completions_per_bucket,
    fault_duration_s,
    job_doc,
    job_payload,
    next_gap_s,
    per_minute,
    pick_fault,
    priority,
)
from emp.model.history import Limits, check, parse_executions
from emp.model.job import TERMINAL, parse_submission
from emp.redis import library
from emp.redis.calls import Calls
from emp.redis.client import TRANSIENT_ERRORS, RedisClient, connect
from emp.redis.embedded import EmbeddedRedis
from emp.redis.history import EventRecorder, final_records

Log = Callable[[str], None]

SERVICE = "simulation"
MAX_PAYLOAD = defaults.MAX_PAYLOAD_BYTES
SUBMIT_TICK_S = 0.2
RESTART_DELAY_S = 0.3
SUPERVISE_EVERY_S = 0.1
PROGRESS_EVERY_S = 30.0
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 5.0
"""The soak's own Redis calls (submits, counts, the recorder): longer than any Redis pause it makes."""
LATENCY_S = 0.05
RECORDS_IN_FLIGHT = 32


@dataclass(eq=False)
class _Worker:
    """One worker position: its fault proxy, its current process and what the soak is doing to it."""

    index: int
    proxy: FaultProxy
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    busy: bool = False
    """A fault is being applied, or the process is down: no other fault picks it."""
    expect_exit: bool = False
    """The soak itself killed or drained it (an exit then is not a crash)."""
    restart_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class _State:
    accepted: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    backlog: int = 0
    started: int = 0
    crashed: int = 0
    exits: Counter[str] = field(default_factory=Counter)


class Soak:
    """One soak run on the redis-server at ``url`` (``redis_pid``: the process a Redis pause stops)."""

    def __init__(self, plan: SoakPlan, url: str, redis_port: int, redis_pid: int, log: Log, work_dir: Path) -> None:
        self.plan = plan
        self.url = url
        self.redis_port = redis_port
        self.redis_pid = redis_pid
        self.log = log
        self.work_dir = work_dir
        self.exec_log = work_dir / "executions.jsonl"
        self.namespace = f"soak-{uuid.uuid4().hex[:6]}"
        self.rng = random.Random(plan.seed)
        self.jobs_rng = random.Random(plan.seed + 1)  # the mix does not shift when a fault is skipped
        self.state = _State()
        self.faults = FaultLog()
        self.workers: list[_Worker] = []
        self.stop_faults = anyio.Event()
        self.stop_submitting = anyio.Event()
        self.redis_paused = False
        self.t0 = time.monotonic()

    # -- worker processes ------------------------------------------------------------------------

    def _env(self, w: _Worker) -> dict[str, str]:
        root = str(Path(emp.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env.update(
            {
                "EMP_REDIS_URL": w.proxy.url(),
                "EMP_SIM_EXEC_LOG": str(self.exec_log),
                "EMP_REDIS_TIMEOUT_S": str(self.plan.reply_timeout_s),
                "EMP_IDLE_POLL_S": "0.5",
                "PYTHONPATH": root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
            }
        )
        return env

    def _start(self, w: _Worker) -> None:
        w.generation += 1
        wid = f"s{w.index}g{w.generation}"
        p = self.plan
        argv = [sys.executable, "-m", "emp", "--namespace", self.namespace, "worker", "--id", wid]
        argv += ["--services", SERVICE, "--concurrency", str(p.concurrency), "--lease-ttl", str(p.lease_s)]
        argv += ["--drain-timeout", str(p.drain_timeout_s)]
        with open(w.log_path, "ab") as out:
            out.write(f"--- {wid} started at {time.monotonic() - self.t0:.1f} s\n".encode())
            out.flush()
            w.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=self._env(w),
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        w.busy, w.expect_exit, w.restart_at = False, False, None
        self.state.started += 1

    def _signal(self, w: _Worker, sig: signal.Signals) -> None:
        if w.proc is not None and w.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(sig)

    async def _supervise(self, stop: anyio.Event) -> None:
        """Restart every worker process that exited; count the exits the soak did not cause."""
        while not stop.is_set():
            now = time.monotonic()
            for w in self.workers:
                if w.proc is None or w.alive:
                    continue
                if w.restart_at is None:
                    code = w.proc.returncode
                    self.state.exits[str(code)] += 1
                    if not w.expect_exit:
                        self.state.crashed += 1
                    w.busy, w.restart_at = True, now + RESTART_DELAY_S
                elif now >= w.restart_at:
                    self._start(w)
            with anyio.move_on_after(SUPERVISE_EVERY_S):
                await stop.wait()

    async def _wait_ready(self, calls: Calls) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        want = self.plan.workers * self.plan.concurrency
        while len(await calls.live_workers()) < want:
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    raise RuntimeError(f"worker {w.index} exited at start (code {w.proc.returncode}): see {w.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not register within {READY_TIMEOUT_S:g} s: see {self.work_dir}")
            await anyio.sleep(0.1)

    async def _stop_workers(self) -> None:
        for w in self.workers:
            self._signal(w, signal.SIGCONT)
            self._signal(w, signal.SIGTERM)
        deadline = time.monotonic() + self.plan.drain_timeout_s + STOP_TIMEOUT_S
        while any(w.alive for w in self.workers) and time.monotonic() < deadline:
            await anyio.sleep(0.1)
        for w in self.workers:
            if w.alive:
                self._signal(w, signal.SIGKILL)
            if w.proc is not None:
                w.proc.wait()

    # -- submitting ------------------------------------------------------------------------------

    async def _submit_loop(self, calls: Calls) -> None:
        p, st = self.plan, self.state
        credit, last, seq = 0.0, time.monotonic(), 0
        next_poison = p.poison_every_s / 4 if p.poison_every_s > 0 else float("inf")
        next_count = 0.0
        while not self.stop_submitting.is_set():
            with anyio.move_on_after(SUBMIT_TICK_S):
                await self.stop_submitting.wait()
            now = time.monotonic()
            credit += p.rate * (now - last)
            last = now
            if now >= next_count:
                st.backlog = await self._unfinished(calls)
                next_count = now + 1.0
            if st.backlog > p.max_backlog:
                credit = min(credit, p.rate)  # no burst when the backlog clears
                continue
            docs: list[dict[str, Any]] = []
            for _ in range(int(credit)):
                kind, payload = job_payload(self.jobs_rng)
                docs.append(job_doc(f"j{seq}", payload, priority(self.jobs_rng)))
                st.kinds[kind] += 1
                seq += 1
            credit -= int(credit)
            if now - self.t0 >= next_poison:
                docs.append(job_doc(f"poison{seq}", POISON_PAYLOAD, 50))
                st.kinds["poison"] += 1
                seq += 1
                next_poison += p.poison_every_s
            if docs:
                await self._submit(calls, docs)

    async def _submit(self, calls: Calls, docs: list[dict[str, Any]]) -> None:
        wires = [dict(parse_submission(d).to_wire(MAX_PAYLOAD)) for d in docs]
        ids = [str(w["id"]) for w in wires]
        try:
            await calls.submit(wires, MAX_PAYLOAD)
        except TRANSIENT_ERRORS:
            self.state.in_doubt += ids  # the call may have gone through: the checker looks
            return
        self.state.accepted += ids
        self.state.backlog += len(ids)

    @staticmethod
    async def _unfinished(calls: Calls) -> int:
        counts = await calls.count_jobs()
        return sum(n for status, n in counts.items() if status not in {str(s) for s in TERMINAL})

    # -- faults ----------------------------------------------------------------------------------

    async def _fault_loop(self) -> None:
        kinds = self.plan.faults
        if not kinds:
            return
        async with anyio.create_task_group() as tg:
            while True:
                with anyio.move_on_after(next_gap_s(self.rng, self.plan)):
                    await self.stop_faults.wait()
                if self.stop_faults.is_set():
                    break
                kind = pick_fault(self.rng, kinds)
                length = fault_duration_s(self.rng, kind, self.plan)
                if kind == "redis_pause":
                    if self.redis_paused:
                        self.faults.skipped += 1
                        continue
                    self.redis_paused = True
                    self.faults.add(time.monotonic() - self.t0, kind, "redis", length)
                    tg.start_soon(self._pause_redis, length)
                    continue
                ready = [w for w in self.workers if not w.busy and w.alive]
                if not ready:
                    self.faults.skipped += 1
                    continue
                w = self.rng.choice(ready)
                w.busy = True
                self.faults.add(
                    time.monotonic() - self.t0, kind, f"worker {w.index} (s{w.index}g{w.generation})", length
                )
                tg.start_soon(self._worker_fault, w, kind, length)

    async def _pause_redis(self, length: float) -> None:
        os.kill(self.redis_pid, signal.SIGSTOP)
        try:
            await anyio.sleep(length)
        finally:
            os.kill(self.redis_pid, signal.SIGCONT)
            self.redis_paused = False

    async def _worker_fault(self, w: _Worker, kind: str, length: float) -> None:
        assert kind in WORKER_FAULTS
        if kind in ("kill", "drain"):
            w.expect_exit = True  # stays busy: the supervisor restarts it
            self._signal(w, signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            return
        try:
            if kind == "pause":
                self._signal(w, signal.SIGSTOP)
                await anyio.sleep(length)
            elif kind == "reset":
                w.proxy.reset_all()
            elif kind in ("drop", "blackhole"):
                w.proxy.set_mode("drop_replies" if kind == "drop" else "blackhole")
                await anyio.sleep(length)
            elif kind == "latency":
                w.proxy.latency_s = LATENCY_S
                await anyio.sleep(length)
        finally:
            with anyio.CancelScope(shield=True):
                self._signal(w, signal.SIGCONT)
                w.proxy.set_mode("pass")
                w.proxy.latency_s = 0.0
                if w.alive:
                    w.busy = False

    # -- the run ---------------------------------------------------------------------------------

    async def _progress(self, calls: Calls, recorder: EventRecorder, stop: anyio.Event) -> None:
        while True:
            with anyio.move_on_after(PROGRESS_EVERY_S):
                await stop.wait()
            if stop.is_set():
                return
            done = sum(1 for e in recorder.events if e.type == "job_completed")
            self.log(
                f"soak: {time.monotonic() - self.t0:.0f} s, {len(self.state.accepted)} accepted, {done} completed, "
                f"backlog {self.state.backlog}, faults {dict(self.faults.counts)}, "
                f"{self.state.started} worker processes started"
            )

    async def _settle(self, calls: Calls) -> bool:
        """Wait until nothing in the namespace is unfinished (with the settle deadline)."""
        deadline = time.monotonic() + self.plan.settle_timeout_s
        while time.monotonic() < deadline:
            try:
                if await self._unfinished(calls) == 0:
                    return True
            except TRANSIENT_ERRORS:
                pass
            await anyio.sleep(0.2)
        return False

    async def run(self) -> dict[str, Any]:
        p = self.plan
        client: RedisClient = connect(self.url, timeout_s=CLIENT_TIMEOUT_S, max_connections=RECORDS_IN_FLIGHT + 8)
        rec_client: RedisClient = connect(self.url, timeout_s=CLIENT_TIMEOUT_S)
        try:
            await library.ensure_loaded(client)
            calls = Calls(client, self.namespace)
            recorder = EventRecorder(Calls(rec_client, self.namespace))
            for i in range(p.workers):
                proxy = FaultProxy(self.redis_port).start()
                self.workers.append(_Worker(i, proxy, self.work_dir / f"worker-{i}.log"))
            async with anyio.create_task_group() as outer:
                outer.start_soon(recorder.run)
                supervisor_stop = anyio.Event()
                for w in self.workers:
                    self._start(w)
                await self._wait_ready(calls)
                self.log(f"soak: {p.workers} x {p.concurrency} workers ready; {p.minutes:g} min of faults begin")
                start_ms = await calls.server_time_ms()
                self.t0 = time.monotonic()
                outer.start_soon(self._supervise, supervisor_stop)
                progress_stop = anyio.Event()
                outer.start_soon(self._progress, calls, recorder, progress_stop)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._submit_loop, calls)
                    tg.start_soon(self._fault_loop)
                    await anyio.sleep(p.duration_s)
                    self.stop_submitting.set()
                    self.stop_faults.set()
                soak_s = time.monotonic() - self.t0
                self.log(f"soak: faults stopped after {soak_s:.0f} s; waiting for every job to finish")
                settled = await self._settle(calls)
                settle_s = time.monotonic() - self.t0 - soak_s
                end_ms = await calls.server_time_ms()
                progress_stop.set()
                supervisor_stop.set()
                await self._stop_workers()
                await recorder.drain()
                outer.cancel_scope.cancel()
            return await self._report(calls, recorder, start_ms, end_ms, soak_s, settle_s, settled)
        finally:
            for w in self.workers:
                self._signal(w, signal.SIGCONT)
                self._signal(w, signal.SIGKILL)
                w.proxy.close()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.redis_pid, signal.SIGCONT)
            await client.aclose()
            await rec_client.aclose()

    async def _final_records(self, calls: Calls, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        limiter = anyio.CapacityLimiter(RECORDS_IN_FLIGHT)

        async def one(chunk: list[str]) -> None:
            async with limiter:
                out.update(await final_records(calls, chunk))

        async with anyio.create_task_group() as tg:
            for i in range(0, len(ids), 100):
                tg.start_soon(one, ids[i : i + 100])
        return out

    async def _report(
        self,
        calls: Calls,
        recorder: EventRecorder,
        start_ms: int,
        end_ms: int,
        soak_s: float,
        settle_s: float,
        settled: bool,
    ) -> dict[str, Any]:
        st = self.state
        records = await self._final_records(calls, [*st.accepted, *st.in_doubt])
        lines = self.exec_log.read_text().splitlines() if self.exec_log.exists() else []
        verdict = check(
            st.accepted,
            recorder.events,
            records,
            in_doubt=st.in_doubt,
            executions=parse_executions(lines),
            lease_ms=self.plan.lease_s * 1000,
            limits=Limits(max_lost_leases=defaults.MAX_LOST_LEASES),
        )
        buckets = completions_per_bucket(recorder.events, start_ms, end_ms)
        failed = Counter(str(j.failure_class) for j in records.values() if j is not None and j.status == "failed")
        completed = verdict.outcomes.get("completed", 0)
        return {
            "ok": verdict.ok and not recorder.gaps and settled,
            "params": self.plan.params(),
            "namespace": self.namespace,
            "soak_s": round(soak_s, 1),
            "settle_s": round(settle_s, 1),
            "settled": settled,
            "verdict": verdict.as_dict(),
            "recorder_gaps": list(recorder.gaps),
            "events": len(recorder.events),
            "jobs_submitted": dict(sorted(st.kinds.items())),
            "failed_by_class": dict(sorted(failed.items())),
            "faults": dict(sorted(self.faults.counts.items())),
            "faults_skipped": self.faults.skipped,
            "fault_log": self.faults.entries,
            "workers": {
                "started": st.started,
                "crashed": st.crashed,
                "exit_codes": dict(sorted(st.exits.items())),
            },
            "throughput": {
                "bucket_s": 10,
                "completed": buckets,
                "per_minute": per_minute(buckets),
                "jobs_per_s": round(completed / max(0.001, (end_ms - start_ms) / 1000), 2),
            },
        }


def run_soak(plan: SoakPlan, log: Log | None = None) -> dict[str, Any]:
    """The whole run on a private redis-server; the report dict (``ok``: the verdict is clean)."""
    say: Log = log or (lambda _msg: None)
    work_dir = Path(tempfile.mkdtemp(prefix="emp-soak-"))
    keep = True
    try:
        with EmbeddedRedis(None, persist=False) as server:
            say(f"soak: private redis-server at {server.url}, worker logs in {work_dir}")
            soak = Soak(plan, server.url, server.port, server.pid, say, work_dir)
            report = anyio.run(soak.run)
        keep = not report["ok"]
        if keep:
            report["logs_kept"] = str(work_dir)
        return report
    finally:
        if not keep:
            shutil.rmtree(work_dir, ignore_errors=True)
