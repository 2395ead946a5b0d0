"""How the REST connector reads a service's answers: ids, statuses, failure classes, results, outputs."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.rest_protocol import (
    dig,
    http_failure,
    job_failure,
    job_id,
    missing,
    model_names,
    read_status,
    result_of,
    take_outputs,
)
from emp.worker.connectors.rest_settings import RestSettings, parse_settings

S = parse_settings("http://x", {"progress_field": "progress", "class_field": "error_class"})


def settings(**options: Any) -> RestSettings:
    return parse_settings("http://x", options)


def test_dig_follows_dotted_paths_and_list_indices():
    body = {"a": {"b": [{"c": 1}]}}
    assert dig(body, "a.b.0.c") == 1
    assert dig(body, "") is body
    assert missing(dig(body, "a.x")) and missing(dig(body, "a.b.5")) and missing(dig("text", "a"))
    assert dig({"a": None}, "a") is None


@pytest.mark.parametrize(("body", "expected"), [({"id": "j1"}, "j1"), ({"id": 42}, "42")])
def test_job_id(body, expected):
    assert job_id(body, S, "svc") == expected


@pytest.mark.parametrize("body", [{}, {"id": ""}, {"id": None}, {"id": True}, {"id": {"x": 1}}, "text", [1]])
def test_a_submit_answer_without_an_id_is_transient(body):
    with pytest.raises(ConnectorError) as info:
        job_id(body, S, "svc")
    assert info.value.failure_class == "transient" and "'id'" in str(info.value)


def test_job_id_at_a_nested_field():
    assert job_id({"data": {"job": "x"}}, settings(id_field="data.job"), "svc") == "x"


@pytest.mark.parametrize(
    ("body", "state", "percent"),
    [
        ({"status": "queued"}, "running", None),
        ({"status": "RUNNING", "progress": 0.25}, "running", 25.0),
        ({"status": "completed", "progress": 1}, "done", 100.0),
        ({"status": "Succeeded"}, "done", None),
        ({"status": "failed"}, "failed", None),
        ({"status": "cancelled"}, "failed", None),
        ({"status": "running", "progress": 7}, "running", 100.0),  # clamped
        ({"status": "running", "progress": -1}, "running", 0.0),
        ({"status": "running", "progress": "half"}, "running", None),
        ({"status": "running", "progress": True}, "running", None),
    ],
)
def test_read_status(body, state, percent):
    status = read_status(body, S, "svc")
    assert (status.state, status.percent) == (state, percent)


def test_progress_max_100_reads_percentages():
    s = settings(progress_field="p", progress_max=100)
    assert read_status({"status": "running", "p": 40}, s, "svc").percent == 40.0


@pytest.mark.parametrize("body", [{}, {"status": None}, {"status": {"x": 1}}, "garbage"])
def test_a_poll_answer_without_a_status_is_transient(body):
    with pytest.raises(ConnectorError) as info:
        read_status(body, S, "svc")
    assert info.value.failure_class == "transient"


@pytest.mark.parametrize(
    ("body", "failure_class", "text"),
    [
        ({"status": "failed", "error": "bad", "error_class": "malformed"}, "malformed", "bad"),
        ({"status": "failed", "error": "CUDA out of memory"}, "resource_exhausted", "CUDA out of memory"),
        ({"status": "failed", "error": {"message": "torch.OutOfMemoryError"}}, "resource_exhausted", "torch"),
        ({"status": "failed", "error": "model crashed"}, "unknown", "model crashed"),
        ({"status": "failed"}, "unknown", "no error message"),
        # A class the service may not choose is ignored, and said so.
        ({"status": "failed", "error": "x", "error_class": "cancelled"}, "unknown", "ignored unknown failure class"),
        ({"status": "failed", "error": "x", "error_class": "made_up"}, "unknown", "'made_up'"),
    ],
)
def test_job_failure_class(body, failure_class, text):
    exc = job_failure(body, read_status(body, S, "svc"), S, "svc")
    assert exc.failure_class == failure_class
    assert text in str(exc)


@pytest.mark.parametrize(
    ("status", "body", "default", "failure_class"),
    [
        (400, '{"error": "prompt missing"}', "malformed", "malformed"),
        (500, '{"error": "CUDA out of memory"}', "transient", "resource_exhausted"),
        (500, "RuntimeError: CUDA error: out of memory", "transient", "resource_exhausted"),
        (500, '{"error": "x", "error_class": "malformed"}', "transient", "malformed"),
        (503, "<html>busy</html>", "transient", "transient"),
    ],
)
def test_http_failure_refines_the_status_class(status, body, default, failure_class):
    cls, text = http_failure(status, body, default, S)
    assert cls == failure_class and text


def test_result_of():
    assert result_of({"result": {"a": 1}}, S, "svc") == {"a": 1}
    assert result_of({"result": "text"}, S, "svc") == {"result": "text"}
    assert result_of({"a": 1}, settings(result_field=""), "svc") == {"a": 1}
    assert result_of({"data": {"out": [1]}}, settings(result_field="data.out"), "svc") == {"result": [1]}
    with pytest.raises(ConnectorError) as info:
        result_of({"status": "completed"}, S, "svc")
    assert info.value.failure_class == "transient"


def test_result_of_returns_a_copy():
    body = {"result": {"files": [1]}}
    result_of(body, S, "svc")["files"].append(2)
    assert body == {"result": {"files": [1]}}


def test_take_outputs_decodes_and_removes_the_files():
    s = settings(outputs_field="out.files")
    data = base64.b64encode(b"\x00\x01").decode()
    result = {"out": {"files": [{"name": "a.png", "data": data, "content_type": "image/png"}, {"data": data}]}, "k": 1}
    files = take_outputs(result, s, "svc")
    assert [(f.name, f.data, f.content_type) for f in files] == [
        ("a.png", b"\x00\x01", "image/png"),
        ("output-1", b"\x00\x01", None),
    ]
    assert result == {"out": {}, "k": 1}


def test_take_outputs_without_the_field_or_setting():
    assert take_outputs({"a": 1}, settings(outputs_field="files"), "svc") == []
    result = {"files": [{"data": "AA=="}]}
    assert take_outputs(result, S, "svc") == [] and "files" in result  # no outputs_field: left alone


@pytest.mark.parametrize("files", ["text", [{"name": "x"}], [{"data": "not base64!"}], ["x"]])
def test_bad_output_files_are_transient(files):
    with pytest.raises(ConnectorError) as info:
        take_outputs({"files": files}, settings(outputs_field="files"), "svc")
    assert info.value.failure_class == "transient"


def test_model_names():
    assert model_names({"models": ["a", {"name": "b"}, {"id": "c"}, 3]}, S, "svc") == ["a", "b"]
    assert model_names([{"id": "x"}], settings(models_field="", models_name_field="id"), "svc") == ["x"]
    with pytest.raises(ConnectorError):
        model_names({"data": []}, S, "svc")
