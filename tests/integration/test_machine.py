"""`emp machine up --gpus 2` end to end: fake ComfyUI per GPU, real workers, a real Redis.

One agent per test module (it takes ~3 s to come up); the tests run in order against it: ports
and capabilities, a job, a ComfyUI crash while a job runs on it, then SIGTERM mid-job. The tests
after them start boxes of their own: a SIGKILL of the whole box, and what a new user meets first
(built-in simulated services with no config, a box without ComfyUI).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis

from emp._ports import free_port_pair
from emp.redis.keys import Keys
from emp.stand_ins.comfyui import workflow_slow
from tests.polling import poll

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0

pytestmark = pytest.mark.timeout(120)


class Agent:
    """`emp machine up` as a process. Without ``args``: two fake GPUs, each with the stand-in ComfyUI
    (the config written here); with ``args``: those flags alone, as a new user would type them."""

    def __init__(
        self,
        tmp: Path,
        redis_url: str,
        namespace: str,
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.tmp = tmp
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.r = redis.Redis.from_url(redis_url, decode_responses=True)
        self.base = free_port_pair()
        self.state_dir = tmp / "state"
        self.machine_id = f"box-{namespace}"
        config = tmp / "machine.toml"
        config.write_text(
            f"""
[machine]
id = "box-{namespace}"
health_port = 0
report_interval_s = 1
drain_timeout_s = 20

[services.comfyui]
# --startup-delay-s: a ComfyUI that takes a moment to come back, so its outage is longer than
# the workers' health-check interval and the pause is observable.
command = ["{{python}}", "-m", "emp.stand_ins.comfyui", "--port", "{{port}}", "--step-ms", "20",
           "--output-dir", "{tmp}/comfy-out-{{gpu}}", "--startup-delay-s", "2"]
