"""GPU detection: NVML error mapping and units (with a stand-in pynvml module), fake GPUs, and
the --gpus / EMP_GPUS / legacy TEST_MODE+NUM_GPUS choice."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from emp.agent import gpu
from emp.agent.gpu import GpuInfo, GpuReport, cuda_version_text, detect_gpus, fake_gpus, refresh, resolve_gpus

UNINITIALIZED, NOT_SUPPORTED, NO_PERMISSION, DRIVER_NOT_LOADED = 1, 3, 4, 9
LIBRARY_NOT_FOUND, FUNCTION_NOT_FOUND, GPU_IS_LOST, LIB_RM_MISMATCH, UNKNOWN = 12, 13, 15, 18, 999
MIB = 1024 * 1024


class NVMLError(Exception):
    """Like pynvml's: every failure is an NVMLError carrying the NVML return code in .value."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


class Err:
    """A device field that raises NVMLError(code) when read."""

    def __init__(self, code: int) -> None:
        self.code = code


def device(index: int, **overrides: Any) -> dict[str, Any]:
    values = {
        "uuid": f"GPU-1234abcd-0000-0000-0000-00000000000{index}",
        "name": "NVIDIA GeForce RTX 4090",
        "memory": SimpleNamespace(total=24564 * MIB, used=1024 * MIB, free=23540 * MIB),
        "utilization": SimpleNamespace(gpu=37, memory=12),
        "temperature_v": 61,
        "temperature": 60,
        "power_mw": 215345,
        "pci": SimpleNamespace(busId=f"00000000:0{index + 1}:00.0"),
    }
    values.update(overrides)
    return values


class FakeNvml:
    """The slice of pynvml that emp.agent.gpu calls, driven by plain dicts."""

    NVMLError = NVMLError

    def __init__(
        self,
        devices: list[dict[str, Any]],
        *,
        init_error: BaseException | None = None,
        driver: Any = "550.54.15",
        cuda: Any = 12040,
        count_error: BaseException | None = None,
    ) -> None:
        self.devices = devices
        self.init_error = init_error
        self.count_error = count_error
        self.driver = driver
        self.cuda = cuda
        self.inits = 0
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.inits += 1

    def nvmlShutdown(self) -> None:
        if self.inits <= self.shutdowns:
            raise NVMLError(UNINITIALIZED)  # what the real library does before a successful init
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> Any:
        return self._get({"driver": self.driver}, "driver")

    def nvmlSystemGetCudaDriverVersion(self) -> Any:
        return self._get({"cuda": self.cuda}, "cuda")

    def nvmlDeviceGetCount(self) -> int:
        if self.count_error is not None:
            raise self.count_error
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict[str, Any]:
        handle = self.devices[index]
        if "handle" in handle:
            self._get(handle, "handle")
        return handle

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> dict[str, Any]:
        for handle in self.devices:
            if handle["uuid"] == uuid:
                if "handle" in handle:
                    self._get(handle, "handle")
                return handle
        raise NVMLError(6)  # NotFound

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> Any:
        return self._get(h, "uuid")

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> Any:
        return self._get(h, "name")

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:
        return self._get(h, "memory")

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:
        return self._get(h, "utilization")

    def nvmlDeviceGetTemperatureV(self, h: dict[str, Any], sensor: int) -> Any:
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self._get(h, "temperature_v")

    def nvmlDeviceGetTemperature(self, h: dict[str, Any], sensor: int) -> Any:
        assert sensor == 0
        return self._get(h, "temperature")

    def nvmlDeviceGetPowerUsage(self, h: dict[str, Any]) -> Any:
        return self._get(h, "power_mw")

    def nvmlDeviceGetPciInfo(self, h: dict[str, Any]) -> Any:
        return self._get(h, "pci")

    @staticmethod
    def _get(values: dict[str, Any], key: str) -> Any:
        value = values[key]
        if isinstance(value, Err):
            raise NVMLError(value.code)
        return value


# -- NVML ----------------------------------------------------------------------------------------------


