"""Pure helpers of the machine agent."""

from __future__ import annotations

from emp.agent.gpu import GpuReport
from emp.agent.machine import newly_lost


def report(*lost: int) -> GpuReport:
    return GpuReport(gpus=[], driver_version=None, cuda_version=None, source="nvml", lost=lost)


def test_a_lost_gpu_is_reported_once() -> None:
    assert newly_lost(report(), report(1)) == [1]
    assert newly_lost(report(1), report(1)) == [], "already reported"
    assert newly_lost(report(1), report(0, 1, 3)) == [0, 3]
    assert newly_lost(report(0), report()) == []
