"""The supervisor with real child processes (tests/agent/fixtures/child.py): readiness, crashes,
backoff, FATAL, stop with SIGTERM then SIGKILL, process groups, logs. No process survives a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from emp.agent.process_state import ProcState, RestartPolicy
from emp.agent.supervisor import ProcessSpec, ProcessStatus, Supervisor
from tests.agent.helpers import (
    FAST,
    FIXTURES,
    MARK,
    Recorder,
    alive,
    child,
    marked,
    pids_from,
    supervising,
    until,
)
from tests.polling import poll, wait_for

pytestmark = pytest.mark.anyio

S = ProcState


@pytest.fixture
def mark() -> Iterator[str]:
    """A marker put into every child's environment; after the test, no marked process may be alive."""
    value = uuid.uuid4().hex
    yield value
    survivors = marked(value)
    for proc in survivors:
        proc.kill()
    assert not survivors, f"processes outlived the test: {[p.pid for p in survivors]}"


async def test_slow_start_is_running_only_once_ready(tmp_path: Path, mark: str) -> None:
    ready_file = tmp_path / "ready"
    checks = 0

    async def ready_check() -> bool:
        nonlocal checks
        checks += 1
        return ready_file.exists()

    spec = child("slow", mark, ready_check=ready_check)
    spec.ready_poll_s = 0.02
    async with supervising([spec], tmp_path) as (sup, rec):
        await until(lambda: checks >= 3, "three failed readiness checks", 5)
        assert sup.get("slow").state is S.STARTING  # up, but not ready: not running
        ready_file.touch()
        assert await sup.wait_running("slow", 5)
        status = sup.get("slow")
        assert status.pid is not None and alive(status.pid)
        # Uptime counts from the spawn, not from readiness: it covers the whole STARTING phase.
        ((t_starting,), (t_running,)) = rec.times("slow", S.STARTING), rec.times("slow", S.RUNNING)
        assert status.uptime_s is not None and status.uptime_s >= t_running - t_starting > 0
        assert status.restarts == 0 and status.message == ""
        pid = status.pid
        await sup.stop_all()
        assert not alive(pid)
        assert sup.get("slow").state is S.STOPPED and sup.get("slow").pid is None
    assert rec.states("slow") == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]
    assert rec.events[0][1].pid == pid  # the STARTING report carries the pid


async def test_without_a_check_running_after_start_secs(tmp_path: Path, mark: str) -> None:
    async with supervising([child("plain", mark, start_secs=0.3)], tmp_path) as (sup, rec):
        assert await sup.wait_running("plain", 5)
        (t_start,) = rec.times("plain", S.STARTING)
        (t_run,) = rec.times("plain", S.RUNNING)
        # A lower bound only (the supervisor waited start_secs): it holds however slow the machine is.
        assert t_run - t_start >= 0.28


async def test_crash_at_once_backs_off_then_fatal_and_restart_clears_it(tmp_path: Path, mark: str) -> None:
    policy = RestartPolicy(initial_delay_s=0.1, factor=1.5, max_delay_s=1.0, max_quick_failures=3)
    spec = child("crash", mark, "--exit-after", "0", "--code", "3", policy=policy, start_secs=5.0)
    async with supervising([spec], tmp_path) as (sup, rec):
        await until(lambda: S.FATAL in rec.states("crash"), "FATAL", 10)
        assert rec.states("crash") == [S.STARTING, S.BACKOFF] * 2 + [S.STARTING, S.FATAL]
        # The delays follow the policy (0.1 s, then x1.5), and no restart came before its delay.
        messages = rec.messages("crash", S.BACKOFF)
        assert [m.rpartition("; ")[2] for m in messages] == ["restart in 0.1 s", "restart in 0.15 s"], messages
        backoffs = rec.times("crash", S.BACKOFF)
        restarts = rec.times("crash", S.STARTING)[1:]
        waited = [start - backoff for backoff, start in zip(backoffs, restarts, strict=True)]
        for got, want in zip(waited, [0.1, 0.15], strict=True):
            assert got >= want * 0.9, waited
        fatal = sup.get("crash")
        assert fatal.last_exit_code == 3 and fatal.restarts == 2 and fatal.pid is None
        assert "gave up after 3 quick failures" in fatal.message
        assert rec.events[-1][1].message == fatal.message  # FATAL is reported with its reason

        await sup.restart("crash")  # clears FATAL: a fresh streak of 3
        assert sup.get("crash").state is S.STARTING
        await until(lambda: sup.get("crash").state is S.FATAL, "FATAL again", 10)
        await until(lambda: rec.states("crash").count(S.FATAL) == 2, "FATAL reported again", 5)
        assert rec.states("crash")[6:] == [S.STARTING, S.BACKOFF] * 2 + [S.STARTING, S.FATAL]
        assert sup.get("crash").restarts == 5


