"""The machine's GPUs: read by NVML (nvidia-ml-py), or declared fake for boxes without a driver.

This is the only module that imports ``pynvml`` (and only inside functions, so importing emp never
loads NVML). Nothing here raises on a box without NVIDIA hardware: :func:`detect_gpus` returns a
report with ``source="none"`` and an ``error`` that says why ("no NVIDIA GPU: ...").

Facts this module relies on (services.md §3):

- ``nvmlInit()`` raises ``NVMLError_LibraryNotFound`` (no driver, or a container without the
  ``utility`` capability), ``NVMLError_DriverNotLoaded`` or ``NVMLError_LibRmVersionMismatch``
  (driver upgraded without a reboot): all mean "no usable NVIDIA GPU". ``nvmlShutdown()`` is
  called only after a successful init (otherwise it raises ``Uninitialized``).
- A metric a board does not support raises ``NVMLError_NotSupported``: it becomes ``None``.
  ``NVMLError_GpuIsLost`` (fell off the bus) is a machine-health failure: the GPU is listed in
  ``GpuReport.lost``.
- Units: memory in bytes (reported here in MiB), power in milliwatts (reported in watts),
  temperature in °C, CUDA driver version as an int (12040 -> "12.4").
- GPUs are identified by UUID, never by CUDA index: NVML ignores ``CUDA_VISIBLE_DEVICES`` and its
  order may differ from CUDA's. A per-GPU service is started with ``CUDA_VISIBLE_DEVICES=<UUID>``
  (:attr:`GpuInfo.visible_devices`) so it sees exactly one device 0.

Fake GPUs (``--gpus N``, ``EMP_GPUS=N``, legacy ``TEST_MODE=true`` + ``NUM_GPUS=N``) stand in for
real ones in tests, demos and CPU boxes: same shape, ``fake=True``, ``source="fake"``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from emp import defaults

log = logging.getLogger(__name__)

# NVML return codes (nvml.h; the same numbers as pynvml's NVML_ERROR_*). Matching on the code rather
# than on pynvml's generated NVMLError_* classes keeps this module testable with a stand-in module.
_NOT_SUPPORTED = 3
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_LIB_RM_VERSION_MISMATCH = 18

_TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU: the GPU die sensor
_MIB = 1024 * 1024

_INIT_FAILURES = {
    _LIBRARY_NOT_FOUND: "the NVML library (libnvidia-ml.so.1) was not found: no NVIDIA driver on this box, "
    "or the container was started without the 'utility' driver capability",
    _DRIVER_NOT_LOADED: "the NVIDIA kernel driver is not loaded",
    _LIB_RM_VERSION_MISMATCH: "the NVML library and the kernel driver versions differ "
    "(driver upgraded without a reboot?)",
}

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class GpuInfo:
    """One GPU. Readings that the board (or a fake) cannot give are ``None``."""

    index: int
    """NVML index (for fake GPUs, their position): for display, never for CUDA_VISIBLE_DEVICES."""
    uuid: str
    name: str
    memory_total_mb: int
    memory_used_mb: int | None
    utilization_pct: int | None
    temperature_c: int | None
    power_w: float | None
    pci_bus_id: str | None
    fake: bool = False

    @property
    def memory_gb(self) -> int:
        """Total memory in whole GB, as capabilities advertise it (24564 MiB on a 4090 -> 24)."""
        return round(self.memory_total_mb / 1024)

    @property
    def visible_devices(self) -> str:
        """The CUDA_VISIBLE_DEVICES value that gives a child process exactly this GPU: the UUID
        (stable, unlike CUDA's ordering); for a fake GPU, its index (nothing reads it anyway)."""
        return str(self.index) if self.fake else self.uuid

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "memory_gb": self.memory_gb}


@dataclass(frozen=True)
class GpuReport:
    """What the machine has. ``source`` says where it came from; with no GPU, ``error`` says why."""

    gpus: list[GpuInfo]
    driver_version: str | None
    cuda_version: str | None
    source: Literal["nvml", "fake", "none"]
    error: str | None = None
    """"no NVIDIA GPU: <reason>" when there is none; after a failed :func:`refresh`, why the
    readings are missing."""
    lost: tuple[int, ...] = ()
    """NVML indexes of GPUs that fell off the bus (NVMLError_GpuIsLost): the machine is unhealthy."""
    problems: tuple[str, ...] = ()
    """Per-GPU trouble worth a log line: a GPU skipped because NVML could not read it, or lost."""

    @property
    def healthy(self) -> bool:
        return not self.lost

    def to_json(self) -> dict[str, Any]:
        return {
            "gpus": [gpu.to_json() for gpu in self.gpus],
            "driver_version": self.driver_version,
            "cuda_version": self.cuda_version,
            "source": self.source,
            "error": self.error,
            "lost": list(self.lost),
            "problems": list(self.problems),
        }


