"""The demo's fleet and jobs, and what each job is expected to end as (pure: no I/O).

`emp demo` (:mod:`emp.demo.run`) starts these workers as processes (the GPU box's through the
machine agent) and submits these jobs.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emp import defaults
from emp.demo.view import Expected
from emp.model.matching import requirements_match
from emp.model.requirements import canonical_from_text

WORKER_DRAIN_S = 5.0
"""Drain timeout given to the demo's workers: every job has ended by then anyway."""


@dataclass(frozen=True)
class WorkerKind:
    """One kind of demo machine: its services, capabilities, slots and connector."""

    name: str
    services: tuple[str, ...]
    capabilities: dict[str, Any]
    concurrency: int = 2
    connector: str = "simulation"


WORKER_KINDS: tuple[WorkerKind, ...] = (
    WorkerKind(
        "rtx4090",
        ("simulation", "comfyui-sim"),
        {
            "hardware": {"gpu_model": "rtx4090", "gpu_memory_gb": 24, "ram_gb": 64, "cpu_cores": 16},
            "models": {"comfyui-sim": ["sdxl", "flux-dev"]},
            "pool": "demo",
        },
    ),
    WorkerKind(
        "a6000",
        ("simulation", "comfyui-sim"),
        {
            "hardware": {"gpu_model": "a6000", "gpu_memory_gb": 48, "ram_gb": 128, "cpu_cores": 32},
            "models": {"comfyui-sim": ["sdxl", "flux-dev", "sd35-large"]},
            "pool": "demo",
        },
    ),
    WorkerKind(
        "cpu",
        ("simulation",),
        {"hardware": {"gpu_memory_gb": 0, "ram_gb": 16, "cpu_cores": 8}, "pool": "demo"},
    ),
)


@dataclass(frozen=True)
class DemoWorker:
    """One worker process of the demo fleet."""

    name: str
    kind: WorkerKind

    @property
    def worker_id(self) -> str:
        return f"demo-{self.name}"

    @property
    def on_machine(self) -> bool:
        """Started by the demo's machine agent, not by the demo."""
        return self.kind is COMFYUI_KIND

    @property
    def slot_count(self) -> int:
        return self.kind.concurrency


COMFYUI_KIND = WorkerKind(
    "comfyui",
    ("comfyui",),
    {"hardware": {"gpu_model": "NVIDIA GeForce RTX 4090 (fake)", "gpu_memory_gb": 24}, "pool": "demo"},
    concurrency=1,
    connector="comfyui",
)
"""The workers of the demo's GPU box: `emp machine up --gpus 2` runs a (stand-in) ComfyUI and one
of these per fake GPU, driving it through the real ComfyUI connector. The demo does not start
them itself: the machine agent does. The stand-in ComfyUI ships in the package (emp/stand_ins), so
every demo runs this box."""

MACHINE_GPUS = 2

COMFYUI_MODEL = "v1-5-pruned-emaonly.safetensors"
"""The checkpoint the demo's txt2img graph loads (the stand-in offers it; so would a stock box)."""


def demo_fleet(count: int) -> list[DemoWorker]:
    """``count`` simulated worker processes, cycling through the kinds: rtx4090, a6000, cpu,
    rtx4090-2, ...; then the GPU box's workers (one per fake GPU, started by the machine agent)."""
    if count < 1:
        raise ValueError("the demo needs at least one worker")
    fleet = []
    for i in range(count):
        kind = WORKER_KINDS[i % len(WORKER_KINDS)]
        n = i // len(WORKER_KINDS)
        fleet.append(DemoWorker(kind.name if n == 0 else f"{kind.name}-{n + 1}", kind))
    return fleet + [DemoWorker(f"gpu{i}", COMFYUI_KIND) for i in range(MACHINE_GPUS)]


@dataclass(frozen=True)
class DemoJob:
    """A job the demo submits, and the state it must end in (given a fleet that can run it)."""

    id: str
    label: str
    submission: dict[str, Any]
    expected: str = "completed"
    expected_attempt: int | None = None

    @property
    def service(self) -> str:
        return str(self.submission["service"])

    @property
    def priority(self) -> int:
        return int(self.submission.get("workflow_priority", self.submission.get("priority", defaults.PRIORITY)))