async def test_crash_after_a_while(tmp_path: Path, mark: str) -> None:
    """Up and ready, then exit 5: restarted after the initial delay each time it had a long run."""
    policy = RestartPolicy(initial_delay_s=0.05, factor=2.0, max_delay_s=1.0, reset_after_s=0.2, max_quick_failures=1)
    spec = child("later", mark, "--exit-after", "0.4", "--code", "5", policy=policy, start_secs=0.05)
    async with supervising([spec], tmp_path) as (sup, rec):
        await until(lambda: rec.states("later").count(S.BACKOFF) >= 3, "three crashes", 10)
        states = rec.states("later")
        assert S.FATAL not in states  # one quick failure would be fatal: these were long runs
        assert states[:6] == [S.STARTING, S.RUNNING, S.BACKOFF, S.STARTING, S.RUNNING, S.BACKOFF]
        # The delay was reset every time: always the initial 0.05 s, never doubled (0.1 s, 0.2 s).
        messages = rec.messages("later", S.BACKOFF)
        assert {m.rpartition("; ")[2] for m in messages} == {"restart in 0.05 s"}, messages
        backoffs = rec.times("later", S.BACKOFF)
        restarts = rec.times("later", S.STARTING)[1:]
        for backoff, start in zip(backoffs, restarts, strict=False):
            assert start - backoff >= 0.04  # and no restart came before it
        assert sup.get("later").last_exit_code == 5
        assert "exited with code 5" in messages[0]


async def test_crash_soon_after_ready_is_quick(tmp_path: Path, mark: str) -> None:
    policy = RestartPolicy(initial_delay_s=0.05, reset_after_s=30.0, max_quick_failures=2)
    spec = child("flaky", mark, "--exit-after", "0.2", "--code", "5", policy=policy, start_secs=0.05)
    async with supervising([spec], tmp_path) as (sup, rec):
        await until(lambda: S.FATAL in rec.states("flaky"), "FATAL", 10)
        assert rec.states("flaky") == [S.STARTING, S.RUNNING, S.BACKOFF, S.STARTING, S.RUNNING, S.FATAL]


async def test_ignoring_sigterm_gets_sigkilled_after_the_stop_timeout(tmp_path: Path, mark: str) -> None:
    pid_file = tmp_path / "pids"
    spec = child("stubborn", mark, "--ignore-term", "--pid-file", str(pid_file), stop_timeout_s=0.5)
    async with supervising([spec], tmp_path) as (sup, rec):
        assert await sup.wait_running("stubborn", 5)
        (pid,) = await pids_from(pid_file)  # written once SIGTERM is ignored
        assert pid == sup.get("stubborn").pid
        started = time.monotonic()
        await sup.stop("stubborn")
        assert time.monotonic() - started >= 0.45  # it waited for the stop timeout (a lower bound only)
        assert not alive(pid)
        status = sup.get("stubborn")
        assert status.state is S.STOPPED and status.last_exit_code == -signal.SIGKILL
        # SIGTERM first (the child said it ignored it), SIGKILL only after the stop timeout.
        await until(lambda: "ignoring SIGTERM" in sup.tail("stubborn", 10), "the ignored SIGTERM in the log")


async def test_a_polite_process_stops_at_once(tmp_path: Path, mark: str) -> None:
    """Stopped by its SIGTERM, without waiting out the (here very long) stop timeout."""
    async with supervising([child("polite", mark, stop_timeout_s=600.0)], tmp_path) as (sup, _):
        assert await sup.wait_running("polite", 5)
        with anyio.fail_after(60):  # a deadline far below the stop timeout, not a speed figure
            await sup.stop("polite")
        assert sup.get("polite").last_exit_code == -signal.SIGTERM