cwd = "{ROOT}"
base_port = {self.base}
""",
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMP_", "HUB_REDIS", "REDIS_URL"))}
        env |= {"EMP_REDIS_URL": redis_url, "EMP_NAMESPACE": namespace, "EMP_STATE_DIR": str(self.state_dir)}
        env |= {"EMP_OUTPUT_URL": str(tmp / "outputs"), "PYTHONPATH": str(ROOT), "EMP_MACHINE_ID": self.machine_id}
        self.env = env | (extra_env or {})
        self.log = open(tmp / "agent.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emp", "machine", "up", *(args or ["--gpus", "2", "--config", str(config)])],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )

    def output(self) -> str:
        return (self.tmp / "agent.log").read_text(errors="replace")

    @property
    def info(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "machine" / "agent.json").read_text()))

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(self.info["health_url"] + "/status", timeout=5, trust_env=False).json())

    def process(self, name: str) -> dict[str, Any]:
        return next(p for p in self.status()["processes"] if p["name"] == name)

    def events(self, etype: str) -> list[dict[str, str]]:
        return [f for _, f in self.r.xrange(self.keys.events) if f.get("type") == etype]

    def wait_ready(self) -> None:
        poll(lambda: self.events("machine_ready") or self.proc.poll() is not None, START_TIMEOUT_S, "machine_ready")
        assert self.proc.poll() is None, self.output()

    def job(self, job_id: str) -> dict[str, str]:
        return dict(self.r.hgetall(self.keys.job(job_id)))

    def submit(self, job_id: str, payload: dict[str, Any], requirements: dict[str, Any] | None = None) -> None:
        from emp.model.job import parse_submission

        wire = parse_submission(
            {"id": job_id, "service": "comfyui", "payload": payload, "requirements": requirements or {}}
        ).to_wire(1 << 20)
        from emp.redis.calls import SUBMIT_FIELDS

        args: list[Any] = [self.keys.prefix, 1 << 20, 1]
        args += ["" if wire.get(f) is None else wire[f] for f in SUBMIT_FIELDS]
        self.r.fcall("emp_submit", 1, self.keys.events, *args)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.r.close()


def children_of_namespace(namespace: str, base: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z" and (
            f"--namespace {namespace} worker" in cmd or f"--port {base}" in cmd or f"--port {base + 1}" in cmd
        ):
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Agent]:
    namespace = "mach" + os.urandom(4).hex()
    a = Agent(tmp_path_factory.mktemp("machine"), redis_url, namespace)
    try:
        a.wait_ready()
        yield a
    finally:
        a.stop()
        poll(lambda: not children_of_namespace(namespace, a.base), 10, "every child to be gone")


def test_up_with_two_gpus_starts_a_comfyui_and_a_worker_per_gpu(agent: Agent) -> None:
    for port in (agent.base, agent.base + 1):
        assert httpx.get(f"http://127.0.0.1:{port}/system_stats", timeout=5, trust_env=False).status_code == 200
    status = agent.status()
    assert status["ready"] is True and status["phase"] == "ready"
    names = {p["name"]: p["state"] for p in status["processes"]}
    assert names == {
        "comfyui-gpu0": "running", "comfyui-gpu1": "running",
        "worker-comfyui-gpu0": "running", "worker-comfyui-gpu1": "running",
    }  # fmt: skip
    assert httpx.get(agent.info["health_url"] + "/ready", timeout=5, trust_env=False).status_code == 200
    [ready] = agent.events("machine_ready")
    startup_s = json.loads(ready["data"])["startup_s"]
    assert startup_s > 0
    print(f"\nmachine up -> ready: {startup_s:.2f} s")  # the figure the closing note reports
    steps = [json.loads(e["data"])["step"] for e in agent.events("machine_step")]
    assert {"health", "comfyui-gpu0", "comfyui-gpu1", "worker-comfyui-gpu0", "worker-comfyui-gpu1"} <= set(steps)
    # Each worker advertises its own GPU, and its ComfyUI's models.
    for gpu in (0, 1):
        wid = f"{agent.machine_id}-comfyui-gpu{gpu}"
        caps = json.loads(agent.r.hget(agent.keys.worker(wid), "caps") or "{}")
        assert caps["hardware"]["gpu_model"] == "NVIDIA GeForce RTX 4090 (fake)"
        assert caps["hardware"]["gpu_memory_gb"] == 24 and caps["gpu"]["index"] == gpu
        assert "v1-5-pruned-emaonly.safetensors" in caps["models"]["comfyui"]
        assert agent.r.hget(agent.keys.worker(wid), "machine_id") == agent.machine_id
    record = agent.r.hgetall(agent.keys.machine(agent.machine_id))
    assert record["status"] == "ready" and json.loads(record["record"])["gpus"]["source"] == "fake"


def test_a_submitted_job_completes(agent: Agent) -> None:
    agent.submit("m-ok", {"workflow": workflow_slow(5)})
    poll(lambda: agent.job("m-ok").get("status") in ("completed", "failed"), 30, "the job to end")
    job = agent.job("m-ok")
    assert job["status"] == "completed", job
    [out] = json.loads(job["result"])["outputs"]
    assert Path(out["url"].removeprefix("file://")).is_file()


def test_a_comfyui_crash_pauses_its_worker_until_the_restart(agent: Agent) -> None:
    wid = f"{agent.machine_id}-comfyui-gpu0"
    before = agent.process("comfyui-gpu0")
    os.kill(before["pid"], signal.SIGKILL)
    poll(lambda: agent.r.hget(agent.keys.worker(wid), "status") == "paused", 15, "the gpu0 worker to pause")
    # A job only GPU 0 may run (by its UUID) waits, unclaimed, until its ComfyUI is back.
    agent.submit("m-wait", {"workflow": workflow_slow(5)}, {"gpu.uuid": "GPU-fake-0"})
    poll(lambda: agent.process("comfyui-gpu0")["restarts"] == before["restarts"] + 1, 30, "a restart")
    poll(lambda: agent.job("m-wait").get("status") in ("completed", "failed"), 60, "the job to end")
    job = agent.job("m-wait")
    assert (job["status"], job["attempt"], job["worker_id"]) == ("completed", "1", wid), job
    assert agent.process("worker-comfyui-gpu0")["restarts"] == 0, "the worker itself was not restarted"
    assert agent.process("comfyui-gpu0")["state"] == "running"


def test_a_comfyui_crash_mid_job_fails_no_job(agent: Agent) -> None:
    agent.submit("m-crash", {"workflow": workflow_slow(100)}, {"gpu.uuid": "GPU-fake-0"})
    poll(lambda: float(agent.job("m-crash").get("progress") or 0) > 0, 30, "the job to run")
    before = agent.process("comfyui-gpu0")
    os.kill(before["pid"], signal.SIGKILL)
    poll(lambda: agent.process("comfyui-gpu0")["restarts"] == before["restarts"] + 1, 30, "a restart")
    poll(lambda: agent.job("m-crash").get("status") in ("completed", "failed"), 60, "the job to end")
    job = agent.job("m-crash")
    # The prompt died with its ComfyUI: the job is retried (that attempt counts, so a job that
    # crashes ComfyUI every time cannot do it forever) and completes.
    assert job["status"] == "completed", job
    assert agent.process("worker-comfyui-gpu0")["restarts"] == 0


def test_sigterm_mid_job_finishes_or_releases_it_and_stops_every_child(agent: Agent) -> None:
    agent.submit("m-term", {"workflow": workflow_slow(100)})  # ~2 s: within the 20 s drain
    poll(lambda: float(agent.job("m-term").get("progress") or 0) > 0, 30, "the job to run")
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(60) == 0, agent.output()
    job = agent.job("m-term")
    assert job["status"] in ("completed", "pending"), job  # finished in the drain, or released
    assert job["status"] == "completed", "a 2 s job finishes within the 20 s drain"
    assert children_of_namespace(agent.namespace, agent.base) == []
    [shutdown] = agent.events("machine_shutdown")
    assert json.loads(shutdown["data"])["reason"] == "SIGTERM"
    assert agent.r.zscore(agent.keys.machines, agent.machine_id) is None, "no phantom machine"
    assert agent.r.zcard(agent.keys.workers) == 0 and agent.r.zcard(agent.keys.leases) == 0
    assert not (agent.state_dir / "machine" / "agent.json").exists()


def test_sigkill_of_the_whole_box_loses_no_job(tmp_path: Path, redis_url: str) -> None:
    """A spot box vanishing: agent, ComfyUIs and workers all gone at once. The running job's lease
    lapses (1.5 s here) and the next maintenance pass puts it back in the queue.

    The box is frozen (SIGSTOP) before it is killed. A plain SIGKILL of the agent first would fire
    its children's PR_SET_PDEATHSIG (SIGTERM) while the test is still killing them one by one: a
    ComfyUI that exits on it fails the running attempt through its worker, and the job is back in
    the queue by a failure rather than by its lease. The proof is in the job's history, not in an
    instantaneous status: with a 1.5 s lease on a loaded machine, a late heartbeat may let the
    lease lapse (and a sibling worker requeue the job) even before the box is frozen; every
    requeue must still be a lapsed lease, never a failure or a release."""
    namespace = "kill" + os.urandom(4).hex()
    box = Agent(tmp_path, redis_url, namespace, {"EMP_LEASE_TTL": "1.5"})
    try:
        box.wait_ready()
        box.submit("k-1", {"workflow": workflow_slow(1000)})
        poll(lambda: float(box.job("k-1").get("progress") or 0) > 0, 30, "the job to run")
        groups = [p["pid"] for p in box.status()["processes"] if p["pid"]]  # each child leads its group
        # Freeze everything first, so no process of the box acts on what happens to the others,
        # then kill: nobody runs a signal handler, nobody sees a sibling die.
        os.kill(box.proc.pid, signal.SIGSTOP)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)
        os.kill(box.proc.pid, signal.SIGKILL)
        box.proc.wait(10)
        poll(lambda: not children_of_namespace(namespace, box.base), 10, "every process of the box to be gone")
        assert box.job("k-1")["status"] in ("in_progress", "pending"), "neither finished nor failed"

        def requeued() -> bool:
            from emp.redis.calls import Calls
            from emp.redis.client import connect

            async def once() -> None:
                client = connect(redis_url)
                try:
                    await Calls(client, namespace).maintain(100, 3)
                finally:
                    await client.aclose()

            anyio.run(once)
            return box.job("k-1").get("status") == "pending"

        poll(requeued, 15, "the lapsed lease to put the job back")
        job = box.job("k-1")
        history = json.loads(job["history"])
        assert history, job
        assert {h["outcome"] for h in history} == {"lease_expired"}, "requeued only by lapsed leases"
        assert int(job["lost"]) == len(history) and job["status"] == "pending", job
        assert {h["worker_id"] for h in history} <= {f"{box.machine_id}-comfyui-gpu{i}" for i in (0, 1)}
    finally:
        box.stop()


def test_builtin_simulation_needs_no_config(tmp_path: Path, redis_url: str) -> None:
    """What a new user types first: simulated workers, one per GPU, no service process, no file."""
    namespace = "simu" + os.urandom(4).hex()
    box = Agent(tmp_path, redis_url, namespace, args=["--gpus", "2", "--services", "simulation", "--health-port", "0"])
    try:
        box.wait_ready()
        processes = {p["name"]: p["state"] for p in box.status()["processes"]}
        assert processes == {"worker-simulation-gpu0": "running", "worker-simulation-gpu1": "running"}
        submit = subprocess.run(
            [sys.executable, "-m", "emp", "submit", "simulation", "--payload", '{"steps": 2, "step_ms": 5}']
            + ["--id", "sim", "--count", "4"],
            capture_output=True,
            text=True,
            env=box.env,
            cwd=ROOT,
            timeout=60,
        )
        assert submit.returncode == 0, submit.stderr
        ids = [f"sim-{i}" for i in range(4)]
        poll(lambda: all(box.job(i).get("status") in ("completed", "failed") for i in ids), 30, "the jobs to end")
        workers = {f"{box.machine_id}-simulation-gpu{i}" for i in (0, 1)}
        for i in ids:
            job = box.job(i)
            assert job["status"] == "completed" and job["worker_id"] in workers, job
    finally:
        box.stop()
    assert box.proc.returncode == 0, box.output()


def test_up_without_comfyui_fails_at_once_and_says_what_to_do(tmp_path: Path, redis_url: str) -> None:
    """No ComfyUI where the default config looks: nothing is started (no restart loop), exit 1,
    a machine_failed event, and the way out in the message."""
    namespace = "nocf" + os.urandom(4).hex()
    missing = tmp_path / "no-comfyui-here"
    box = Agent(
        tmp_path, redis_url, namespace, {"EMP_COMFYUI_DIR": str(missing)}, args=["--gpus", "2", "--health-port", "0"]
    )
    try:
        poll(lambda: box.proc.poll() is not None, START_TIMEOUT_S, "the agent to give up")
        assert box.proc.returncode == 1, box.output()
        output = box.output()
        assert "emp machine install" in output and "EMP_COMFYUI_DIR" in output and str(missing) in output
        assert "restarting" not in output and "gave up" not in output, "no process was started"
        [failed] = box.events("machine_failed")
        assert "ComfyUI is not installed" in json.loads(failed["data"])["message"]
        assert box.events("machine_step") == [], "not even the health endpoint"
        assert [json.loads(e["data"])["reason"] for e in box.events("machine_shutdown")] == ["failed"]
        assert box.r.zcard(box.keys.workers) == 0
    finally:
        box.stop()