def comfyui_graphs(seed: int) -> dict[str, dict[str, Any]]:
    """The demo's ComfyUI workflows (API format, model-free except the txt2img checkpoint)."""
    txt2img = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": COMFYUI_MODEL}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse at dusk", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": seed, "steps": 20, "cfg": 7.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "emp-demo/txt2img"}},
    }  # fmt: skip
    invert = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                     "color": seed % 0xFFFFFF}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "emp-demo/invert"}},
    }  # fmt: skip
    invalid = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "emp-demo/never"}},
    }  # fmt: skip
    return {"txt2img": txt2img, "invert": invert, "invalid": invalid}


def demo_jobs(now_ms: int, *, pace: float = 1.0, seed: int = 7) -> list[DemoJob]:
    """The batch the demo submits (deterministic for a seed): 22 simulation jobs (see
    :mod:`emp.demo.run`) and three ComfyUI jobs for the GPU box (txt2img with progress, an image
    edit, a workflow ComfyUI refuses). ``pace`` stretches every step (the live screen runs slower
    than --smoke)."""
    rng = random.Random(seed)

    def sim(steps: int, step_ms: int, **extra: Any) -> dict[str, Any]:
        return {"steps": steps, "step_ms": int(step_ms * pace), **extra}

    def job(
        job_id: str,
        label: str,
        service: str,
        priority: int,
        payload: dict[str, Any],
        expected: str = "completed",
        attempt: int | None = None,
        **fields: Any,
    ) -> DemoJob:
        submission = {"service": service, "priority": priority, "payload": payload, **fields}
        return DemoJob(job_id, label, submission, expected, attempt)

    def gpu(gb: int) -> dict[str, Any]:
        return {"hardware": {"gpu_memory_gb": gb}}

    jobs = [
        job(
            f"sim-{i:02d}",
            f"simulation, priority {p}",
            "simulation",
            p,
            sim(rng.randint(5, 12), rng.choice((120, 200))),
        )
        for i, p in enumerate((90, 50, 10, 70, 50, 30, 80, 50, 20, 60), start=1)
    ]
    jobs += [
        job(f"img-{m.partition('-')[0]}-{i}", f"needs model {m}", "comfyui-sim", 60, sim(rng.randint(6, 10), 150),
            requirements={"models": [m]})
        for i, m in enumerate(("sdxl", "sdxl", "flux-dev"), start=1)
    ]  # fmt: skip
    jobs.append(
        job("img-sd35", "needs model sd35-large (a6000 only)", "comfyui-sim", 55, sim(8, 150),
            requirements={"models": ["sd35-large"]})
    )  # fmt: skip
    jobs += [
        job(f"big-40g-{i}", "needs gpu_memory_gb >= 40", "comfyui-sim", 65, sim(8, 150), requirements=gpu(40))
        for i in (1, 2)
    ]
    # One workflow: its steps share workflow_priority and workflow_datetime, so they run before
    # newer work of the same priority, in step order.
    workflow: dict[str, Any] = {
        "workflow_id": f"wf-{now_ms}",
        "workflow_priority": 75,
        "workflow_datetime": now_ms - 60_000,
    }
    jobs += [
        job(f"wf-step-{n}", f"workflow step {n}/3 (workflow_priority 75)", "simulation", 50, sim(5, 150),
            step=n, total_steps=3, **workflow)
        for n in (1, 2, 3)
    ]  # fmt: skip
    jobs += [
        job("flaky", "fails transiently once, then succeeds", "simulation", 85,
            sim(6, 120, fail="transient", fail_attempts=1), attempt=2),
        job("bad-input", "malformed: fails at once, no retry", "simulation", 85, sim(4, 100, fail="malformed"),
            expected="failed"),
        job("huge-80g", "needs gpu_memory_gb >= 80: no such worker", "comfyui-sim", 40, sim(4, 100),
            expected="unworkable", requirements=gpu(80)),
    ]  # fmt: skip
    graphs = comfyui_graphs(now_ms)
    jobs += [
        job("comfy-txt2img", "ComfyUI txt2img: KSampler progress, PNG stored", "comfyui", 70,
            {"workflow": graphs["txt2img"]}),
        job("comfy-invert", "ComfyUI image edit: output stored", "comfyui", 60, {"workflow": graphs["invert"]}),
        job("comfy-invalid", "ComfyUI refuses the workflow (400): malformed", "comfyui", 60,
            {"workflow": graphs["invalid"]}, expected="failed"),
    ]  # fmt: skip
    return jobs


