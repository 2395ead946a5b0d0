"""emp.demo.view: state updates from events and the pure renderers, read as plain text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType

from emp.dashboard.render import progress_bar
from emp.dashboard.state import JobView, apply_event, apply_snapshot
from emp.demo.view import DemoState, Expected, progress_line, render_demo, render_summary
from emp.model.events import Event
from emp.model.snapshot import Snapshot, SnapshotJob


def text_of(renderable: RenderableType, width: int = 100) -> str:
    console = Console(width=width, color_system=None, record=True, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def make_state() -> DemoState:
    state = DemoState("demo1a2b3c", "redis://127.0.0.1:6390/0", elapsed_s=4.25, deadline_s=60)
    state.add_job(Expected("sim-01", "simulation, priority 90", "simulation", 90, "completed"))
    state.add_job(Expected("flaky", "fails once", "simulation", 85, "completed", attempt=2))
    state.add_job(Expected("bad-input", "malformed", "simulation", 85, "failed"))
    state.add_job(Expected("huge-80g", "needs 80 GB", "comfyui-sim", 40, "unworkable"))
    state.add_job(Expected("big-40g-1", "needs 40 GB", "comfyui-sim", 65, "completed"))
    return state


def ev(etype: str, **fields: Any) -> Event:
    return Event(id="1-0", type=etype, **fields)


def feed(state: DemoState, *events: Event) -> None:
    for ev in events:
        apply_event(state.fleet, ev)


def test_events_move_jobs_through_their_states() -> None:
    state = make_state()
    feed(
        state,
        ev("worker_registered", worker="demo-a6000"),
        ev("job_submitted", job="sim-01"),
        ev("job_assigned", job="sim-01", worker="demo-a6000", attempt=1),
        ev("job_started", job="sim-01", worker="demo-a6000", attempt=1),
        ev("job_progress", job="sim-01", worker="demo-a6000", attempt=1, data={"progress": 40, "message": "x"}),
    )
    job = state.jobs["sim-01"]
    assert (job.status, job.progress, job.worker, job.attempt) == ("in_progress", 40.0, "demo-a6000", 1)
    assert state.workers["demo-a6000"].status == "busy" and state.workers["demo-a6000"].job == "sim-01"
    feed(state, ev("job_completed", job="sim-01", worker="demo-a6000", attempt=1))
    assert job.status == "completed" and job.progress == 100.0 and state.reached(job)
    assert state.workers["demo-a6000"].status == "idle" and state.workers["demo-a6000"].completed == 1


def test_transient_job_is_reached_only_on_attempt_two() -> None:
    state = make_state()
    feed(
        state,
        ev("job_assigned", job="flaky", worker="w", attempt=1),
        ev("job_retry", job="flaky", worker="w", attempt=1, data={"failure_class": "transient", "delay_ms": 700}),
    )
    flaky = state.jobs["flaky"]
    assert flaky.status == "scheduled" and flaky.failure_class == "transient"
    assert any("retry in 0.7 s" in line for line in state.log)
    feed(state, ev("job_requeued", job="flaky", data={"from": "scheduled"}))
    assert flaky.status == "pending"
    feed(
        state,
        ev("job_assigned", job="flaky", worker="w", attempt=2),
        ev("job_completed", job="flaky", worker="w", attempt=2),
    )
    assert flaky.status == "completed" and flaky.attempt == 2 and state.reached(flaky)

    # Completed on the first attempt is not what the demo expects of it.
    expected = Expected("f2", "", "simulation", 50, "completed", attempt=2)
    assert not expected.reached_by(JobView("f2", status="completed", attempt=1))


def test_unworkable_revive_and_foreign_events() -> None:
    state = make_state()
    feed(state, ev("job_unworkable", job="big-40g-1"))
    assert state.jobs["big-40g-1"].status == "unworkable"
    feed(state, ev("job_requeued", job="big-40g-1", data={"from": "unworkable"}))
    assert state.jobs["big-40g-1"].status == "pending"
    assert any("revived" in line for line in state.log)
    # Events of jobs the demo does not follow and unknown event types change nothing.
    feed(state, ev("job_completed", job="someone-else"), ev("nothing_known"))
    assert "someone-else" not in state.jobs
    feed(state, ev("worker_offline", worker="demo-cpu"))
    assert state.workers["demo-cpu"].status == "offline"


def finish_all(state: DemoState) -> None:
    feed(
        state,
        ev("job_completed", job="sim-01", worker="demo-rtx4090-0", attempt=1),
        ev("job_completed", job="flaky", worker="demo-cpu-1", attempt=2),
        ev(
            "job_failed",
            job="bad-input",
            worker="demo-cpu-0",
            attempt=1,
            data={"failure_class": "malformed", "error": "simulated malformed failure"},
        ),
        ev("job_unworkable", job="huge-80g"),
        ev("job_completed", job="big-40g-1", worker="demo-a6000-0", attempt=1),
    )


def test_render_demo_shows_every_job_and_the_counts() -> None:
    state = make_state()
    feed(
        state,
        ev("job_assigned", job="sim-01", worker="demo-rtx4090-0", attempt=1),
        ev("job_progress", job="sim-01", worker="demo-rtx4090-0", attempt=1, data={"progress": 50}),
        ev("job_unworkable", job="huge-80g"),
        ev("job_failed", job="bad-input", worker="demo-cpu-0", attempt=1, data={"failure_class": "malformed"}),
    )
    text = text_of(render_demo(state))
    assert "emp demo · namespace demo1a2b3c · redis redis://127.0.0.1:6390/0 ·   4.2 s / 60 s" in text
    lines = text.splitlines()
    sim = next(line for line in lines if line.startswith("sim-01"))
    assert "simulation" in sim and "in_progress" in sim and "█████░░░░░  50%" in sim and "demo-rtx4090-0" in sim
    huge = next(line for line in lines if line.startswith("huge-80g"))
    assert "unworkable" in huge and "✓ unworkable" in huge
    assert "→ completed" in next(line for line in lines if line.startswith("flaky"))
    assert "2/5 jobs in their expected state" in text
    assert "in_progress 1" in text and "failed 1" in text and "unworkable 1" in text and "submitted 2" in text
    assert "workers: demo-cpu-0 idle" in text and "demo-rtx4090-0 busy sim-01" in text
    assert "huge-80g unworkable: no live worker matches its requirements" in text
    assert all(len(line) <= 100 for line in lines)


def test_render_demo_with_nothing_yet() -> None:
    text = text_of(render_demo(DemoState("demo0", "redis://x")))
    assert "workers: none registered yet" in text and "0/0 jobs" in text


def test_summary_all_reached() -> None:
    state = make_state()
    finish_all(state)
    state.elapsed_s = 12.34
    assert state.all_reached() and state.mismatches() == []
    text = text_of(render_summary(state))
    assert "jobs per status" in text and "expected vs actual" in text
    counts = {line.split()[0]: line.split()[1] for line in text.splitlines() if line.split()[:1] in (["completed"],)}
    assert counts == {"completed": "3"}
    assert re.search(r"^ok\s+flaky\s+completed \(att 2\)\s+completed \(att 2\)\s+fails once", text, re.M), text
    assert "MISMATCH" not in text
    assert "all 5 jobs reached their expected state in 12.3 s" in text


def test_summary_lists_mismatches() -> None:
    state = make_state()
    finish_all(state)
    feed(state, ev("job_requeued", job="huge-80g", data={"from": "unworkable"}))
    state.elapsed_s = 60.0
    assert state.mismatches() == ["huge-80g: expected unworkable, got pending"]
    text = text_of(render_summary(state))
    huge = next(line for line in text.splitlines() if "huge-80g" in line)
    assert re.match(r"MISMATCH\s+huge-80g\s+unworkable\s+pending\s+needs 80 GB", huge), huge
    assert "1 of 5 jobs did not reach their expected state (60.0 s)" in text


def test_summary_keeps_the_verdict_on_a_narrow_console() -> None:
    state = make_state()
    finish_all(state)
    state.jobs["flaky"].attempt = 1
    for width in (60, 80):
        text = text_of(render_summary(state), width=width)
        flaky = next(line for line in text.splitlines() if "flaky" in line)
        assert re.match(r"MISMATCH\s+flaky\s+completed \(att 2\)\s+completed \(att 1\)", flaky), (width, text)
    assert "what" not in text_of(render_summary(state), width=56)
    assert "what" in text_of(render_summary(state), width=80)


def test_progress_line_and_bar() -> None:
    state = make_state()
    finish_all(state)
    state.elapsed_s = 3.0
    assert progress_line(state) == ("[   3.0s] 5/5 in expected state · completed 3 · failed 1 · unworkable 1")
    assert progress_bar(0) == "░░░░░░░░░░   0%"
    assert progress_bar(100) == "██████████ 100%"
    assert progress_bar(150) == "██████████ 100%"


def test_snapshot_resets_job_and_worker_state() -> None:
    state = make_state()
    snap = Snapshot.from_reply(
        {
            "active_jobs": [
                {"id": "sim-01", "status": "in_progress", "attempt": "1", "worker_id": "w1", "progress": "30"}
            ],
            "recent": [{"id": "bad-input", "status": "failed", "attempt": "1", "failure_class": "malformed"}],
            "workers": [{"id": "w1", "status": "busy", "job": "sim-01", "completed": 4, "failed": 0}],
        }
    )
    unlisted = [SnapshotJob("huge-80g", status="unworkable"), SnapshotJob("flaky", status="completed", attempt=2)]
    apply_snapshot(state.fleet, snap, unlisted)
    jobs = state.jobs
    assert jobs["sim-01"].status == "in_progress" and jobs["sim-01"].progress == 30.0
    assert state.reached(jobs["bad-input"]) and state.reached(jobs["huge-80g"]) and state.reached(jobs["flaky"])
    assert jobs["big-40g-1"].status == "submitted"
    assert state.workers["w1"].completed == 4 and state.workers["w1"].job == "sim-01"


def test_job_submitted_from_elsewhere_is_shown_but_not_judged() -> None:
    state = make_state()
    finish_all(state)
    feed(
        state,
        ev("job_submitted", job="mine", data={"service": "simulation", "priority": 70}),
        ev("job_assigned", job="mine", worker="demo-cpu-0", attempt=1),
    )
    mine = state.jobs["mine"]
    assert (mine.service, mine.priority, mine.status) == ("simulation", 70, "assigned")
    assert "mine" not in state.expected
    assert state.all_reached() and state.mismatches() == [] and state.reached_count() == 5
    live = text_of(render_demo(state))
    assert re.search(r"^mine\s+simulation\s+70\s+assigned\s+\S+\s+0%\s+demo-cpu-0\s+1\s+-\s*$", live, re.M), live
    assert "5/5 jobs in their expected state" in live
    summary = text_of(render_summary(state))
    assert re.search(r"^\s+mine\s+-\s+assigned\s+submitted from elsewhere", summary, re.M), summary
    assert "all 5 jobs reached their expected state" in summary


def test_demo_expectations_follow_the_fleet() -> None:
    """The demo's expectations come from the matching rules: with only the 24 GB kind, the jobs
    that need 40 GB or the a6000's model are expected to end unworkable."""
    from emp.demo.fleet import demo_fleet, demo_jobs, expected_rows
    from emp.model.job import parse_submission

    jobs = demo_jobs(1_700_000_000_000)
    wires = [parse_submission({"id": j.id, **j.submission}).to_wire() for j in jobs]
    full = {r.id: r.text() for r in expected_rows(jobs, wires, demo_fleet(3))}
    assert full["huge-80g"] == "unworkable" and full["bad-input"] == "failed"
    assert full["flaky"] == "completed (att 2)" and full["big-40g-1"] == "completed"
    assert sum(1 for e in full.values() if e == "unworkable") == 1
    only_4090 = {r.id: r.text() for r in expected_rows(jobs, wires, demo_fleet(1))}
    assert {k for k, v in only_4090.items() if v == "unworkable"} == {"huge-80g", "big-40g-1", "big-40g-2", "img-sd35"}
    assert [w.worker_id for w in demo_fleet(4) if not w.on_machine] == [
        "demo-rtx4090",
        "demo-a6000",
        "demo-cpu",
        "demo-rtx4090-2",
    ]


