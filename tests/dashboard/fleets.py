"""Fixed fleets for the renderer's golden tests: built by hand, with a fixed clock."""

from __future__ import annotations

from emp.dashboard.state import FleetState, JobView, WorkerView
from emp.dashboard.watch_model import Badge, Ended, FlowRow, FlowStep, Gpu, MachineCard, QueueRow, WatchData

NOW = 1_700_000_000_000


def empty() -> WatchData:
    counts = dict.fromkeys(
        ("pending", "scheduled", "assigned", "in_progress", "completed", "failed", "cancelled", "unworkable"), 0
    )
    return WatchData(
        "emp",
        "redis://127.0.0.1:7000/0",
        now_ms=NOW,
        counts=counts,
        completed_per_min=[0] * 10,
        failed_per_min=[0] * 10,
    )


def busy(offline: bool = False) -> WatchData:
    data = empty()
    fleet = FleetState()
    data.fleet = fleet
    data.counts.update(pending=1234, scheduled=3, assigned=1, in_progress=3, completed=880, failed=12, unworkable=7)
    data.completed_per_min = [40, 52, 61, 70, 66, 80, 95, 90, 101, 88]
    data.failed_per_min = [1, 0, 2, 1, 0, 0, 3, 1, 0, 2]
    gpus = (Gpu(0, "RTX 4090", 97, 20480, 24564, 71), Gpu(1, "RTX 4090", 12, 2048, 24564, 55))
    data.machines = {
        "box-a": MachineCard(
            "box-a", "ready", "vast.ai · Linux 6.8", 3725.0, gpus, (Badge("comfyui", "active"), Badge("ollama", "idle"))
        ),
        "box-b": MachineCard(
            "box-b",
            "starting",
            "salad · Linux 6.1",
            42.0,
            (Gpu(0, "A6000", 0, 512, 49140, 40),),
            (Badge("comfyui", "starting"),),
        ),
        "cpu-1": MachineCard("cpu-1", "live", reported=False),
    }
    if offline:
        data.machines["box-c"] = MachineCard(
            "box-c", "offline", "vast.ai · Linux 6.8", None, (Gpu(0, "RTX 3090", None, None, 24576, None),)
        )
        fleet.workers["box-c-0"] = WorkerView("box-c-0", "offline", machine="box-c", services=("comfyui",))
    workers = [
        WorkerView("box-a-0", "busy", "job-0001", "box-a", ("comfyui",), 410, 3),
        WorkerView("box-a-1", "busy", "job-0002", "box-a", ("comfyui",), 388, 5),
        WorkerView("box-b-0", "paused", "", "box-b", ("comfyui",)),
        WorkerView("cpu-1-w", "busy", "job-0003", "cpu-1", ("simulation",), 82, 4),
        WorkerView("cpu-1-x", "busy", "job-0004", "cpu-1", ("simulation",), 0, 0),
    ]
    for w in workers:
        fleet.workers[w.id] = w
    fleet.jobs["job-0001"] = JobView(
        "job-0001", "comfyui", 50, "in_progress", 60.0, "box-a-0", 1, started_ms=NOW - 12_000
    )
    fleet.jobs["job-0002"] = JobView(
        "job-0002", "comfyui", 90, "in_progress", 5.0, "box-a-1", 2, started_ms=NOW - 3_500
    )
    fleet.jobs["job-0003"] = JobView(
        "job-0003", "simulation", 50, "in_progress", 99.0, "cpu-1-w", 1, started_ms=NOW - 95_000
    )
    fleet.jobs["job-0004"] = JobView("job-0004", "simulation", 50, "assigned", 0.0, "cpu-1-x", 1, started_ms=NOW - 200)
    data.queues = [
        QueueRow(
            "comfyui",
            "s1",
            '{"hardware.gpu_memory_gb":80}',
            0,
            7,
            None,
            "no live worker has hardware.gpu_memory_gb >= 80",
        ),
        QueueRow("comfyui", "s0", "", 1200, 0, 184.0),
        QueueRow("simulation", "s2", '{"pool":"fast"}', 34, 0, 9.5),
    ]
    data.queue_rows_total = 3
    data.recent = [
        Ended("job-0990", "completed", "comfyui", 14.2, "", NOW - 2_000),
        Ended("job-0989", "failed", "comfyui", 3.1, "resource_exhausted", NOW - 9_000),
        Ended("job-0988", "completed", "simulation", 61.0, "", NOW - 70_000),
    ]
    fleet.log.append("machine box-a ready in 41.20 s")
    return data


def with_flows(offline: bool = False) -> WatchData:
    """The busy fleet running two flows: a chain of 3 half done, and a fan-out of 25 with a fan-in
    (20 steps listed, the steps not ended first), plus one more flow not read (flows_total 3)."""
    data = busy(offline)
    chain = FlowRow(
        "render-42",
        NOW - 95_000,
        2,
        3,
        (
            FlowStep("gen", "completed", 100.0),
            FlowStep("up", "in_progress", 45.0, ("gen",)),
            FlowStep("notify", "waiting", None, ("up",)),
        ),
    )
    fan_steps = [FlowStep("root", "completed", 100.0)]
    fan_steps += [
        FlowStep(f"v{i:02d}", "in_progress" if i < 2 else "pending", 30.0 if i < 2 else None, ("root",))
        for i in range(18)
    ]
    fan_steps.append(FlowStep("pick", "waiting", None, tuple(f"v{i:02d}" for i in range(24))))
    fan = FlowRow("gallery-7", NOW - 30_000, 25, 26, tuple(fan_steps))
    data.flows = [chain, fan]
    data.flows_total = 3
    return data
