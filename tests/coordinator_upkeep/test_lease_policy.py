"""The pure timing rules of leadership (emp/coordinator/lease_policy.py): no Redis, no clock."""

from __future__ import annotations

import pytest

from emp import defaults
from emp.coordinator.lease_policy import Action, LeaderState, LeasePolicy, SlowSteps

POLICY = LeasePolicy(lease_s=6.0, acquire_every_s=1.0, renew_fraction=1 / 3)


def test_defaults_take_over_within_seconds() -> None:
    p = LeasePolicy()
    assert p.lease_s == defaults.LEADER_LEASE_S and p.ttl_ms == round(defaults.LEADER_LEASE_S * 1000)
    assert p.lease_s + p.acquire_every_s <= 10, "a dead leader is replaced within seconds"
    assert p.renew_every_s * 2 < p.lease_s, "two renewals may fail before the lease lapses"


@pytest.mark.parametrize(
    "kw", [{"lease_s": 0}, {"lease_s": -1}, {"acquire_every_s": 0}, {"renew_fraction": 0}, {"renew_fraction": 1}]
)
def test_a_policy_that_cannot_work_is_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LeasePolicy(**kw)


def test_follower_becomes_leader_and_renews_at_a_third() -> None:
    s = LeaderState(POLICY)
    assert not s.leading and s.next_call_in(0) == 1.0
    assert s.acquired(7, sent_at=10.0) is Action.START
    assert s.leading and s.token == 7 and s.deadline == 16.0
    assert s.next_call_in(10.5) == pytest.approx(1.5)
    assert s.next_call_in(13.0) == 0.0, "overdue: renew now"
    assert s.renewed(sent_at=12.0) is Action.NONE
    assert s.deadline == 18.0 and s.next_call_in(12.0) == pytest.approx(2.0)


def test_the_deadline_counts_from_when_the_request_was_sent() -> None:
    s = LeaderState(POLICY)
    s.acquired(1, sent_at=10.0)  # the answer may have come much later: still 10 + lease
    assert not s.expired(15.99) and s.expired(16.0)
    assert s.time_left(15.0) == pytest.approx(1.0) and s.time_left(17.0) == 0.0


def test_losing_the_lease_stops_the_work_once() -> None:
    s = LeaderState(POLICY)
    s.acquired(3, sent_at=0.0)
    assert s.lost() is Action.STOP
    assert not s.leading and s.token is None and s.deadline is None
    assert s.lost() is Action.NONE, "a follower has nothing to stop"
    assert s.renewed(sent_at=1.0) is Action.NONE and not s.leading, "a late renew answer does not bring it back"


def test_our_own_lease_again_is_no_change_a_new_token_restarts() -> None:
    s = LeaderState(POLICY)
    s.acquired(3, sent_at=0.0)
    assert s.acquired(3, sent_at=1.0) is Action.NONE and s.deadline == 7.0
    assert s.acquired(4, sent_at=2.0) is Action.RESTART and s.token == 4
    s.lost()
    assert s.acquired(4, sent_at=3.0) is Action.START, "after stepping down, the same token starts afresh"


def test_slow_steps_run_first_then_every_interval() -> None:
    slow = SlowSteps(5.0)
    assert slow.due(100.0)
    assert not slow.due(101.0) and not slow.due(104.9)
    assert slow.due(105.0)
    assert not slow.due(106.0)
    slow.reset()
    assert slow.due(106.0)
    with pytest.raises(ValueError):
        SlowSteps(-1)
