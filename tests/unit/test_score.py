"""emp.model.score: one ordering rule for every queue, and the zset member format."""

from __future__ import annotations

import pytest

from emp.model.score import EPOCH_MS, TIME_SPAN, member, parse_member, score

T = EPOCH_MS + 500 * 24 * 3600 * 1000  # mid 2025


def test_formula() -> None:
    assert score(50, T) == 950 * 2**41 + (T - EPOCH_MS)
    assert score(1000, EPOCH_MS) == 0
    assert score(0, EPOCH_MS) == 1000 * 2**41
    assert TIME_SPAN == 2**41


def test_priority_dominates_any_age() -> None:
    old_low = score(10, EPOCH_MS)
    new_high = score(11, EPOCH_MS + TIME_SPAN - 1)
    assert new_high < old_low
    assert score(1000, T + 10**9) < score(999, EPOCH_MS)


def test_fifo_to_the_millisecond() -> None:
    assert score(50, T) < score(50, T + 1)
    assert score(50, T + 1) - score(50, T) == 1


def test_workflow_fields_take_precedence() -> None:
    # A step of an old workflow (submitted now) goes before a job created earlier than now.
    wf_start = T - 60_000
    step = score(50, T, workflow_priority=None, workflow_datetime_ms=wf_start)
    earlier_plain = score(50, T - 1000)
    assert step < earlier_plain
    assert step == score(50, wf_start)
    # workflow_priority replaces priority, both ways
    assert score(10, T, workflow_priority=900) == score(900, T)
    assert score(900, T, workflow_priority=10) == score(10, T)
    assert score(50, T, 70, T - 5) == score(70, T - 5)


def test_workflow_priority_zero_is_set() -> None:
    assert score(500, T, workflow_priority=0) == score(0, T)
    assert score(50, T, workflow_datetime_ms=0) == score(50, EPOCH_MS)


def test_clamp() -> None:
    assert score(50, 0) == score(50, EPOCH_MS) == 950 * 2**41
    assert score(50, EPOCH_MS - 1) == score(50, EPOCH_MS)
    top = score(50, EPOCH_MS + TIME_SPAN - 1)
    assert score(50, EPOCH_MS + TIME_SPAN) == top
    assert score(50, EPOCH_MS + 10 * TIME_SPAN) == top
    assert top < score(49, EPOCH_MS)
    assert score(0, EPOCH_MS + 10 * TIME_SPAN) < 2**51  # exact in a double


@pytest.mark.parametrize("bad", [-1, 1001, True])
def test_priority_out_of_range(bad: int) -> None:
    with pytest.raises(ValueError, match="priority"):
        score(bad, T)
    with pytest.raises(ValueError, match="priority"):
        score(50, T, workflow_priority=bad)


def test_member_format() -> None:
    assert member(1, "job-a") == "000000000001:job-a"
    assert member(255, "x", avoid=True) == "0000000000ff!x"
    assert member(0, "a:b!c") == "000000000000:a:b!c"


def test_member_round_trip() -> None:
    for seq, avoid, jid in [(0, False, "a"), (16**12 - 1, True, "job:with:colons"), (42, False, "ünï")]:
        assert parse_member(member(seq, jid, avoid)) == (seq, avoid, jid)


def test_member_orders_by_seq_within_a_score() -> None:
    members = [member(s, jid) for s, jid in [(10, "zzz"), (9, "aaa"), (300, "b"), (11, "a")]]
    assert [parse_member(m)[0] for m in sorted(members)] == [9, 10, 11, 300]
    # the flag does not reorder jobs of different seq
    assert member(9, "z", avoid=True) < member(10, "a")


@pytest.mark.parametrize("bad", ["", "000000000001", "000000000001-x", "00000000000g:x", "short:x"])
def test_parse_member_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_member(bad)


def test_member_seq_range() -> None:
    with pytest.raises(ValueError):
        member(-1, "x")
    with pytest.raises(ValueError):
        member(16**12, "x")
