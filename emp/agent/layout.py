"""What processes a machine runs: one service process and one worker per GPU (or per machine).

Pure: from the configuration and the GPUs found, the plans the agent hands to the supervisor.
For GPU ``i`` of a per-GPU service kind (ComfyUI by default): the service process
``<kind>-gpu<i>`` on ``base_port + i`` with ``CUDA_VISIBLE_DEVICES`` set to that GPU (its UUID on
a real GPU, so the process sees one device 0 whatever the container's numbering; the kind's
``cpu_args``, e.g. ``--cpu``, on a fake GPU), and the worker ``worker-<kind>-gpu<i>`` bound to
it, whose capabilities advertise that GPU's model and memory (its service's models are added by
the worker itself, from the service). A per-machine kind has one process and one worker.
A kind without a command runs no process: its worker uses a service already there, or the
in-process simulation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emp.agent.config import MachineConfig, ServiceKind


class Gpu(Protocol):
    """What the layout needs of a GPU (emp.agent.gpu.GpuInfo)."""

    @property
    def index(self) -> int: ...
    @property
    def uuid(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def memory_gb(self) -> int: ...
    @property
    def visible_devices(self) -> str: ...
    @property
    def fake(self) -> bool: ...


@dataclass(frozen=True)
class ServicePlan:
    """A service process to supervise (ComfyUI on one GPU, an Ollama for the box...)."""

    name: str
    kind: ServiceKind
    gpu: int | None
    port: int | None
    argv: list[str]
    cwd: Path | None
    env: dict[str, str]
    """Variables set for the process on top of the agent's environment."""

    @property
    def url(self) -> str | None:
        return None if self.port is None else f"http://127.0.0.1:{self.port}"

    @property
    def ready_url(self) -> str | None:
        if self.url is None or not self.kind.ready_path:
            return None
        return self.url + self.kind.ready_path


@dataclass(frozen=True)
class WorkerPlan:
    """A worker process bound to one service (or to none: simulation)."""

    name: str
    worker_id: str
    kind: ServiceKind
    gpu: int | None
    service: ServicePlan | None
    url: str | None
    capabilities: dict[str, Any] = field(default_factory=dict)

    @property
    def slot_ids(self) -> list[str]:
        """The worker ids its slots register (as emp.worker.runtime names them)."""
        n = self.kind.concurrency
        return [self.worker_id] if n == 1 else [f"{self.worker_id}-{i}" for i in range(n)]

    def argv(self, python: str, namespace: str, drain_timeout_s: float, machine_id: str) -> list[str]:
        """``emp worker`` for this plan. The Redis URL is passed in the environment, never in argv
        (where `ps` would show its password)."""
        args = [python, "-m", "emp", "--namespace", namespace, "worker", "--id", self.worker_id]
        args += ["--machine-id", machine_id, "--connector", self.kind.connector]
        if self.url:
            args += ["--service-url", self.url]
        if self.kind.options:
            args += ["--connector-options", json.dumps(dict(self.kind.options), separators=(",", ":"))]
        args += ["--services", ",".join(self.kind.services)]
        args += ["--capabilities", json.dumps(self.capabilities, separators=(",", ":"), sort_keys=True)]
        args += ["--concurrency", str(self.kind.concurrency), "--drain-timeout", f"{drain_timeout_s:g}"]
        return args


def plan_machine(
    cfg: MachineConfig, gpus: Sequence[Gpu], *, python: str, host: Mapping[str, Any] | None = None
) -> tuple[list[ServicePlan], list[WorkerPlan]]:
    """The service processes and workers of the machine, in start order."""
    services: list[ServicePlan] = []
    workers: list[WorkerPlan] = []
    for kind in cfg.services:
        slots: list[Gpu | None] = list(gpus) if kind.per == "gpu" else [None]
        for position, gpu in enumerate(slots):
            index = gpu.index if gpu is not None else None
            suffix = f"-gpu{index}" if index is not None else ""
            port = kind.port(position) if kind.base_port is not None else None
            service = _service_plan(kind, gpu, port, suffix, python) if kind.command else None
            if service is not None:
                services.append(service)
            url = f"http://127.0.0.1:{port}" if port is not None else None
            workers.append(
                WorkerPlan(
                    name=f"worker-{kind.name}{suffix}",
                    worker_id=f"{cfg.machine_id}-{kind.name}{suffix}",
                    kind=kind,
                    gpu=index,
                    service=service,
                    url=url,
                    capabilities=worker_capabilities(cfg, gpu, host or {}),
                )
            )
    return services, workers


def _service_plan(kind: ServiceKind, gpu: Gpu | None, port: int | None, suffix: str, python: str) -> ServicePlan:
    values = {"port": "" if port is None else str(port), "gpu": "" if gpu is None else str(gpu.index)}
    values |= {"python": python, "dir": str(kind.cwd or "")}
    argv = [part.format(**values) for part in kind.command]
    if gpu is not None and gpu.fake:
        argv += list(kind.cpu_args)
    argv += list(kind.extra_args)
    env = dict(kind.env)
    env["PYTHONUNBUFFERED"] = "1"
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu.visible_devices
    return ServicePlan(f"{kind.name}{suffix}", kind, gpu.index if gpu else None, port, argv, kind.cwd, env)


def worker_capabilities(cfg: MachineConfig, gpu: Gpu | None, host: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's capabilities, with the hardware this worker actually has on top."""
    caps: dict[str, Any] = json.loads(json.dumps(dict(cfg.capabilities)))
    hardware: dict[str, Any] = dict(caps.get("hardware") or {})
    if gpu is not None:
        hardware |= {"gpu_model": gpu.name, "gpu_memory_gb": gpu.memory_gb, "gpu_count": 1}
        caps["gpu"] = {"index": gpu.index, "uuid": gpu.uuid, "fake": gpu.fake}
    else:
        hardware.setdefault("gpu_memory_gb", 0)
    for key in ("ram_gb", "cpu_cores"):
        if key in host and key not in hardware:
            hardware[key] = host[key]
    caps["hardware"] = hardware
    caps["machine"] = cfg.machine_id
    return caps