async def test_stop_kills_the_whole_group_and_descendants(tmp_path: Path, mark: str) -> None:
    pid_file = tmp_path / "pids"
    spec = child("parent", mark, "--grandchild", "--grandchild-setsid", "--pid-file", str(pid_file), stop_timeout_s=0.3)
    async with supervising([spec], tmp_path) as (sup, _):
        assert await sup.wait_running("parent", 5)
        pids = await pids_from(pid_file)
        assert len(pids) == 3 and all(alive(p) for p in pids)
        await sup.stop_all()
        assert not [p for p in pids if alive(p)]


async def test_a_crash_takes_its_leftovers_down_before_the_restart(tmp_path: Path, mark: str) -> None:
    pid_file = tmp_path / "pids"
    spec = child("leader", mark, "--grandchild", "--pid-file", str(pid_file))
    async with supervising([spec], tmp_path) as (sup, rec):
        assert await sup.wait_running("leader", 5)
        leader, grandchild = await pids_from(pid_file)
        pid_file.unlink()
        os.kill(leader, signal.SIGKILL)  # the service dies; its grandchild would hold the port
        await until(lambda: not alive(grandchild), "the grandchild killed", 5)
        await until(lambda: rec.states("leader").count(S.RUNNING) == 2, "restarted", 5)
        assert sup.get("leader").restarts == 1
        assert [s.last_exit_code for _, s, _ in rec.events if s.state is S.BACKOFF] == [-signal.SIGKILL]
        await pids_from(pid_file)  # the new run's pids, before the stop


async def test_readiness_timeout_kills_and_retries(tmp_path: Path, mark: str) -> None:
    async def never() -> bool:
        return False

    spec = child("stuck", mark, ready_check=never, ready_timeout_s=0.3, stop_timeout_s=0.5)
    spec.ready_poll_s = 0.02
    async with supervising([spec], tmp_path) as (sup, rec):
        await until(lambda: S.BACKOFF in rec.states("stuck"), "BACKOFF", 5)
        backoff = next(s for _, s, _ in rec.events if s.state is S.BACKOFF)
        assert backoff.message.startswith("not ready within 0.3 s")
        assert backoff.last_exit_code == -signal.SIGTERM
        assert S.RUNNING not in rec.states("stuck")


async def test_a_raising_ready_check_means_not_ready(tmp_path: Path, mark: str) -> None:
    calls = 0

    async def flaky() -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("not listening yet")
        return True

    spec = child("check", mark, ready_check=flaky)
    spec.ready_poll_s = 0.01
    async with supervising([spec], tmp_path) as (sup, _):
        assert await sup.wait_running("check", 5)
        assert calls == 3


async def test_a_missing_executable_is_fatal(tmp_path: Path) -> None:
    spec = ProcessSpec(name="ghost", argv=[str(tmp_path / "no-such-program")], policy=FAST)
    async with supervising([spec], tmp_path) as (sup, rec):
        assert not await sup.wait_running("ghost", 5)  # returns early: FATAL
        status = sup.get("ghost")
        assert status.state is S.FATAL and "could not start" in status.message
        await until(lambda: S.FATAL in rec.states("ghost"), "FATAL reported", 5)  # on_change lags a bit
        assert rec.states("ghost") == [S.STARTING, S.BACKOFF, S.STARTING, S.BACKOFF, S.STARTING, S.FATAL]


async def test_output_goes_to_a_rotating_log_and_tail_reads_across_files(tmp_path: Path, mark: str) -> None:
    spec = child("chatty", mark, "--print-lines", "2000", "--line-bytes", "100")
    async with supervising([spec], tmp_path, log_max_bytes=20_000, log_backups=2) as (sup, _):
        assert await sup.wait_running("chatty", 5)

        async def last_line() -> bool:
            return sup.tail("chatty", 1) == ["line 01999 " + "x" * 88]

        await wait_for(last_line, 5, "the last line in the log")
        log_dir = tmp_path / "logs"
        names = sorted(p.name for p in log_dir.iterdir())
        assert names == ["chatty.log", "chatty.log.1", "chatty.log.2"]
        assert all((log_dir / n).stat().st_size <= 20_000 for n in names)
        lines = sup.tail("chatty", 300)  # ~200 lines per file: this spans a rotation
        assert len(lines) == 300
        assert [int(line.split()[1]) for line in lines] == list(range(1700, 2000))
        assert sup.get("chatty").log_path == log_dir / "chatty.log"


