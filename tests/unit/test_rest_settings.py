"""The REST connector's options: defaults, and a clear error for each kind of bad option."""

from __future__ import annotations

import pytest

from emp.worker.connectors.rest_settings import RestSettings, parse_settings

URL = "http://127.0.0.1:8080"


def test_defaults():
    s = parse_settings(URL, {})
    assert s == RestSettings(url=URL)
    assert (s.mode, s.submit_path, s.method, s.health_path, s.poll_interval_s) == ("sync", "/", "POST", "/health", 0.5)
    assert "completed" in s.done_values and "failed" in s.failed_values


def test_options_are_read_and_normalised():
    s = parse_settings(
        URL,
        {
            "mode": "async",
            "method": "put",
            "done_values": ["OK"],
            "headers": {"Authorization": "Bearer x"},
            "timeout_s": 5,
            "poll_error_limit": 0,
            "models": ["m"],
        },
    )
    assert s.mode == "async" and s.method == "PUT" and s.done_values == ("ok",)
    assert s.headers == {"Authorization": "Bearer x"} and s.timeout_s == 5.0 and s.poll_error_limit == 0
    assert s.models == ("m",)


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        (None, {}, "url: the rest connector needs"),
        ("ftp://x", {}, "url: expected an http:// or https:// URL"),
        (URL, {"mdoe": "sync"}, "mdoe: unknown option of the rest connector"),
        (URL, {"mode": "stream"}, "mode: expected one of sync, async"),
        (URL, {"method": "GET"}, "method: expected one of POST, PUT, PATCH"),
        (URL, {"timeout_s": "60"}, "timeout_s: expected a positive number"),
        (URL, {"timeout_s": 0}, "timeout_s: expected a positive number"),
        (URL, {"poll_interval_s": True}, "poll_interval_s: expected a positive number"),
        (URL, {"poll_error_limit": 1.5}, "poll_error_limit: expected a non-negative integer"),
        (URL, {"submit_path": "run"}, 'submit_path: expected a path starting with "/"'),
        (URL, {"done_values": "completed"}, "done_values: expected a list of non-empty strings"),
        (URL, {"headers": {"X": 1}}, "headers: expected a table of string values"),
        (URL, {"id_field": ""}, "id_field: expected a non-empty string"),
        (URL, {"mode": "async", "status_path": "/status"}, "status_path: async mode needs the job id"),
        (URL, {"status_path": "/jobs/{job}"}, "status_path: '/jobs/{job}' may contain only {id}"),
        (URL, {"cancel_path": "/jobs/{id}/cancel"}, "cancel_path: a sync job has no id"),
        (URL, {"done_values": ["x"], "failed_values": ["x"]}, "cannot be both success and failure"),
    ],
)
def test_bad_options_name_the_key(url, options, message):
    with pytest.raises(ValueError) as info:
        parse_settings(url, options)
    assert message in str(info.value)


def test_header_values_are_never_quoted_in_errors():
    with pytest.raises(ValueError) as info:
        parse_settings(URL, {"headers": {"Authorization": "Bearer secret-token", "X": 1}})
    assert "secret-token" not in str(info.value)