def test_demo_comfyui_jobs_need_the_comfyui_worker() -> None:
    """Every demo runs the GPU box (its stand-in ComfyUI ships in the package): its ComfyUI jobs
    are expected to complete (or fail, the invalid one) on the box's workers, and a fleet without
    them would leave those jobs unworkable."""
    from emp.demo.fleet import demo_fleet, demo_jobs, expected_rows, worker_argv
    from emp.model.job import parse_submission

    jobs = demo_jobs(1_700_000_000_000)
    assert [j.id for j in jobs if j.service == "comfyui"] == ["comfy-txt2img", "comfy-invert", "comfy-invalid"]
    assert all("workflow" in j.submission["payload"] for j in jobs if j.service == "comfyui")
    wires = [parse_submission({"id": j.id, **j.submission}).to_wire() for j in jobs]
    fleet = demo_fleet(3)
    assert [w.name for w in fleet if w.on_machine] == ["gpu0", "gpu1"]
    rows = {r.id: r.text() for r in expected_rows(jobs, wires, fleet)}
    assert (rows["comfy-txt2img"], rows["comfy-invalid"]) == ("completed", "failed")
    without_box = [w for w in fleet if not w.on_machine]
    without = {r.id: r.text() for r in expected_rows(jobs, wires, without_box)}
    assert without["comfy-txt2img"] == "unworkable"
    argv = worker_argv(fleet[0], "ns", output_url="/tmp/o")
    assert argv[argv.index("--connector") + 1] == "simulation"
    assert argv[argv.index("--output-url") + 1] == "/tmp/o"


def test_demo_machine_toml_loads_as_the_agent_reads_it(tmp_path: Path) -> None:
    from emp.agent.config import load_machine_config
    from emp.demo.fleet import machine_toml

    f = tmp_path / "machine.toml"
    f.write_text(
        machine_toml(machine_id="box", gpus=2, base_port=20000, step_ms=20, comfyui_out=tmp_path, root=tmp_path)
    )
    cfg = load_machine_config(f, environ={})
    [comfy] = cfg.services
    assert (cfg.machine_id, cfg.gpus, cfg.health_port, comfy.base_port) == ("box", "2", 0, 20000)
    assert comfy.command[:3] == ("{python}", "-m", "emp.stand_ins.comfyui") and comfy.cwd == tmp_path
