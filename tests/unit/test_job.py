"""emp.model.job: statuses and transitions, submission validation, the wire, jobs read back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emp import defaults
from emp.model.job import (
    ACTIVE,
    TERMINAL,
    TRANSITIONS,
    Job,
    JobStatus,
    JobSubmission,
    JobValidationError,
    can_transition,
    check_batch_size,
    json_depth,
    parse_submission,
)
from emp.model.requirements import canonicalize

S = JobStatus


# -- statuses -----------------------------------------------------------------------------------


def test_status_groups() -> None:
    assert [str(s) for s in S] == [
        "pending",
        "scheduled",
        "assigned",
        "in_progress",
        "completed",
        "failed",
        "cancelled",
        "unworkable",
        "waiting",
    ]
    assert TERMINAL == {S.COMPLETED, S.FAILED, S.CANCELLED}
    assert ACTIVE == {S.ASSIGNED, S.IN_PROGRESS}
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.PENDING, S.ASSIGNED),  # claim
        (S.PENDING, S.IN_PROGRESS),  # claim that starts at once
        (S.SCHEDULED, S.PENDING),  # run_at / backoff due
        (S.ASSIGNED, S.IN_PROGRESS),  # start
        (S.IN_PROGRESS, S.COMPLETED),
        (S.IN_PROGRESS, S.FAILED),
        (S.IN_PROGRESS, S.PENDING),  # retry at once, release, lease expired
        (S.IN_PROGRESS, S.SCHEDULED),  # retry with backoff
        (S.ASSIGNED, S.PENDING),  # release before start
        (S.PENDING, S.UNWORKABLE),
        (S.UNWORKABLE, S.PENDING),  # a matching worker appeared
        (S.PENDING, S.CANCELLED),
        (S.SCHEDULED, S.CANCELLED),
        (S.ASSIGNED, S.CANCELLED),
        (S.IN_PROGRESS, S.CANCELLED),
        (S.UNWORKABLE, S.CANCELLED),
        (S.FAILED, S.PENDING),  # manual retry
        (S.CANCELLED, S.PENDING),  # manual retry
    ],
)
def test_allowed_transitions(a: JobStatus, b: JobStatus) -> None:
    assert can_transition(a, b)
    assert can_transition(str(a), str(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (S.COMPLETED, S.PENDING),  # a completed job stays completed
        (S.COMPLETED, S.FAILED),
        (S.FAILED, S.COMPLETED),
        (S.CANCELLED, S.IN_PROGRESS),
        (S.PENDING, S.COMPLETED),  # never completed without a claim
        (S.PENDING, S.FAILED),
        (S.SCHEDULED, S.ASSIGNED),
        (S.UNWORKABLE, S.ASSIGNED),
        (S.IN_PROGRESS, S.ASSIGNED),
        (S.PENDING, S.PENDING),
    ],
)
def test_refused_transitions(a: JobStatus, b: JobStatus) -> None:
    assert not can_transition(a, b)


def test_unknown_status_transition() -> None:
    assert not can_transition("pending", "queued")
    assert not can_transition("nope", "pending")


def test_terminal_statuses_leave_only_by_manual_retry() -> None:
    assert TRANSITIONS[S.COMPLETED] == frozenset()
    for s in (S.FAILED, S.CANCELLED):
        assert TRANSITIONS[s] <= {S.PENDING, S.UNWORKABLE}


# -- submission -----------------------------------------------------------------------------------


def test_minimal_submission_defaults() -> None:
    sub = parse_submission({"service": "comfyui"})
    assert sub.service == "comfyui"
    assert sub.priority == defaults.PRIORITY == 50
    assert sub.max_attempts == defaults.MAX_ATTEMPTS
    assert sub.payload == {}
    assert sub.id is None and sub.requirements is None


@pytest.mark.parametrize("alias", ["service_required", "job_type", "type"])
def test_service_aliases(alias: str) -> None:
    assert parse_submission({alias: "a1111"}).service == "a1111"


def test_first_present_alias_wins() -> None:
    assert parse_submission({"type": "c", "job_type": "b", "service_required": "a"}).service == "a"
    assert parse_submission({"type": "c", "service": "s"}).service == "s"
    assert parse_submission({"service_required": None, "job_type": "b"}).service == "b"


def test_service_missing() -> None:
    with pytest.raises(JobValidationError) as info:
        parse_submission({"payload": {}})
    assert str(info.value) == "service: required (also accepted as service_required, job_type or type)"


@pytest.mark.parametrize("bad", ["ComfyUI", "comfy ui", "", "-x", "a" * 65, "comfy:ui", 5])
def test_bad_service(bad: Any) -> None:
    with pytest.raises(JobValidationError, match=r"^service: "):
        parse_submission({"service": bad})


def test_good_services() -> None:
    for name in ("comfyui", "a1111", "ollama", "comfyui-sim", "x", "rest_v2.1", "a" * 64):
        assert parse_submission({"service": name}).service == name


def test_unknown_field_refused() -> None:
    with pytest.raises(JobValidationError) as info:
        parse_submission({"service": "comfyui", "colour": "red"})
    assert str(info.value) == "unknown field 'colour'"


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (1001, "priority: must be between 0 and 1000"),
        (-1, "priority: must be between 0 and 1000"),
        (True, "priority: must be an integer, not a boolean"),
        ("high", "priority: must be an integer, got 'high'"),
        (1.5, "priority: must be an integer, got number 1.5"),
        (None, "priority: must be an integer, not null"),
        ([1], "priority: must be an integer, got array [1]"),
    ],
)
def test_bad_priority(priority: Any, message: str) -> None:
    with pytest.raises(JobValidationError) as info:
        parse_submission({"service": "comfyui", "priority": priority})
    assert str(info.value) == message


def test_priority_bounds_and_lenient_numbers() -> None:
    assert parse_submission({"service": "s", "priority": 0}).priority == 0
    assert parse_submission({"service": "s", "priority": 1000}).priority == 1000
    assert parse_submission({"service": "s", "priority": "70"}).priority == 70
    assert parse_submission({"service": "s", "priority": 70.0}).priority == 70


def test_several_problems_one_line_each() -> None:
    with pytest.raises(JobValidationError) as info:
        parse_submission({"service": "comfyui", "priority": 2000, "max_attempts": 0, "colour": 1, "payload": []})
    problems = info.value.problems
    assert sorted(problems) == sorted(
        [
            "priority: must be between 0 and 1000",
            "max_attempts: must be between 1 and 100",
            "unknown field 'colour'",
            "payload: must be a JSON object, got array",
        ]
    )
    assert str(info.value).splitlines() == problems


@pytest.mark.parametrize("payload", [[1, 2], "text", 5, True])
def test_non_object_payload(payload: Any) -> None:
    with pytest.raises(JobValidationError, match=r"^payload: must be a JSON object"):
        parse_submission({"service": "comfyui", "payload": payload})


def test_payload_not_json() -> None:
    with pytest.raises(JobValidationError, match=r"^payload: is not valid JSON"):
        parse_submission({"service": "comfyui", "payload": {"x": float("nan")}})
    with pytest.raises(JobValidationError, match=r"^payload: is not valid JSON"):
        parse_submission({"service": "comfyui", "payload": {"x": {1, 2}}})


def test_null_payload_is_empty() -> None:
    assert parse_submission({"service": "comfyui", "payload": None}).payload == {}


@pytest.mark.parametrize(
    ("requirements", "message"),
    [
        ([1], "requirements: must be a JSON object, got array"),
        ("gpu", "requirements: must be a JSON object, got string"),
        ({"pool": None}, "requirements: requirement 'pool' is null; leave the key out to require nothing"),
        ({"hardware": {}}, "requirements: requirement 'hardware' is an empty object"),
    ],
)
def test_bad_requirements(requirements: Any, message: str) -> None:
    with pytest.raises(JobValidationError) as info:
        parse_submission({"service": "comfyui", "requirements": requirements})
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "", "id: must be 1 to 200 characters"),
        ("id", "a b", "id: must not contain spaces or control characters"),
        ("id", "a\nb", "id: must not contain spaces or control characters"),
        ("id", "x" * 201, "id: must be 1 to 200 characters"),
        ("id", 5, "id: must be a string, got number"),
        ("customer_id", 5, "customer_id: must be a string, got number"),
        ("workflow_id", "wf\x00", "workflow_id: must not contain control characters"),
        ("workflow_priority", 1001, "workflow_priority: must be between 0 and 1000"),
        ("workflow_datetime", -1, "workflow_datetime: must be between 0 and 1000000000000000"),
        ("step", -1, "step: must be >= 0"),
        ("total_steps", False, "total_steps: must be an integer, not a boolean"),
        ("max_attempts", 0, "max_attempts: must be between 1 and 100"),
        ("max_attempts", 101, "max_attempts: must be between 1 and 100"),
        ("timeout_s", 0, "timeout_s: must be a positive number of seconds"),
        ("timeout_s", -3, "timeout_s: must be a positive number of seconds"),
        ("timeout_s", float("inf"), "timeout_s: must be a positive number of seconds"),
        ("timeout_s", True, "timeout_s: must be a number of seconds, not a boolean"),
        ("run_at", "soon", "run_at: must be an integer, got 'soon'"),
    ],
)
def test_bad_fields(field: str, value: Any, message: str) -> None:
    with pytest.raises(JobValidationError) as info:
        parse_submission({"service": "comfyui", field: value})
    assert str(info.value) == message


def test_not_an_object() -> None:
    with pytest.raises(JobValidationError, match="a job must be a JSON object, got array"):
        parse_submission([{"service": "comfyui"}])


def test_empty_customer_and_workflow_mean_none() -> None:
    sub = parse_submission({"service": "comfyui", "customer_id": "", "workflow_id": ""})
    assert sub.customer_id is None and sub.workflow_id is None


def test_submission_is_immutable() -> None:
    sub = parse_submission({"service": "comfyui"})
    with pytest.raises(ValueError):
        sub.priority = 3  # type: ignore[misc]


# -- wire -----------------------------------------------------------------------------------------


def test_full_wire() -> None:
    sub = parse_submission(
        {
            "id": "job-1",
            "service_required": "comfyui",
            "priority": 80,
            "payload": {"prompt": {"3": {"inputs": {"seed": 1}}}, "text": "é"},
            "requirements": {"hardware": {"gpu_memory_gb": 16}, "negative_requirements": {"pool": "spot"}},
            "customer_id": "acme",
            "workflow_id": "wf-1",
            "workflow_priority": 90,
            "workflow_datetime": 1_760_000_000_000,
            "step": 1,
            "total_steps": 3,
            "max_attempts": 5,
            "timeout_s": 600,
            "run_at": 1_760_000_100_000,
        }
    )
    wire = sub.to_wire(defaults.MAX_PAYLOAD_BYTES)
    assert wire == {
        "id": "job-1",
        "service": "comfyui",
        "priority": 80,
        "payload": '{"prompt":{"3":{"inputs":{"seed":1}}},"text":"é"}',
        "requirements": '{"n":{"pool":"spot"},"p":{"hardware.gpu_memory_gb":16}}',
        "customer_id": "acme",
        "workflow_id": "wf-1",
        "workflow_priority": 90,
        "workflow_datetime": 1_760_000_000_000,
        "step": 1,
        "total_steps": 3,
        "max_attempts": 5,
        "timeout_s": 600.0,
        "run_at": 1_760_000_100_000,
    }
    assert sub.canonical == canonicalize(sub.requirements)


def test_minimal_wire_omits_none_and_generates_an_id() -> None:
    wire = parse_submission({"service": "comfyui"}).to_wire(1000)
    assert set(wire) == {"id", "service", "priority", "payload", "requirements", "max_attempts"}
    assert wire["payload"] == "{}" and wire["requirements"] == "{}"
    assert len(wire["id"]) == 32
    assert wire["id"] != parse_submission({"service": "comfyui"}).to_wire(1000)["id"]


def test_oversized_payload() -> None:
    sub = parse_submission({"service": "comfyui", "payload": {"x": "a" * 100}})
    size = len(json.dumps(sub.payload, separators=(",", ":")))
    assert sub.to_wire(size)["payload"]  # exactly at the limit: fine
    with pytest.raises(JobValidationError) as info:
        sub.to_wire(size - 1)
    assert str(info.value) == f"payload: {size} bytes is over the limit of {size - 1} bytes"


def test_payload_size_counts_utf8_bytes() -> None:
    sub = parse_submission({"service": "comfyui", "payload": {"x": "é" * 10}})
    text = sub.to_wire(1000)["payload"]
    with pytest.raises(JobValidationError):
        sub.to_wire(len(text))  # 10 more bytes than characters


def test_model_construct_with_bad_requirements_still_checked_at_wire() -> None:
    sub = JobSubmission.model_construct(service="comfyui", requirements={"pool": None}, payload={}, priority=50)
    with pytest.raises(JobValidationError, match="^requirements: requirement 'pool' is null"):
        sub.to_wire(1000)


# -- Job read back ---------------------------------------------------------------------------------


def hash_fields(**over: str) -> dict[str, str]:
    base = {
        "id": "job-1",
        "service": "comfyui",
        "priority": "50",
        "created_at": "1760000000000",
        "sig": "0123456789abcdef",
        "seq": "42",
        "max_attempts": "3",
        "status": "in_progress",
        "attempt": "2",
        "tries": "1",
        "worker_id": "w1",
        "machine_id": "m1",
        "assigned_at": "1760000001000",
        "started_at": "1760000001000",
        "progress": "37.5",
        "message": "sampling",
        "history": json.dumps(
            [
                {
                    "attempt": 1,
                    "worker_id": "w0",
                    "started_at": 1,
                    "ended_at": 2,
                    "outcome": "failed",
                    "failure_class": "transient",
                    "error": "boom",
                }
            ]
        ),
    }
    base.update(over)
    return base


def test_job_from_hash() -> None:
    job = Job.from_hash(hash_fields(), '{"prompt":{}}', '{"p":{"pool":"standard"}}')
    assert job.id == "job-1" and job.service == "comfyui"
    assert job.status is S.IN_PROGRESS
    assert (job.priority, job.seq, job.attempt, job.tries, job.lost, job.unavailable) == (50, 42, 2, 1, 0, 0)
    assert job.created_at == 1_760_000_000_000 and job.finished_at is None
    assert job.progress == 37.5 and job.timeout_s is None
    assert job.customer_id is None and job.worker_id == "w1"
    assert job.payload == {"prompt": {}}
    assert job.requirements == {"positive_requirements": {"pool": "standard"}}
    assert canonicalize(job.requirements).text == '{"p":{"pool":"standard"}}'  # submittable as it is
    assert job.history[0]["failure_class"] == "transient"
    assert not job.terminal and job.effective_priority == 50
    view = job.view(canonicalize({"pool": "standard"}))
    assert view.service == "comfyui" and view.avoid_workers == () and view.gpu_gb_over is None


def test_job_from_hash_completed_with_result_and_extras() -> None:
    job = Job.from_hash(
        hash_fields(
            status="completed",
            result='{"images":["a.png"]}',
            finished_at="1760000009000",
            future="x",
            timeout_s="600",
            workflow_priority="90",
            avoid_workers='["w0","w1"]',
            gpu_gb_over="16",
        ),
        None,
    )
    assert job.terminal and job.result == {"images": ["a.png"]}
    assert job.timeout_s == 600.0 and job.effective_priority == 90
    assert job.avoid_workers == ["w0", "w1"] and job.gpu_gb_over == 16.0
    assert job.view(canonicalize({})).avoid_workers == ("w0", "w1")
    assert job.payload is None and job.requirements is None
    assert job.extra == {"future": "x"}
    d = job.to_dict()
    assert d["status"] == "completed" and d["result"] == {"images": ["a.png"]}
    json.dumps(d)  # JSON-ready


def test_job_from_hash_tolerates_text_result_and_bad_history() -> None:
    job = Job.from_hash(hash_fields(result="plain text", history="not json", customer_id=""), "not json")
    assert job.result == "plain text"
    assert job.history == []
    assert job.payload == "not json"
    assert job.customer_id is None


def test_job_from_hash_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="lacks id"):
        Job.from_hash({"service": "x", "status": "pending"})
    with pytest.raises(ValueError):
        Job.from_hash(hash_fields(status="queued"))


# -- submission limits (emp/defaults.py; submit.lua enforces the same: tests/redis/test_submit.py) --


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"service": "s" * (defaults.SERVICE_NAME_MAX + 1)}, "service"),
        ({"id": "i" * (defaults.JOB_ID_MAX + 1)}, "id: must be 1 to"),
        ({"max_attempts": defaults.MAX_ATTEMPTS_CEILING + 1}, "max_attempts"),
        ({"customer_id": "c" * (defaults.TEXT_FIELD_MAX + 1)}, "customer_id"),
        ({"payload": _nested(defaults.MAX_JSON_DEPTH + 1)}, "nested more than"),
        ({"payload": {"list": [[[[]]]], "deep": _nested(defaults.MAX_JSON_DEPTH)}}, "nested more than"),
    ],
)
def test_submission_limits_refuse(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(JobValidationError, match=message):
        parse_submission({"service": "comfyui", **fields})


def test_submission_limits_accept_values_at_the_limit() -> None:
    sub = parse_submission(
        {
            "service": "s" * defaults.SERVICE_NAME_MAX,
            "id": "i" * defaults.JOB_ID_MAX,
            "max_attempts": defaults.MAX_ATTEMPTS_CEILING,
            "customer_id": "c" * defaults.TEXT_FIELD_MAX,
            "payload": _nested(defaults.MAX_JSON_DEPTH),
        }
    )
    assert sub.max_attempts == defaults.MAX_ATTEMPTS_CEILING


def test_json_depth_counts_objects_and_arrays_and_stops_past_the_limit() -> None:
    assert json_depth(1, 10) == 0
    assert json_depth({}, 10) == 1
    assert json_depth({"a": [1, {"b": []}]}, 10) == 4
    assert json_depth(_nested(500), 10) == 11


def test_batch_size() -> None:
    check_batch_size(1)
    check_batch_size(defaults.MAX_BATCH)
    for n in (0, defaults.MAX_BATCH + 1):
        with pytest.raises(JobValidationError, match="batch"):
            check_batch_size(n)
