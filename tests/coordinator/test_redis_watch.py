"""The coordinator's Redis restart watch, its pure part (emp/coordinator/redis_watch.py): what a new
run_id means, told by the submitted counter. The real restart is tests/chaos/test_redis_restart.py."""

from __future__ import annotations

from emp.coordinator.redis_watch import Reading, RestartWatch


def test_the_same_server_is_no_restart() -> None:
    watch = RestartWatch()
    assert watch.observe(Reading("a", 10, 4)) is None
    assert watch.observe(Reading("a", 12, 3)) is None
    assert (watch.restarts, watch.state_lost) == (0, 0)


def test_an_empty_restart_reports_the_unfinished_jobs_lost() -> None:
    watch = RestartWatch()
    watch.observe(Reading("a", 10, 4))
    restart = watch.observe(Reading("b", 0, 0))
    assert restart is not None and restart.empty and restart.lost_data and restart.jobs_lost == 4
    assert "restarted empty" in restart.message() and "4 job(s) in flight were lost" in restart.message()
    assert (watch.restarts, watch.state_lost, watch.jobs_lost) == (1, 1, 4)


def test_a_restart_missing_its_last_writes() -> None:
    watch = RestartWatch()
    watch.observe(Reading("a", 100, 7))
    restart = watch.observe(Reading("b", 97, 6))
    assert restart is not None and not restart.empty and restart.lost_data and restart.jobs_lost == 3
    assert "from 100 to 97" in restart.message()
    assert (watch.restarts, watch.state_lost) == (1, 1)


def test_a_restart_that_kept_its_data() -> None:
    watch = RestartWatch()
    watch.observe(Reading("a", 100, 7))
    restart = watch.observe(Reading("b", 100, 7))
    assert restart is not None and not restart.lost_data and "data was kept" in restart.message()
    assert (watch.restarts, watch.state_lost, watch.jobs_lost) == (1, 0, 0)
    assert watch.observe(Reading("c", 0, 0)) is not None and watch.restarts == 2 and watch.state_lost == 1
