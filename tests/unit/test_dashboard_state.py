"""emp.dashboard.state and render: the fold of events and snapshots into fleet state, and its tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from emp.dashboard.render import Column, jobs_table, workers_line
from emp.dashboard.state import FleetState, JobView, apply_event, apply_snapshot, machine_line
from emp.model.events import Event
from emp.model.snapshot import ServiceQueue, Snapshot, SnapshotJob


def ev(etype: str, **fields: Any) -> Event:
    return Event(id="1-0", type=etype, **fields)


def text_of(renderable: RenderableType, width: int = 100) -> str:
    console = Console(width=width, color_system=None, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def test_submitted_jobs_join_up_to_the_limit_and_others_are_ignored() -> None:
    state = FleetState(new_job_limit=2)
    state.track(JobView("mine", "simulation", 50))
    for job_id in ("a", "b", "c"):
        apply_event(state, ev("job_submitted", job=job_id, data={"service": "comfyui", "priority": 70}))
    apply_event(state, ev("job_assigned", job="d", worker="w1", attempt=1))  # never submitted while we watched
    assert list(state.jobs) == ["mine", "a", "b"] and state.joined == 2
    assert (state.jobs["a"].service, state.jobs["a"].priority, state.jobs["a"].status) == ("comfyui", 70, "pending")
    unlimited = FleetState()
    for i in range(50):
        apply_event(unlimited, ev("job_submitted", job=f"j{i}"))
    assert len(unlimited.jobs) == 50


def test_machine_and_service_events() -> None:
    state = FleetState()
    apply_event(state, ev("machine_startup", machine="box", data={}))
    assert state.machines["box"].status == "starting" and not state.log  # a start is not worth a line
    apply_event(state, ev("machine_ready", machine="box", data={"startup_s": 3.2}))
    assert state.machines["box"].status == "ready" and state.machines["box"].startup_s == 3.2
    assert list(state.log) == ["machine box ready in 3.20 s"]
    shutdown = ev("machine_shutdown", machine="box", data={"reason": "SIGTERM"})
    apply_event(state, shutdown)
    assert state.machines["box"].status == "offline" and machine_line(shutdown) == "machine box: shutdown (SIGTERM)"
    apply_event(state, ev("service_status", data={"id": "box:comfyui:0", "connector": "comfyui", "status": "down"}))
    assert state.services["comfyui"].instances == {"box:comfyui:0": "down"}
    apply_event(state, ev("worker_registered", worker="w1", data={"machine_id": "box"}))
    assert state.workers["w1"].machine == "box" and state.workers["w1"].status == "idle"


def test_snapshot_replaces_jobs_workers_and_queues() -> None:
    state = FleetState(new_job_limit=1)
    state.track(JobView("p", "simulation", 50, status="in_progress", worker="w1", progress=60))
    snap = Snapshot(
        stream_id="5-0",
        services={"simulation": ServiceQueue(pending=3, unworkable=1, signatures=2)},
        active_jobs=(SnapshotJob("other", service="comfyui", status="in_progress", worker_id="w2", priority=80),),
        recent=(SnapshotJob("gone", status="completed"),),
    )
    # "p" is pending again (its worker died, the lease lapsed): the snapshot does not list it.
    apply_snapshot(state, snap, [SnapshotJob("p", status="pending", attempt=1)])
    assert (state.jobs["p"].status, state.jobs["p"].progress, state.jobs["p"].attempt) == ("pending", 0.0, 1)
    assert state.jobs["other"].priority == 80 and state.jobs["other"].worker == "w2"
    assert "gone" not in state.jobs  # the limit (1) went to the active job: they come first
    queue = state.services["simulation"]
    assert (queue.pending, queue.unworkable, queue.signatures) == (3, 1, 2)


def test_snapshot_from_reply_is_typed_and_tolerant() -> None:
    snap = Snapshot.from_reply(
        {
            "stream_id": "12-3",
            "now": 99,
            "stats": {"submitted": "7"},
            "services": {"simulation": {"pending": 2, "unworkable": 0, "signatures": 1}},
            "done": {"completed": 4},
            "workers": [{"id": "w1", "services": "a,b", "completed": "3", "last_seen": "17"}, {"no": "id"}],
            "active_jobs": {},  # cjson's empty table
            "recent": [{"id": "j", "attempt": "x", "progress": None, "priority": "60"}],
        }
    )
    assert (snap.stream_id, snap.first_id, snap.now_ms, snap.stats) == ("12-3", "0-0", 99, {"submitted": 7})
    assert snap.services == {"simulation": ServiceQueue(2, 0, 1)} and snap.done == {"completed": 4}
    [w] = snap.workers
    assert (w.services, w.completed, w.last_seen) == (("a", "b"), 3, 17)
    assert snap.active_jobs == () and snap.recent == (SnapshotJob("j", priority=60),)
    assert Snapshot.from_reply({}) == Snapshot()


def test_jobs_table_with_a_view_column_and_the_workers_line() -> None:
    jobs = [JobView("j1", "simulation", 90, status="in_progress", progress=50, worker="w1", attempt=1)]
    extra = [Column("note", lambda job: Text(f"note-{job.id}"))]
    text = text_of(jobs_table(jobs, extra))
    row = next(line for line in text.splitlines() if line.startswith("j1"))
    assert "in_progress" in row and "█████░░░░░  50%" in row and "w1" in row and row.rstrip().endswith("note-j1")
    state = FleetState()
    state.track(JobView("j1"))
    apply_event(state, ev("job_assigned", job="j1", worker="w1", attempt=1))
    assert "workers: w1 busy j1 (0 done)" in text_of(workers_line(state.workers.values()))
