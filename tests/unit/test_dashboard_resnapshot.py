"""emp.dashboard.state.apply_snapshot as a re-snapshot uses it: the state becomes what Redis holds."""

from __future__ import annotations

from emp.dashboard.state import FleetState, JobView, ServiceView, WorkerView, apply_snapshot
from emp.model.snapshot import ServiceQueue, Snapshot, SnapshotJob, SnapshotWorker


def stale_state() -> FleetState:
    state = FleetState()
    state.track(JobView("lost", "comfyui", status="in_progress", worker="w1"))
    state.track(JobView("kept", "comfyui", status="pending"))
    state.workers["w1"] = WorkerView("w1", status="busy", job="lost")
    state.services["comfyui"] = ServiceView("comfyui", pending=4, signatures=1)
    return state


def test_jobs_redis_lost_go_and_unlisted_workers_and_services_are_emptied() -> None:
    state = stale_state()
    snap = Snapshot(
        stream_id="9-0",
        services={"simulation": ServiceQueue(pending=1, signatures=1)},
        workers=(SnapshotWorker("w2", status="idle"),),
    )
    apply_snapshot(state, snap, [SnapshotJob("kept", status="pending")], gone=["lost"], every_worker=True)
    assert {j.id: j.status for j in state.jobs.values()} == {"kept": "pending"}
    assert (state.workers["w1"].status, state.workers["w1"].job) == ("offline", "")
    assert state.workers["w2"].status == "idle"
    comfyui = state.services["comfyui"]
    assert (comfyui.pending, comfyui.unworkable, comfyui.signatures) == (0, 0, 0)
    assert state.services["simulation"].pending == 1


def test_a_capped_worker_list_leaves_unlisted_workers_alone() -> None:
    state = stale_state()
    apply_snapshot(state, Snapshot(workers=(SnapshotWorker("w2"),)))
    assert state.workers["w1"].status == "busy" and set(state.jobs) == {"lost", "kept"}


def test_under_a_limit_active_jobs_join_before_waiting_ones_and_waiting_before_ended() -> None:
    state = FleetState(new_job_limit=2)
    snap = Snapshot(
        active_jobs=(SnapshotJob("run", status="in_progress"),),
        recent=(SnapshotJob("done", status="completed"),),
    )
    apply_snapshot(state, snap, [SnapshotJob("wait", status="pending"), SnapshotJob("run", status="pending")])
    assert {j.id: j.status for j in state.jobs.values()} == {"run": "in_progress", "wait": "pending"}