def worker_capabilities(worker: DemoWorker) -> dict[str, Any]:
    """The capabilities the worker registers, as far as matching cares (services added as the
    worker runtime does)."""
    caps = json.loads(json.dumps(worker.kind.capabilities))
    caps["services"] = list(worker.kind.services)
    return dict(caps)


def runnable(job: DemoJob, wire: dict[str, Any], fleet: Sequence[DemoWorker]) -> bool:
    """Can some worker of ``fleet`` run ``job``? (``wire``: its submit wire, with canonical requirements.)"""
    requirements = canonical_from_text(str(wire.get("requirements") or "{}"))
    return any(
        job.service in w.kind.services and requirements_match(requirements, worker_capabilities(w), job.service)
        for w in fleet
    )


def expected_rows(
    jobs: Sequence[DemoJob], wires: Sequence[dict[str, Any]], fleet: Sequence[DemoWorker]
) -> list[Expected]:
    """What the demo expects of each job. A job the chosen fleet cannot run is expected to end unworkable
    (with ``--workers 1`` the a6000-only jobs do)."""
    rows = []
    for job, wire in zip(jobs, wires, strict=True):
        expected, attempt = job.expected, job.expected_attempt
        if not runnable(job, wire, fleet):
            expected, attempt = "unworkable", None
        rows.append(Expected(job.id, job.label, job.service, job.priority, expected, attempt))
    return rows


def machine_toml(*, machine_id: str, gpus: int, base_port: int, step_ms: float, comfyui_out: Path, root: Path) -> str:
    """The demo box's machine.toml: fake GPUs, the fake ComfyUI of emp/stand_ins per GPU (on the
    CPU, as `--cpu` asks), a short drain and frequent reports (so the demo shows them)."""
    return f"""# written by emp demo
[machine]
id = "{machine_id}"
gpus = "{gpus}"
health_port = 0
report_interval_s = 2
drain_timeout_s = {WORKER_DRAIN_S:g}
capabilities = {{ pool = "demo" }}

[services.comfyui]
command = ["{{python}}", "-m", "emp.stand_ins.comfyui", "--listen", "127.0.0.1", "--port", "{{port}}",
           "--step-ms", "{step_ms:g}", "--output-dir", "{comfyui_out}/gpu{{gpu}}"]
cwd = "{root}"
base_port = {base_port}
"""


def worker_argv(
    worker: DemoWorker, namespace: str, *, service_url: str | None = None, output_url: str | None = None
) -> list[str]:
    """The command line of one worker process. The Redis URL goes in the environment (EMP_REDIS_URL),
    not in argv, where `ps` would show its password to every user of the machine."""
    extra = (["--service-url", service_url] if service_url else []) + (
        ["--output-url", output_url] if output_url else []
    )
    return [
        sys.executable,
        "-m",
        "emp",
        "--namespace",
        namespace,
        "worker",
        "--id",
        worker.worker_id,
        "--machine-id",
        f"demo-{worker.name}-box",
        "--services",
        ",".join(worker.kind.services),
        "--connector",
        worker.kind.connector,
        *extra,
        "--capabilities",
        json.dumps(worker.kind.capabilities, separators=(",", ":")),
        "--concurrency",
        str(worker.kind.concurrency),
        "--drain-timeout",
        f"{WORKER_DRAIN_S:g}",
    ]