def test_detect_gpus_on_this_machine_never_raises() -> None:
    report = detect_gpus()
    if report.source == "none":  # the usual case here: no NVIDIA driver on the test box
        assert report.gpus == []
        assert report.error is not None and report.error.startswith("no NVIDIA GPU: ")
    else:
        assert report.source == "nvml" and report.gpus and report.error is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (LIBRARY_NOT_FOUND, "libnvidia-ml.so.1"),
        (DRIVER_NOT_LOADED, "kernel driver is not loaded"),
        (LIB_RM_MISMATCH, "versions differ"),
        (UNKNOWN, "NVML could not start"),
    ],
)
def test_init_failure_is_a_clear_no_gpu_result_and_shutdown_is_not_called(code: int, words: str) -> None:
    nvml = FakeNvml([device(0)], init_error=NVMLError(code))
    report = detect_gpus(nvml)
    assert report.source == "none"
    assert report.gpus == []
    assert report.error is not None
    assert report.error.startswith("no NVIDIA GPU: ") and words in report.error
    assert nvml.shutdowns == 0  # nvmlShutdown only after a successful init


def test_a_library_that_cannot_even_load_is_no_gpu_too() -> None:
    nvml = FakeNvml([], init_error=OSError("libc trouble"))
    report = detect_gpus(nvml)
    assert report.source == "none"
    assert report.error == "no NVIDIA GPU: NVML could not be loaded: OSError: libc trouble"


def test_readings_and_units() -> None:
    nvml = FakeNvml(
        [device(0), device(1, name=b"NVIDIA A100-SXM4-80GB", memory=SimpleNamespace(total=81920 * MIB, used=0))]
    )
    report = detect_gpus(nvml)
    assert report.source == "nvml"
    assert report.error is None and report.healthy
    assert report.driver_version == "550.54.15"
    assert report.cuda_version == "12.4"  # 12040
    first, second = report.gpus
    assert first == GpuInfo(
        index=0,
        uuid="GPU-1234abcd-0000-0000-0000-000000000000",
        name="NVIDIA GeForce RTX 4090",
        memory_total_mb=24564,  # bytes -> MiB
        memory_used_mb=1024,
        utilization_pct=37,
        temperature_c=61,  # the non-deprecated TemperatureV call wins
        power_w=215.3,  # milliwatts -> watts
        pci_bus_id="00000000:01:00.0",
    )
    assert first.memory_gb == 24
    assert first.visible_devices == "GPU-1234abcd-0000-0000-0000-000000000000"  # UUID, never the index
    assert second.name == "NVIDIA A100-SXM4-80GB"  # bytes from old bindings decoded
    assert second.memory_gb == 80 and second.index == 1
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_unsupported_metrics_are_none_not_errors() -> None:
    nvml = FakeNvml(
        [
            device(
                0,
                power_mw=Err(NOT_SUPPORTED),
                temperature_v=Err(NOT_SUPPORTED),
                utilization=Err(NOT_SUPPORTED),
                pci=Err(NO_PERMISSION),
            )
        ],
        cuda=Err(FUNCTION_NOT_FOUND),
    )
    report = detect_gpus(nvml)
    (only,) = report.gpus
    assert (only.power_w, only.temperature_c, only.utilization_pct, only.pci_bus_id) == (None, None, None, None)
    assert only.memory_total_mb == 24564
    assert report.cuda_version is None and report.driver_version == "550.54.15"
    assert report.error is None


def test_temperature_falls_back_to_the_older_call_on_older_drivers() -> None:
    report = detect_gpus(FakeNvml([device(0, temperature_v=Err(FUNCTION_NOT_FOUND), temperature=58)]))
    assert report.gpus[0].temperature_c == 58


def test_unified_memory_board_reports_zero_total_memory() -> None:
    report = detect_gpus(FakeNvml([device(0, memory=Err(NOT_SUPPORTED))]))
    (only,) = report.gpus
    assert (only.memory_total_mb, only.memory_used_mb, only.memory_gb) == (0, None, 0)


def test_a_lost_gpu_is_a_health_failure_and_the_others_are_kept() -> None:
    nvml = FakeNvml([device(0), device(1, handle=Err(GPU_IS_LOST))])
    report = detect_gpus(nvml)
    assert [g.index for g in report.gpus] == [0]
    assert report.lost == (1,)
    assert not report.healthy
    assert any("GPU 1" in p for p in report.problems)
    assert report.source == "nvml"


