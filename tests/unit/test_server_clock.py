"""emp.worker.server_clock: server deadlines become local waits by Redis's clock, never the host's."""

from __future__ import annotations

from emp.worker.server_clock import ServerClock


class FakeMonotonic:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_before_the_first_reading_there_is_no_server_time() -> None:
    clock = ServerClock(FakeMonotonic())
    assert clock.now_ms() is None and clock.seconds_until(5_000) is None


def test_a_reading_stands_for_the_middle_of_its_round_trip_and_advances_with_the_monotonic_clock() -> None:
    mono = FakeMonotonic(10.0)
    clock = ServerClock(mono)
    clock.sample(1_000_000, sent=10.0, received=10.2)  # Redis read its clock about 10.1
    mono.t = 10.2  # the reply has just arrived: a tenth of a second after Redis read its clock
    assert round(clock.now_ms() or 0) == 1_000_100
    mono.t = 12.1
    assert round(clock.now_ms() or 0) == 1_002_000
    assert round(clock.seconds_until(1_003_500) or 0, 6) == 1.5
    assert round(clock.seconds_until(1_001_000) or 0, 6) == -1.0


def test_a_new_reading_replaces_the_old_one() -> None:
    mono = FakeMonotonic(0.0)
    clock = ServerClock(mono)
    clock.sample(50_000, sent=0.0, received=0.0)
    mono.t = 100.0
    clock.sample(200_000, sent=100.0, received=100.0)  # Redis's clock was stepped: trust the latest
    assert clock.now_ms() == 200_000
