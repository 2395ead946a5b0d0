"""The supervised-process state machine: transitions, backoff delays, quick failures, FATAL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from emp.agent.process_state import Action, ProcessMachine, ProcState, RestartPolicy, Transition

S = ProcState


def running(policy: RestartPolicy | None = None) -> ProcessMachine:
    m = ProcessMachine(policy)
    m.start_requested()
    m.ready()
    return m


def crash_quickly(m: ProcessMachine) -> Transition:
    """From BACKOFF or STARTING: (re)start and exit at once."""
    if m.state is S.BACKOFF:
        m.backoff_elapsed()
    return m.exited(3, 0.0)


def test_start_then_ready_is_running() -> None:
    m = ProcessMachine()
    assert m.state is S.STOPPED
    t = m.start_requested()
    assert (t.old, t.new, t.action) == (S.STOPPED, S.STARTING, Action.SPAWN)
    t = m.ready()
    assert (t.old, t.new, t.action) == (S.STARTING, S.RUNNING, Action.NOTHING)
    assert t.changed and m.restarts == 0


def test_exit_before_ready_backs_off_with_the_initial_delay() -> None:
    m = ProcessMachine()
    m.start_requested()
    t = m.exited(3, 0.0)
    assert (t.new, t.action, t.delay_s) == (S.BACKOFF, Action.RESTART_LATER, 1.0)
    assert m.last_exit_code == 3 and m.quick_failures == 1
    assert "exited with code 3" in t.message and "restart in 1 s" in t.message
    t = m.backoff_elapsed()
    assert (t.new, t.action) == (S.STARTING, Action.SPAWN)
    assert m.restarts == 1


def test_backoff_grows_by_1_5_and_caps_at_15_s() -> None:
    m = ProcessMachine(RestartPolicy(max_quick_failures=0))
    m.start_requested()
    delays = [crash_quickly(m).delay_s for _ in range(10)]
    assert delays == pytest.approx([1.0, 1.5, 2.25, 3.375, 5.0625, 7.59375, 11.390625, 15.0, 15.0, 15.0])
    assert m.state is S.BACKOFF and m.quick_failures == 10 and m.restarts == 9


def test_fatal_after_max_quick_failures_with_a_message() -> None:
    m = ProcessMachine(RestartPolicy(max_quick_failures=3))
    m.start_requested()
    assert crash_quickly(m).new is S.BACKOFF
    assert crash_quickly(m).new is S.BACKOFF
    t = crash_quickly(m)
    assert (t.new, t.action) == (S.FATAL, Action.GIVE_UP)
    assert "gave up after 3 quick failures" in t.message and "exited with code 3" in t.message
    # FATAL stays down: late or stale events change nothing.
    for event in (m.backoff_elapsed, m.ready, m.stop_requested):
        assert event().new is S.FATAL
    assert m.exited(1, 0.0).new is S.FATAL


def test_start_request_clears_fatal_and_the_backoff() -> None:
    m = ProcessMachine(RestartPolicy(max_quick_failures=2))
    m.start_requested()
    crash_quickly(m)
    crash_quickly(m)
    assert m.state is S.FATAL
    t = m.start_requested()
    assert (t.old, t.new, t.action) == (S.FATAL, S.STARTING, Action.SPAWN)
    assert m.quick_failures == 0 and m.message == ""
    assert m.exited(3, 0.0).delay_s == 1.0  # the delay starts afresh too


def test_a_crash_after_a_long_run_is_not_quick_and_resets_the_delay() -> None:
    policy = RestartPolicy(max_quick_failures=3, reset_after_s=30.0)
    m = ProcessMachine(policy)
    m.start_requested()
    crash_quickly(m)
    crash_quickly(m)  # two quick failures: the next delay would be 2.25 s
    m.backoff_elapsed()
    m.ready()
    t = m.exited(1, 30.0)  # up (ready) for reset_after_s
    assert (t.new, t.delay_s) == (S.BACKOFF, 1.0)
    assert m.quick_failures == 0
    # A new streak: 1.5 s next (as PM2), and FATAL only after 3 more quick failures.
    assert crash_quickly(m).delay_s == 1.5
    assert crash_quickly(m).new is S.BACKOFF
    assert crash_quickly(m).new is S.FATAL


def test_a_crash_soon_after_ready_is_quick() -> None:
    m = ProcessMachine(RestartPolicy(max_quick_failures=2, reset_after_s=30.0))
    m.start_requested()
    m.ready()
    assert m.exited(1, 29.9).new is S.BACKOFF
    m.backoff_elapsed()
    m.ready()
    assert m.exited(1, 29.9).new is S.FATAL


def test_max_quick_failures_zero_never_gives_up() -> None:
    m = ProcessMachine(RestartPolicy(max_quick_failures=0))
    m.start_requested()
    for _ in range(100):
        assert crash_quickly(m).new is S.BACKOFF


def test_without_autorestart_an_exit_is_final_until_started() -> None:
    m = running(RestartPolicy(autorestart=False))
    t = m.exited(0, 5.0)
    assert (t.new, t.action) == (S.EXITED, Action.NOTHING)
    assert m.last_exit_code == 0
    assert m.backoff_elapsed().new is S.EXITED
    assert m.start_requested().new is S.STARTING


@pytest.mark.parametrize("setup", [running, lambda: _starting()], ids=["running", "starting"])
def test_stop_then_exit_is_stopped(setup: Callable[[], ProcessMachine]) -> None:
    m = setup()
    t = m.stop_requested()
    assert (t.new, t.action) == (S.STOPPING, Action.TERMINATE)
    assert m.ready().new is S.STOPPING  # a late readiness does not make it RUNNING
    assert m.stop_requested().action is Action.NOTHING  # one TERMINATE per stop
    t = m.exited(-15, 10.0)
    assert (t.new, t.action) == (S.STOPPED, Action.NOTHING)
    assert m.last_exit_code == -15 and m.quick_failures == 0
    assert m.backoff_elapsed().new is S.STOPPED


def _starting() -> ProcessMachine:
    m = ProcessMachine()
    m.start_requested()
    return m


def test_stop_during_backoff_drops_the_pending_restart() -> None:
    m = _starting()
    m.exited(3, 0.0)
    t = m.stop_requested()
    assert (t.old, t.new, t.action) == (S.BACKOFF, S.STOPPED, Action.NOTHING)
    assert m.backoff_elapsed().new is S.STOPPED  # the timer fired late: ignored


def test_start_during_backoff_spawns_at_once() -> None:
    m = _starting()
    m.exited(3, 0.0)
    t = m.start_requested()
    assert (t.old, t.new, t.action) == (S.BACKOFF, S.STARTING, Action.SPAWN)
    assert m.backoff_elapsed().action is Action.NOTHING


def test_readiness_timeout_kills_and_counts_as_a_failed_start() -> None:
    m = _starting()
    t = m.ready_timed_out(120.0)
    assert (t.new, t.action) == (S.STARTING, Action.TERMINATE)
    assert m.ready().new is S.STARTING  # too late: it is being killed
    assert m.ready_timed_out(120.0).action is Action.NOTHING
    t = m.exited(-15, 0.0)
    assert t.new is S.BACKOFF and m.quick_failures == 1
    assert t.message.startswith("not ready within 120 s")


def test_spawn_failure_is_a_quick_failure() -> None:
    m = ProcessMachine(RestartPolicy(max_quick_failures=2))
    m.start_requested()
    t = m.spawn_failed("[Errno 2] No such file or directory: 'nope'")
    assert t.new is S.BACKOFF and "could not start" in t.message
    m.backoff_elapsed()
    assert m.spawn_failed("again").new is S.FATAL


def test_killed_by_a_signal_is_said_so() -> None:
    m = running()
    assert "killed by signal 9" in m.exited(-9, 1.0).message


@pytest.mark.parametrize(
    ("state_setup", "event"),
    [
        (ProcessMachine, lambda m: m.ready()),
        (ProcessMachine, lambda m: m.exited(0, 0.0)),
        (ProcessMachine, lambda m: m.stop_requested()),
        (ProcessMachine, lambda m: m.backoff_elapsed()),
        (ProcessMachine, lambda m: m.spawn_failed("x")),
        (running, lambda m: m.start_requested()),
        (running, lambda m: m.ready()),
        (running, lambda m: m.backoff_elapsed()),
        (running, lambda m: m.ready_timed_out(1.0)),
        (_starting, lambda m: m.start_requested()),
    ],
)
def test_events_that_do_not_apply_change_nothing(
    state_setup: Callable[[], ProcessMachine], event: Callable[[ProcessMachine], Transition]
) -> None:
    m = state_setup()
    before = (m.state, m.restarts, m.quick_failures, m.last_exit_code)
    t = event(m)
    assert not t.changed and t.action is Action.NOTHING
    assert (m.state, m.restarts, m.quick_failures, m.last_exit_code) == before


def test_restarts_count_every_spawn_after_the_first() -> None:
    m = _starting()
    m.exited(1, 0.0)
    m.backoff_elapsed()
    m.stop_requested()
    m.exited(-15, 0.0)
    m.start_requested()
    assert m.restarts == 2


def test_state_values_are_lower_case_strings() -> None:
    assert [s.value for s in ProcState] == [
        "stopped",
        "starting",
        "running",
        "backoff",
        "stopping",
        "exited",
        "fatal",
    ]
    assert ProcState("fatal") is S.FATAL