def test_a_gpu_lost_while_reading_a_metric_is_lost_not_a_missing_metric() -> None:
    report = detect_gpus(FakeNvml([device(0, power_mw=Err(GPU_IS_LOST))]))
    assert report.gpus == [] and report.lost == (0,)
    assert report.source == "none"
    assert report.error is not None and report.error.startswith("no NVIDIA GPU: GPU 0: skipped")


def test_gpus_we_may_not_use_are_skipped_with_the_reason() -> None:
    report = detect_gpus(FakeNvml([device(0, handle=Err(NO_PERMISSION))]))
    assert report.source == "none"
    assert report.error is not None and "GPU 0: skipped" in report.error and "NVML error 4" in report.error


def test_driver_without_devices() -> None:
    report = detect_gpus(FakeNvml([]))
    assert report.source == "none"
    assert report.driver_version == "550.54.15"
    assert report.error == "no NVIDIA GPU: the driver reports no devices"


def test_a_failure_after_init_still_shuts_nvml_down() -> None:
    nvml = FakeNvml([device(0)], count_error=NVMLError(UNKNOWN))
    report = detect_gpus(nvml)
    assert report.source == "none"
    assert report.error is not None and "NVML failed while listing GPUs" in report.error
    assert nvml.shutdowns == 1


@pytest.mark.parametrize(("raw", "text"), [(12040, "12.4"), (11080, "11.8"), (13000, "13.0"), (0, None), (None, None)])
def test_cuda_version_text(raw: int | None, text: str | None) -> None:
    assert cuda_version_text(raw) == text


# -- refresh -------------------------------------------------------------------------------------------


def test_refresh_rereads_the_changing_values_by_uuid() -> None:
    devices = [device(0), device(1)]
    nvml = FakeNvml(devices)
    before = detect_gpus(nvml)
    devices.reverse()  # NVML order may change; refresh finds GPUs by UUID
    devices[0].update(utilization=SimpleNamespace(gpu=99, memory=50), power_mw=300000, temperature_v=80)
    after = refresh(before, nvml)
    assert [g.uuid for g in after.gpus] == [g.uuid for g in before.gpus]
    assert after.gpus[0] == before.gpus[0]
    assert (after.gpus[1].utilization_pct, after.gpus[1].power_w, after.gpus[1].temperature_c) == (99, 300.0, 80)
    assert after.gpus[1].name == before.gpus[1].name
    assert nvml.shutdowns == 2


def test_refresh_of_fake_gpus_changes_nothing() -> None:
    report = fake_gpus(2)
    assert refresh(report, FakeNvml([], init_error=NVMLError(LIBRARY_NOT_FOUND))) is report


def test_refresh_when_nvml_went_away_blanks_the_readings() -> None:
    nvml = FakeNvml([device(0)])
    report = detect_gpus(nvml)
    nvml.init_error = NVMLError(DRIVER_NOT_LOADED)
    after = refresh(report, nvml)
    assert after.error is not None and after.error.startswith("GPU readings failed: ")
    (only,) = after.gpus
    assert (only.memory_used_mb, only.utilization_pct, only.temperature_c, only.power_w) == (None, None, None, None)
    assert only.memory_total_mb == 24564


def test_refresh_marks_a_gpu_that_fell_off_the_bus() -> None:
    devices = [device(0), device(1)]
    nvml = FakeNvml(devices)
    report = detect_gpus(nvml)
    devices[1]["handle"] = Err(GPU_IS_LOST)
    after = refresh(report, nvml)
    assert after.lost == (1,)
    assert not after.healthy
    assert after.gpus[1].utilization_pct is None and after.gpus[0].utilization_pct == 37


# -- fake GPUs and resolve_gpus ------------------------------------------------------------------------


def test_fake_gpus() -> None:
    report = fake_gpus(2, model="NVIDIA L4 (fake)", memory_gb=23)
    assert report.source == "fake" and report.error is None
    assert [g.index for g in report.gpus] == [0, 1]
    assert all(g.fake and g.name == "NVIDIA L4 (fake)" and g.memory_gb == 23 for g in report.gpus)
    assert report.gpus[1].visible_devices == "1"
    assert len({g.uuid for g in report.gpus}) == 2
    data = report.to_json()
    assert data["source"] == "fake"
    assert data["gpus"][0]["memory_gb"] == 23 and data["gpus"][0]["fake"] is True