# -- fake GPUs and the --gpus / EMP_GPUS choice ---------------------------------------------------------


def fake_gpus(
    count: int, model: str = defaults.FAKE_GPU_MODEL, memory_gb: int = defaults.FAKE_GPU_MEMORY_GB
) -> GpuReport:
    """``count`` declared GPUs for boxes without a driver (tests, demos, CPU boxes)."""
    if count < 0:
        raise ValueError(f"a fake GPU count must be 0 or more, got {count}")
    if memory_gb <= 0:
        raise ValueError(f"a fake GPU's memory must be at least 1 GB, got {memory_gb}")
    gpus = [
        GpuInfo(
            index=i,
            uuid=f"GPU-fake-{i}",
            name=model,
            memory_total_mb=memory_gb * 1024,
            memory_used_mb=0,
            utilization_pct=0,
            temperature_c=None,
            power_w=None,
            pci_bus_id=None,
            fake=True,
        )
        for i in range(count)
    ]
    return GpuReport(gpus=gpus, driver_version=None, cuda_version=None, source="fake")


def resolve_gpus(
    spec: str | int | None,
    *,
    model: str | None = None,
    memory_gb: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> GpuReport:
    """The GPUs the agent should run with.

    ``spec`` is ``--gpus``: a number N declares N fake GPUs; ``"auto"`` or ``None`` looks at the
    environment: ``EMP_GPUS=N`` (N fake GPUs; ``EMP_GPUS=auto`` means detect), then the original's
    ``TEST_MODE=true`` (its mock-GPU mode) with ``NUM_GPUS`` (default 1, as in the original), else
    NVML. ``NUM_GPUS`` without ``TEST_MODE`` is ignored: on a real box NVML knows better (the
    original's hard-coded GPU counts were a bug).

    Fake GPUs take their model from ``model``, else ``EMP_GPU_MODEL``, else legacy ``GPU_MODEL``;
    their memory from ``memory_gb``, else ``EMP_GPU_MEMORY_GB``, else legacy ``GPU_MEMORY_GB``.
    A value that is not a valid number raises ValueError naming the option or variable.
    """
    count = _declared_count(spec, environ)
    if count is None:
        return detect_gpus()
    if model is None:
        model = _first_env(environ, "EMP_GPU_MODEL", "GPU_MODEL")[1] or defaults.FAKE_GPU_MODEL
    if memory_gb is None:
        name, text = _first_env(environ, "EMP_GPU_MEMORY_GB", "GPU_MEMORY_GB")
        memory_gb = defaults.FAKE_GPU_MEMORY_GB if text is None else _parse_int(text, name, minimum=1)
    elif memory_gb < 1:
        raise ValueError(f"GPU memory must be at least 1 GB, got {memory_gb}")
    return fake_gpus(count, model, memory_gb)


def _declared_count(spec: str | int | None, environ: Mapping[str, str]) -> int | None:
    """How many fake GPUs were asked for, or None for "detect with NVML"."""
    if isinstance(spec, bool):  # bool is an int: a caller bug, not "1 GPU"
        raise ValueError(f"--gpus must be 'auto' or a whole number, got {spec!r}")
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"--gpus must be 'auto' or a whole number >= 0, got {spec}")
        return spec
    if spec is not None and spec.strip().lower() != "auto":
        return _parse_int(spec, "--gpus", minimum=0)
    emp_gpus = environ.get("EMP_GPUS", "").strip()
    if emp_gpus and emp_gpus.lower() != "auto":
        return _parse_int(emp_gpus, "EMP_GPUS", minimum=0)
    if emp_gpus:
        return None  # EMP_GPUS=auto wins over the legacy variables
    if environ.get("TEST_MODE", "").strip().lower() in _TRUE:
        num = environ.get("NUM_GPUS", "").strip()
        return _parse_int(num, "NUM_GPUS", minimum=0) if num else 1
    return None


