"""emp.model.schedule, pure: timings (cron, every, zones, DST), names, periods, and the plan of a pass."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from emp import defaults
from emp.model.schedule import (
    Fire,
    Missed,
    ScheduleError,
    Timing,
    check_name,
    format_period,
    job_id,
    parse_every,
    plan,
    template,
)

PARIS = ZoneInfo("Europe/Paris")


def ms(*args: int, tz: ZoneInfo | None = None) -> int:
    return int(datetime(*args, tzinfo=tz or UTC).timestamp() * 1000)  # type: ignore[misc]


def local(t_ms: int, tz: ZoneInfo = PARIS) -> str:
    return datetime.fromtimestamp(t_ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S%z")


def walk(timing: Timing, start: int, n: int) -> list[int]:
    out = []
    for _ in range(n):
        start = timing.next_after(start)
        out.append(start)
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("1500ms", 1500),
        ("2", 2000),
        ("1.5s", 1500),
    ],
)
def test_parse_every(text: str, expected: int) -> None:
    assert parse_every(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "-1s", "1.0001ms", "1w"])
def test_parse_every_refuses(text: str) -> None:
    with pytest.raises(ScheduleError, match="--every"):
        parse_every(text)


def test_format_period() -> None:
    got = [format_period(x) for x in (1000, 90_000, 3_600_000, 86_400_000, 1500)]
    assert got == ["1s", "90s", "1h", "1d", "1500ms"]


def test_every_is_aligned_to_the_epoch() -> None:
    t = Timing(every_ms=30_000)
    assert t.next_after(ms(2025, 1, 1, 12, 0, 10)) == ms(2025, 1, 1, 12, 0, 30)
    assert t.next_after(ms(2025, 1, 1, 12, 0, 30)) == ms(2025, 1, 1, 12, 1, 0), "strictly after"
    assert t.previous_before(ms(2025, 1, 1, 12, 0, 30)) == ms(2025, 1, 1, 12, 0, 0)
    assert t.count_between(ms(2025, 1, 1, 12), ms(2025, 1, 1, 13)) == 120


def test_cron_in_utc_and_with_seconds() -> None:
    t = Timing(cron="*/5 * * * *")
    got = walk(t, ms(2025, 1, 1, 12, 3, 59), 3)
    assert got == [ms(2025, 1, 1, 12, 5), ms(2025, 1, 1, 12, 10), ms(2025, 1, 1, 12, 15)]
    assert t.next_after(ms(2025, 1, 1, 12, 5) - 1) == ms(2025, 1, 1, 12, 5), "a millisecond before counts"
    assert t.previous_before(ms(2025, 1, 1, 12, 5)) == ms(2025, 1, 1, 12, 0)
    six = Timing(cron="*/10 * * * * *")
    assert walk(six, ms(2025, 1, 1, 0, 0, 0), 2) == [ms(2025, 1, 1, 0, 0, 10), ms(2025, 1, 1, 0, 0, 20)]


def test_cron_is_read_in_its_zone() -> None:
    t = Timing(cron="0 9 * * 1-5", tz="Europe/Paris")  # 09:00 Paris on weekdays
    got = walk(t, ms(2025, 1, 3, 9, 0, tz=PARIS), 2)  # from a Friday 09:00
    assert [local(x) for x in got] == ["2025-01-06 09:00:00+0100", "2025-01-07 09:00:00+0100"]


def test_dst_spring_forward_a_time_in_the_skipped_hour_runs_once_at_the_jump() -> None:
    """Paris, 2025-03-30: 02:00 -> 03:00. "30 2 * * *" has no 02:30 that day: it runs at 03:00 (Debian cron)."""
    t = Timing(cron="30 2 * * *", tz="Europe/Paris")
    got = walk(t, ms(2025, 3, 29, 12), 3)
    assert [local(x) for x in got] == [
        "2025-03-30 03:00:00+0200",
        "2025-03-31 02:30:00+0200",
        "2025-04-01 02:30:00+0200",
    ]
    wild = Timing(cron="*/30 * * * *", tz="Europe/Paris")  # a wildcard hour follows the wall clock
    got = walk(wild, ms(2025, 3, 30, 1, 15, tz=PARIS), 3)
    assert [local(x) for x in got] == [
        "2025-03-30 01:30:00+0100",
        "2025-03-30 03:00:00+0200",
        "2025-03-30 03:30:00+0200",
    ]


def test_dst_fall_back_a_time_in_the_repeated_hour_runs_once() -> None:
    """Paris, 2025-10-26: 03:00 -> 02:00. "30 2 * * *" runs once (the first 02:30, +0200)."""
    t = Timing(cron="30 2 * * *", tz="Europe/Paris")
    got = walk(t, ms(2025, 10, 25, 12), 2)
    assert [local(x) for x in got] == ["2025-10-26 02:30:00+0200", "2025-10-27 02:30:00+0100"]
    wild = Timing(cron="0,30 * * * *", tz="Europe/Paris")  # every real half hour through the repeated hour
    got = walk(wild, ms(2025, 10, 26, 0, 10), 4)  # 02:10 +0200
    assert got == [ms(2025, 10, 26, 0, 30), ms(2025, 10, 26, 1, 0), ms(2025, 10, 26, 1, 30), ms(2025, 10, 26, 2, 0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "Bad minute"),
        ({"cron": "* * *"}, "expected 5 fields"),
        ({"cron": "0 0 31 2 *"}, "--cron"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "not a time zone"),
        ({"every_ms": 500}, "--every must be between"),
        ({"every_ms": 1000, "tz": "Europe/Paris"}, "--tz applies to --cron only"),
        ({}, "exactly one"),
        ({"cron": "* * * * *", "every_ms": 1000}, "exactly one"),
    ],
)
def test_bad_timings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        Timing(**kwargs)  # type: ignore[arg-type]


def test_fields_round_trip() -> None:
    for t in (Timing(cron="0 3 * * *", tz="Asia/Tokyo"), Timing(every_ms=60_000)):
        assert Timing.from_fields(t.to_fields()) == t


def test_names_and_job_ids() -> None:
    assert check_name("nightly-gallery_v2.1") == "nightly-gallery_v2.1"
    for bad in ("", "a:b", "a b", "-x", "x" * (defaults.SCHEDULE_NAME_MAX + 1)):
        with pytest.raises(ScheduleError):
            check_name(bad)
    assert job_id("n", 1000) == "sched:n:1000"


def test_template_is_text_without_id_or_run_at() -> None:
    got = template({"id": "x", "service": "s", "priority": 50, "timeout_s": 2.5, "payload": "{}", "run_at": 5})
    assert got == {"service": "s", "priority": "50", "timeout_s": "2.5", "payload": "{}"}


EVERY = Timing(every_ms=1000)


def test_plan_nothing_before_the_next_occurrence() -> None:
    assert plan(EVERY, 5000, 4999, Missed.SKIP, 60_000, 10) == []


def test_plan_fires_each_occurrence_within_the_grace_in_order() -> None:
    assert plan(EVERY, 5000, 7500, Missed.SKIP, 60_000, 10) == [Fire(5000, 6000), Fire(6000, 7000), Fire(7000, 8000)]
    assert plan(EVERY, 5000, 7500, Missed.SKIP, 60_000, 2) == [Fire(5000, 6000), Fire(6000, 7000)], "bounded"


def test_plan_skip_drops_missed_occurrences_and_goes_on() -> None:
    steps = plan(EVERY, 10_000, 100_000, Missed.SKIP, 60_000, 3)
    assert steps[0] == Fire(None, 40_000, skipped=30, coalesced=0)
    assert steps[1:] == [Fire(40_000, 41_000), Fire(41_000, 42_000)]


def test_plan_once_fires_one_job_for_all_missed_then_goes_on() -> None:
    steps = plan(EVERY, 10_000, 100_000, Missed.ONCE, 60_000, 2)
    assert steps == [Fire(39_000, 40_000, coalesced=30), Fire(40_000, 41_000)]


def test_plan_missed_cron_a_week_down() -> None:
    t = Timing(cron="0 3 * * *", tz="Europe/Paris")
    start = ms(2025, 1, 1, 3, tz=PARIS)
    now = ms(2025, 1, 8, 12, tz=PARIS)
    skip = plan(t, start, now, Missed.SKIP, 60_000, 5)
    assert skip == [Fire(None, ms(2025, 1, 9, 3, tz=PARIS), skipped=8, coalesced=0)]
    once = plan(t, start, now, Missed.ONCE, 60_000, 5)
    assert once == [Fire(ms(2025, 1, 8, 3, tz=PARIS), ms(2025, 1, 9, 3, tz=PARIS), coalesced=8)]


def test_plan_long_downtime_of_a_fast_schedule_is_one_step() -> None:
    steps = plan(EVERY, 0, 7 * 86_400_000, Missed.SKIP, 60_000, 1)
    assert steps == [Fire(None, 7 * 86_400_000 - 60_000, skipped=7 * 86_400 - 60, coalesced=0)]
