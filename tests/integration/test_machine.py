"""`emp machine up --gpus 2` end to end: fake ComfyUI per GPU, real workers, a real Redis.

One agent per test module (it takes ~3 s to come up); the tests run in order against it: ports
and capabilities, a job, a ComfyUI crash while a job runs on it, then SIGTERM mid-job.
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
    def __init__(self, tmp: Path, redis_url: str, namespace: str, extra_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.namespace = namespace
        self.keys = Keys(namespace)
        self.r = redis.Redis.from_url(redis_url, decode_responses=True)
        self.base = free_port_pair()
        self.state_dir = tmp / "state"
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
        env |= {"EMP_OUTPUT_URL": str(tmp / "outputs"), "PYTHONPATH": str(ROOT)} | (extra_env or {})
        self.log = open(tmp / "agent.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "emp", "machine", "up", "--gpus", "2", "--config", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        self.machine_id = f"box-{namespace}"

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
        poll(lambda: a.events("machine_ready") or a.proc.poll() is not None, START_TIMEOUT_S, "machine_ready")
        assert a.proc.poll() is None, a.output()
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
    assert 0 < startup_s < START_TIMEOUT_S
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
    """A spot box vanishing: agent, ComfyUIs and workers all SIGKILLed at once. The running job's
    lease lapses (1.5 s here) and the next maintenance pass puts it back in the queue."""
    namespace = "kill" + os.urandom(4).hex()
    box = Agent(tmp_path, redis_url, namespace, {"EMP_LEASE_TTL": "1.5"})
    try:
        poll(lambda: box.events("machine_ready") or box.proc.poll() is not None, START_TIMEOUT_S, "machine_ready")
        assert box.proc.poll() is None, box.output()
        box.submit("k-1", {"workflow": workflow_slow(1000)})
        poll(lambda: float(box.job("k-1").get("progress") or 0) > 0, 30, "the job to run")
        pids = [p["pid"] for p in box.status()["processes"] if p["pid"]]
        # Everything at once, so no signal handler runs: the agent, then each child's process group.
        os.kill(box.proc.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        box.proc.wait(10)
        poll(lambda: not children_of_namespace(namespace, box.base), 10, "every process of the box to be gone")
        assert box.job("k-1")["status"] == "in_progress", "nobody released it: the box just vanished"

        def requeued() -> bool:
            from emp.redis.calls import Calls
            from emp.redis.client import connect

            async def once() -> int:
                client = connect(redis_url)
                try:
                    _, moved, _ = await Calls(client, namespace).maintain(100, 3)
                    return moved
                finally:
                    await client.aclose()

            anyio.run(once)
            return box.job("k-1").get("status") == "pending"

        poll(requeued, 15, "the lapsed lease to put the job back")
        job = box.job("k-1")
        assert job["lost"] == "1" and job["status"] == "pending", job
    finally:
        box.stop()