def _first_env(environ: Mapping[str, str], *names: str) -> tuple[str, str | None]:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return names[0], None


def _parse_int(text: str, name: str, *, minimum: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < minimum:
        what = "'auto' or a whole number" if name in ("--gpus", "EMP_GPUS") else "a whole number"
        raise ValueError(f"{name} must be {what} >= {minimum}, got {text!r}")
    return value


# -- NVML -------------------------------------------------------------------------------------------------


def detect_gpus(nvml: Any = None) -> GpuReport:
    """Read every GPU through NVML. Never raises: without a usable driver the report has
    ``source="none"`` and ``error="no NVIDIA GPU: <reason>"``.

    ``nvml`` is the ``pynvml`` module (imported here when not given); tests pass a stand-in.
    """
    if nvml is None:
        try:
            nvml = _load_pynvml()
        except ImportError as exc:
            return _no_gpu(f"nvidia-ml-py is not installed ({exc})")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError, or ctypes trouble loading the library
        return _no_gpu(_init_failure(nvml, exc))
    try:
        return _read_all(nvml)
    except Exception as exc:  # a broken driver must not take the agent down
        log.warning("NVML failed while listing GPUs: %s", exc)
        return _no_gpu(f"NVML failed while listing GPUs: {_describe(exc)}")
    finally:
        _shutdown(nvml)


def refresh(report: GpuReport, nvml: Any = None) -> GpuReport:
    """New readings (memory used, utilization, temperature, power) for NVML GPUs, looked up by
    UUID. Fake and absent GPUs come back unchanged. Never raises: if NVML fails, the readings
    become ``None`` and ``error`` says why; a GPU that fell off the bus is added to ``lost``."""
    if report.source != "nvml" or not report.gpus:
        return report
    try:
        if nvml is None:
            nvml = _load_pynvml()
        nvml.nvmlInit()
    except Exception as exc:
        reason = _init_failure(nvml, exc) if nvml is not None else _describe(exc)
        blank = [_blank(g) for g in report.gpus]
        return dataclasses.replace(report, gpus=blank, error=f"GPU readings failed: {reason}")
    try:
        gpus: list[GpuInfo] = []
        lost = list(report.lost)
        problems: list[str] = []
        for gpu in report.gpus:
            try:
                handle = nvml.nvmlDeviceGetHandleByUUID(gpu.uuid)
                gpus.append(dataclasses.replace(gpu, **_readings(nvml, handle)))
            except Exception as exc:
                gpus.append(_blank(gpu))
                if _code(nvml, exc) == _GPU_IS_LOST and gpu.index not in lost:
                    lost.append(gpu.index)
                problems.append(f"GPU {gpu.index} ({gpu.uuid}): {_describe(exc)}")
        return dataclasses.replace(report, gpus=gpus, lost=tuple(lost), problems=tuple(problems), error=None)
    except Exception as exc:
        return dataclasses.replace(report, gpus=[_blank(g) for g in report.gpus], error=f"GPU readings failed: {exc}")
    finally:
        _shutdown(nvml)


def cuda_version_text(value: int | None) -> str | None:
    """NVML's CUDA driver version int as text: 12040 -> "12.4", 11080 -> "11.8"."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _read_all(nvml: Any) -> GpuReport:
    driver = _text(_optional(nvml, nvml.nvmlSystemGetDriverVersion))
    cuda = cuda_version_text(_optional(nvml, nvml.nvmlSystemGetCudaDriverVersion))
    gpus: list[GpuInfo] = []
    lost: list[int] = []
    problems: list[str] = []
    for index in range(nvml.nvmlDeviceGetCount()):
        try:
            gpus.append(_read_device(nvml, index))
        except Exception as exc:
            # Counted but unreadable: NoPermission (a GPU given to another container), or lost.
            if _code(nvml, exc) == _GPU_IS_LOST:
                lost.append(index)
            problems.append(f"GPU {index}: skipped: {_describe(exc)}")
    for problem in problems:
        log.warning("%s", problem)
    error = None
    if not gpus:
        why = "; ".join(problems) if problems else "the driver reports no devices"
        error = f"no NVIDIA GPU: {why}"
    return GpuReport(
        gpus=gpus,
        driver_version=driver,
        cuda_version=cuda,
        source="nvml" if gpus else "none",
        error=error,
        lost=tuple(lost),
        problems=tuple(problems),
    )


def _read_device(nvml: Any, index: int) -> GpuInfo:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = _optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    pci = _optional(nvml, nvml.nvmlDeviceGetPciInfo, handle)
    readings = _readings(nvml, handle, memory=memory)
    return GpuInfo(
        index=index,
        uuid=_text(nvml.nvmlDeviceGetUUID(handle)) or f"nvml-index-{index}",
        name=_text(nvml.nvmlDeviceGetName(handle)) or "NVIDIA GPU",
        # Unified-memory boards answer NotSupported here: 0 is honest (no VRAM claim to match on).
        memory_total_mb=int(memory.total) // _MIB if memory is not None else 0,
        pci_bus_id=_text(getattr(pci, "busId", None)),
        **readings,
    )


_NO_MEMORY = object()


def _readings(nvml: Any, handle: Any, memory: Any = _NO_MEMORY) -> dict[str, Any]:
    """The readings that change: memory used, utilization, temperature, power."""
    if memory is _NO_MEMORY:
        memory = _optional(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    utilization = _optional(nvml, nvml.nvmlDeviceGetUtilizationRates, handle)
    milliwatts = _optional(nvml, nvml.nvmlDeviceGetPowerUsage, handle)
    return {
        "memory_used_mb": int(memory.used) // _MIB if memory is not None else None,
        "utilization_pct": int(utilization.gpu) if utilization is not None else None,
        "temperature_c": _temperature(nvml, handle),
        "power_w": round(int(milliwatts) / 1000, 1) if milliwatts is not None else None,
    }


def _temperature(nvml: Any, handle: Any) -> int | None:
    # nvmlDeviceGetTemperature is deprecated ("removed in CUDA 14.0"); its successor ...V is missing
    # from older drivers (FunctionNotFound), so try the new call first and fall back.
    newer = getattr(nvml, "nvmlDeviceGetTemperatureV", None)
    if newer is not None:
        try:
            return int(newer(handle, _TEMPERATURE_GPU))
        except Exception as exc:
            if _code(nvml, exc) == _GPU_IS_LOST:
                raise
            if _code(nvml, exc) != _FUNCTION_NOT_FOUND:
                return None
    value = _optional(nvml, nvml.nvmlDeviceGetTemperature, handle, _TEMPERATURE_GPU)
    return int(value) if value is not None else None


def _optional(nvml: Any, call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, or None for a reading this board cannot give (NotSupported, and also
    NoPermission / FunctionNotFound / Unknown: one missing metric must not hide the GPU). A lost
    GPU is not a missing metric: that error goes up."""
    try:
        return call(*args)
    except Exception as exc:
        if not _is_nvml_error(nvml, exc) or _code(nvml, exc) == _GPU_IS_LOST:
            raise
        if _code(nvml, exc) != _NOT_SUPPORTED:
            log.debug("NVML %s failed: %s", getattr(call, "__name__", call), exc)
        return None


def _load_pynvml() -> Any:
    import pynvml  # type: ignore[import-untyped]  # nvidia-ml-py ships no type information

    return pynvml


def _init_failure(nvml: Any, exc: BaseException) -> str:
    if _is_nvml_error(nvml, exc):
        known = _INIT_FAILURES.get(_code(nvml, exc) or 0)
        return known or f"NVML could not start: {_describe(exc)}"
    return f"NVML could not be loaded: {_describe(exc)}"


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception as exc:  # nothing to do about it; the next init starts afresh
        log.debug("nvmlShutdown failed: %s", exc)


def _is_nvml_error(nvml: Any, exc: BaseException) -> bool:
    base = getattr(nvml, "NVMLError", None)
    return isinstance(base, type) and isinstance(exc, base)


def _code(nvml: Any, exc: BaseException) -> int | None:
    if not _is_nvml_error(nvml, exc):
        return None
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _text(value: Any) -> str | None:
    """NVML strings: str in current nvidia-ml-py, bytes in old ones."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def _no_gpu(reason: str) -> GpuReport:
    return GpuReport(gpus=[], driver_version=None, cuda_version=None, source="none", error=f"no NVIDIA GPU: {reason}")


def _blank(gpu: GpuInfo) -> GpuInfo:
    return dataclasses.replace(gpu, memory_used_mb=None, utilization_pct=None, temperature_c=None, power_w=None)