async def test_log_has_stdout_stderr_and_restart_markers(tmp_path: Path, mark: str) -> None:
    spec = child("marks", mark, "--exit-after", "0", "--code", "2", start_secs=5.0)
    async with supervising([spec], tmp_path) as (sup, _):
        await until(lambda: sup.get("marks").state is S.FATAL, "FATAL", 5)
        text = "\n".join(sup.tail("marks", 100))
        assert text.count("emp: started pid") == 3 and text.count("exited with code 2") == 3
        assert "to stderr too" in text and "exiting with 2" in text


async def test_stop_one_leaves_the_others_running(tmp_path: Path, mark: str) -> None:
    async with supervising([child("a", mark), child("b", mark)], tmp_path) as (sup, _):
        assert await sup.wait_running("a", 5) and await sup.wait_running("b", 5)
        await sup.stop("a")
        assert sup.get("a").state is S.STOPPED and sup.get("b").state is S.RUNNING
        assert sup.pids() == {sup.get("b").pid}
        await sup.restart("a")
        assert await sup.wait_running("a", 5)
        assert sup.get("a").restarts == 1
        b_pid = sup.get("b").pid
        await sup.restart("b")  # a running process: stopped gracefully, then started again
        assert sup.get("b").state is S.STARTING and sup.get("b").pid != b_pid
        assert b_pid is not None and not alive(b_pid)
        assert sup.get("b").last_exit_code == -signal.SIGTERM


async def test_add_while_running(tmp_path: Path, mark: str) -> None:
    async with supervising([child("first", mark)], tmp_path) as (sup, _):
        sup.add(child("second", mark))
        assert await sup.wait_running("second", 5)
        with pytest.raises(ValueError):
            sup.add(child("second", mark))
        assert [s.name for s in sup.status()] == ["first", "second"]


async def test_cancelled_run_still_stops_every_child(tmp_path: Path, mark: str) -> None:
    rec = Recorder()
    pid_file = tmp_path / "pids"
    y = child("y", mark, "--ignore-term", "--pid-file", str(pid_file), stop_timeout_s=0.3)
    sup = Supervisor([child("x", mark), y], tmp_path, on_change=rec)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        assert await sup.wait_running("x", 5) and await sup.wait_running("y", 5)
        await pids_from(pid_file)
        pids = sup.pids()
        tg.cancel_scope.cancel()
    assert len(pids) == 2 and not [p for p in pids if alive(p)]
    assert time.monotonic() - started >= 0.3  # y ignored SIGTERM: it waited for the stop timeout (lower bound)
    assert sup.get("y").last_exit_code == -signal.SIGKILL
    assert [s.state for s in sup.status()] == [S.STOPPED, S.STOPPED]
    assert rec.states("y")[-2:] == [S.STOPPING, S.STOPPED]  # reported even though run() was cancelled


async def test_on_change_errors_do_not_stop_supervision(tmp_path: Path, mark: str) -> None:
    seen: list[ProcState] = []

    async def broken(status: ProcessStatus, old: ProcState) -> None:
        seen.append(status.state)
        raise RuntimeError("redis is down")

    sup = Supervisor([child("z", mark)], tmp_path, on_change=broken)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        assert await sup.wait_running("z", 5)
        await sup.stop_all()
    assert seen == [S.STARTING, S.RUNNING, S.STOPPING, S.STOPPED]


def test_a_sigkilled_agent_leaves_no_orphans(tmp_path: Path, mark: str) -> None:
    """die_with_parent: the children get SIGTERM when the agent dies, even by SIGKILL."""
    root = Path(__file__).resolve().parents[2]
    agent = subprocess.Popen(
        [sys.executable, str(FIXTURES / "agent.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, MARK: mark, "PYTHONPATH": str(root)},
    )
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline()
        assert line.startswith("RUNNING "), line
        pid = int(line.split()[1])
        assert alive(pid)
        agent.kill()
        agent.wait(5)
        poll(lambda: not alive(pid), 5, "the orphaned child to go")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
        if agent.stdout is not None:
            agent.stdout.close()


def test_orphans_are_reaped_and_our_own_children_are_not() -> None:
    """As a child subreaper (what PID 1 is for a container), in a process of its own."""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, str(FIXTURES / "subreaper.py")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "inactive_returns": True,
        "orphan_reaped": True,
        "own_still_waitable": True,
        "own_exit_code": 7,
    }