@pytest.mark.parametrize(("count", "memory"), [(-1, 24), (1, 0)])
def test_fake_gpus_refuses_nonsense(count: int, memory: int) -> None:
    with pytest.raises(ValueError):
        fake_gpus(count, memory_gb=memory)


@pytest.fixture
def nvml_detection(monkeypatch: pytest.MonkeyPatch) -> GpuReport:
    """resolve_gpus' NVML path, replaced by a fixed report (no driver needed to tell it was taken)."""
    detected = GpuReport(gpus=[], driver_version=None, cuda_version=None, source="none", error="no NVIDIA GPU: test")
    monkeypatch.setattr(gpu, "detect_gpus", lambda: detected)
    return detected


@pytest.mark.parametrize(
    ("spec", "environ", "count"),
    [
        (2, {}, 2),
        ("3", {"EMP_GPUS": "1"}, 3),  # --gpus wins over the environment
        (0, {}, 0),
        ("auto", {"EMP_GPUS": "2"}, 2),
        (None, {"EMP_GPUS": " 4 "}, 4),
        (None, {"TEST_MODE": "true", "NUM_GPUS": "3"}, 3),  # the original's mock-GPU mode
        (None, {"TEST_MODE": "1"}, 1),  # its NUM_GPUS default
        (None, {"EMP_GPUS": "2", "TEST_MODE": "true", "NUM_GPUS": "5"}, 2),
    ],
)
def test_declared_fake_gpus(
    spec: str | int | None, environ: dict[str, str], count: int, nvml_detection: GpuReport
) -> None:
    report = resolve_gpus(spec, environ=environ)
    assert report.source == "fake"
    assert len(report.gpus) == count


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"NUM_GPUS": "2"},  # without TEST_MODE the count is NVML's, not a hard-coded one
        {"EMP_GPUS": "auto", "TEST_MODE": "true", "NUM_GPUS": "2"},
        {"TEST_MODE": "false", "NUM_GPUS": "2"},
    ],
)
def test_auto_detects_with_nvml(environ: dict[str, str], nvml_detection: GpuReport) -> None:
    assert resolve_gpus("auto", environ=environ) is nvml_detection
    assert resolve_gpus(None, environ=environ) is nvml_detection


def test_fake_gpu_model_and_memory_precedence() -> None:
    legacy = {"GPU_MODEL": "RTX 3090", "GPU_MEMORY_GB": "16"}
    report = resolve_gpus(1, environ=legacy)
    assert (report.gpus[0].name, report.gpus[0].memory_gb) == ("RTX 3090", 16)
    both = {**legacy, "EMP_GPU_MODEL": "L40S", "EMP_GPU_MEMORY_GB": "48"}
    report = resolve_gpus(1, environ=both)
    assert (report.gpus[0].name, report.gpus[0].memory_gb) == ("L40S", 48)
    report = resolve_gpus(1, model="H100", memory_gb=80, environ=both)
    assert (report.gpus[0].name, report.gpus[0].memory_gb) == ("H100", 80)
    report = resolve_gpus(1, environ={})
    assert (report.gpus[0].name, report.gpus[0].memory_gb) == ("NVIDIA GeForce RTX 4090 (fake)", 24)


@pytest.mark.parametrize(
    ("spec", "environ", "named"),
    [
        ("two", {}, "--gpus"),
        ("-1", {}, "--gpus"),
        (-1, {}, "--gpus"),
        (True, {}, "--gpus"),
        (None, {"EMP_GPUS": "two"}, "EMP_GPUS"),
        (None, {"EMP_GPUS": "1.5"}, "EMP_GPUS"),
        (None, {"TEST_MODE": "yes", "NUM_GPUS": "many"}, "NUM_GPUS"),
        (1, {"EMP_GPU_MEMORY_GB": "lots"}, "EMP_GPU_MEMORY_GB"),
        (1, {"GPU_MEMORY_GB": "0"}, "GPU_MEMORY_GB"),
    ],
)
def test_bad_values_name_the_option_or_variable(spec: Any, environ: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        resolve_gpus(spec, environ=environ)


def test_bad_memory_argument() -> None:
    with pytest.raises(ValueError, match="at least 1 GB"):
        resolve_gpus(1, memory_gb=0, environ={})
