"""emp.model.events: the event names of DESIGN section 6 and tolerant decoding of stream entries."""

from __future__ import annotations

from emp.model.events import (
    JOB_EVENTS,
    MACHINE_EVENTS,
    WORKER_EVENTS,
    Event,
    EventType,
    decode_event,
    encode_event,
)

DESIGN_NAMES = (
    "job_submitted job_scheduled job_assigned job_started job_progress job_completed job_failed job_retry "
    "job_requeued job_released job_cancelled job_unworkable worker_registered worker_status worker_offline "
    "service_status machine_startup machine_step machine_ready machine_failed machine_shutdown"
).split()


def test_names_are_exactly_the_design() -> None:
    assert [str(t) for t in EventType] == DESIGN_NAMES
    assert len(JOB_EVENTS) == 12 and len(WORKER_EVENTS) == 3 and len(MACHINE_EVENTS) == 5


def test_decode_full_entry() -> None:
    ev = decode_event(
        {
            "id": "1760000000000-0",
            "type": "job_retry",
            "ts": "1760000000000",
            "job": "job-1",
            "worker": "w1",
            "attempt": "2",
            "data": '{"failure_class":"transient","delay_ms":1000}',
        }
    )
    assert ev == Event(
        id="1760000000000-0",
        type=EventType.JOB_RETRY,
        ts=1_760_000_000_000,
        job="job-1",
        worker="w1",
        attempt=2,
        data={"failure_class": "transient", "delay_ms": 1000},
    )
    assert ev.known and not ev.terminal
    assert ev.type is EventType.JOB_RETRY


def test_decode_tolerates_missing_and_odd_fields() -> None:
    ev = decode_event({})
    assert ev == Event(id="", type="")
    assert not ev.known and ev.data == {}
    ev = decode_event({"id": "1-0", "type": "job_teleported", "ts": "x", "attempt": "", "data": "{not json"})
    assert ev.type == "job_teleported" and not ev.known
    assert ev.ts is None and ev.attempt is None
    assert ev.data == {"raw": "{not json"}
    assert decode_event({"type": "job_progress", "data": "[1,2]"}).data == {"value": [1, 2]}
    assert decode_event({"type": "job_progress", "ts": "1760000000000.0"}).ts == 1_760_000_000_000


def test_decode_bytes() -> None:
    ev = decode_event({"id": b"1-0", "type": b"job_completed", "job": b"j", "data": b'{"a":1}'})
    assert ev.id == "1-0" and ev.type is EventType.JOB_COMPLETED and ev.job == "j" and ev.data == {"a": 1}
    assert ev.terminal


def test_encode_decode_round_trip() -> None:
    fields = encode_event(EventType.JOB_STARTED, 5, job="j", worker="w", attempt=1, data={"x": "é"})
    assert fields == {"type": "job_started", "ts": "5", "job": "j", "worker": "w", "attempt": "1", "data": '{"x":"é"}'}
    ev = decode_event({"id": "5-0", **fields})
    assert (ev.type, ev.ts, ev.job, ev.worker, ev.attempt, ev.data) == ("job_started", 5, "j", "w", 1, {"x": "é"})
    assert encode_event("machine_ready", 7) == {"type": "machine_ready", "ts": "7"}
