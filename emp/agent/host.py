"""What the machine is: hostname, OS, CPU, RAM, disk, Python and emp versions, and the rental
platform's ids (vast.ai, SaladCloud), for the machine record and the startup event.

The platform ids come from each platform's documented environment variables (services.md §4):

- vast.ai: ``CONTAINER_ID`` and ``VAST_CONTAINERLABEL`` (the instance), ``PUBLIC_IPADDR`` (true at
  startup only: vast does not update it), ``VAST_TCP_PORT_<internal>`` / ``VAST_UDP_PORT_<internal>``
  (the external port mapped to an internal one), ``GPU_COUNT``.
- SaladCloud: ``SALAD_MACHINE_ID`` (the node), ``SALAD_INSTANCE_ID`` (new at every container start),
  ``SALAD_CONTAINER_GROUP_ID/NAME``, ``SALAD_PROJECT_ID/NAME``, ``SALAD_ORGANIZATION_ID/NAME``.

:func:`detect_platform` and :func:`cpu_model_from_cpuinfo` are pure; :func:`host_info` gathers the rest.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import psutil

import emp

Platform = Literal["vast", "salad", "other"]

_VAST_MARKERS = ("CONTAINER_ID", "VAST_CONTAINERLABEL")
_VAST_IDS = ("CONTAINER_ID", "VAST_CONTAINERLABEL", "PUBLIC_IPADDR", "GPU_COUNT")
_VAST_PORT_PREFIXES = ("VAST_TCP_PORT_", "VAST_UDP_PORT_")
_SALAD_IDS = (
    "SALAD_MACHINE_ID",
    "SALAD_INSTANCE_ID",
    "SALAD_CONTAINER_GROUP_ID",
    "SALAD_CONTAINER_GROUP_NAME",
    "SALAD_PROJECT_ID",
    "SALAD_PROJECT_NAME",
    "SALAD_ORGANIZATION_ID",
    "SALAD_ORGANIZATION_NAME",
)
_GB = 1024**3


def detect_platform(environ: Mapping[str, str]) -> tuple[Platform, dict[str, str]]:
    """Which rental platform this box is on, and its ids there (non-empty variables only).

    Salad is checked first: its variables are unambiguous, while ``CONTAINER_ID`` is a generic
    enough name that another platform could set it. Vast's ``VAST_*`` port variables are kept
    whatever the platform, if present, because they are how the box is reached from outside.
    """
    salad = _present(environ, _SALAD_IDS)
    if salad:
        return "salad", salad
    if any(environ.get(name, "").strip() for name in _VAST_MARKERS):
        ids = _present(environ, _VAST_IDS)
        ids.update(_vast_ports(environ))
        return "vast", ids
    return "other", {}


def cpu_model_from_cpuinfo(text: str) -> str | None:
    """The CPU's name from /proc/cpuinfo text ("model name" on x86, "Model" or "Hardware" on ARM)."""
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return None


def host_info(environ: Mapping[str, str] = os.environ, disk_path: str | Path = "/") -> dict[str, Any]:
    """A JSON-ready description of this box. RAM and disk in GB (2 decimals); ``cpu_cores`` is the
    number of CPUs this process may run on (affinity), not the machine's total, which a rented
    container shares with others; ``None`` where a value cannot be read."""
    memory = psutil.virtual_memory()
    disk_total, disk_free = _disk(disk_path)
    name, ids = detect_platform(environ)
    return {
        "hostname": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}".strip(),
        "platform_desc": platform.platform(),
        "arch": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_cores": _usable_cpus(),
        "cpu_cores_total": psutil.cpu_count(logical=True),
        "ram_total_gb": _gb(memory.total),
        "ram_available_gb": _gb(memory.available),
        "disk_path": str(disk_path),
        "disk_total_gb": disk_total,
        "disk_free_gb": disk_free,
        "python": platform.python_version(),
        "emp_version": emp.__version__,
        "platform": name,
        "platform_ids": ids,
    }


def _present(environ: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: environ[name].strip() for name in names if environ.get(name, "").strip()}


def _vast_ports(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value.strip()
        for name, value in sorted(environ.items())
        if name.startswith(_VAST_PORT_PREFIXES) and value.strip()
    }


def _cpu_model() -> str | None:
    try:
        model = cpu_model_from_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        model = None
    return model or platform.processor() or None


def _usable_cpus() -> int | None:
    # psutil's docs: cpu_count() is not what a process may use under affinity; the affinity mask is.
    # (cgroup CPU quotas are reflected by neither.)
    try:
        usable = len(psutil.Process().cpu_affinity() or [])
    except (AttributeError, psutil.Error, OSError):  # no cpu_affinity on macOS
        usable = 0
    total: int | None = psutil.cpu_count(logical=True)
    return usable or total


def _disk(path: str | Path) -> tuple[float | None, float | None]:
    try:
        usage = psutil.disk_usage(str(path))
    except OSError:
        return None, None
    return _gb(usage.total), _gb(usage.free)


def _gb(value: int) -> float:
    return round(value / _GB, 2)


__all__ = ["Platform", "cpu_model_from_cpuinfo", "detect_platform", "host_info"]
