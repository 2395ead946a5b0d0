"""The pure parts: the original body's mapping, the stats arithmetic, the metrics text, the settings."""

from __future__ import annotations

import pytest

from emp.coordinator.api.compat import from_original
from emp.coordinator.api.errors import fields_of
from emp.coordinator.api.metrics import Metric, escape_label, format_value, histogram, render
from emp.coordinator.api.stats import EndedJob, depths, percentile, window_stats
from emp.coordinator.settings import CoordinatorSettings, bind_refusal, is_loopback, load_coordinator_settings
from emp.errors import ConfigError, JobValidationError


def test_from_original_maps_field_by_field() -> None:
    doc = {
        "service_required": "comfyui",
        "message_id": "m1",
        "current_step": 2,
        "max_retries": 4,
        "timeout_minutes": 1.5,
        "workflow_datetime": "1970-01-01T00:00:01Z",
        "retry_count": 0,
        "ctx": {},
        "created_at": "x",
    }
    assert from_original(doc) == {
        "service_required": "comfyui",
        "id": "m1",
        "step": 2,
        "max_attempts": 4,
        "timeout_s": 90.0,
        "workflow_datetime": 1000,
    }
    native = {"service": "simulation", "id": "a", "step": 1, "workflow_datetime": 5}
    assert from_original(native) == native
    assert from_original({"id": "a", "message_id": "a", "step_number": None}) == {"id": "a"}
    with pytest.raises(JobValidationError) as info:
        from_original({"id": "a", "message_id": "b", "workflow_datetime": "soon", "timeout_minutes": -1})
    assert [p.split(":")[0] for p in info.value.problems] == ["message_id", "workflow_datetime", "timeout_minutes"]


def test_fields_of_problem_lines() -> None:
    problems = [
        "priority: must be between 0 and 1000",
        "unknown field 'x'",
        "jobs[2]: unknown field 'y'",
        "jobs[1].service: required",
        "batch: 0 jobs, a submit call takes 1 to 1000",
    ]
    assert fields_of(problems) == ["priority", "x", "jobs[2].y", "jobs[1].service", "batch"]


def _job(status: str, created: int, started: int | None, finished: int, run_at: int | None = None) -> EndedJob:
    return EndedJob(status, "svc", None, created, run_at, started, started, finished)


def test_percentiles_and_windows() -> None:
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([3.0], 1) == 3.0
    now = 1_000_000
    rows = [
        _job("completed", now - 50_000, now - 40_000, now - 10_000),  # waited 10 s, ran 30 s
        _job("failed", now - 20_000, now - 19_000, now - 5_000, run_at=now - 19_500),  # waited 0.5 s (run_at)
        _job("cancelled", now - 400_000, None, now - 100_000),  # never started; outside the 60 s window
    ]
    counts = {"completed": [1, 5], "failed": [1, 1], "cancelled": [0, 1]}
    w60, w300 = window_stats([60, 300], counts, rows, now)
    assert w60.ended == {"completed": 1, "failed": 1, "cancelled": 0}
    assert w60.success_rate == 0.5 and w60.throughput_per_s == 1 / 60
    assert w60.wait_s.count == 2 and w60.wait_s.max == 10.0 and w60.wait_s.p50 == 0.5
    assert w60.run_s.max == 30.0 and not w60.sampled
    assert w300.sampled, "5 completed in the window, 1 in the sample"
    assert w300.success_rate == 5 / 6
    [svc] = depths(
        [{"service": "a", "sig": "s1", "pending": "3", "unworkable_count": 1, "head_created_at": now - 2000}], now
    )
    assert svc.pending == 3 and svc.unworkable == 1 and svc.signatures[0].head_age_s == 2.0


def test_metrics_text() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert [format_value(v) for v in (1.0, 0.25, float("inf"), float("nan"), 3)] == ["1", "0.25", "+Inf", "NaN", "3"]
    m = Metric("x_total", "counter", "help with \\ and\nnewline")
    m.add(2, a='q"')
    h = histogram("h_seconds", "h", {(("s", "a"),): [0.2, 3.0]}, [1.0, 5.0])
    text = render([m, h])
    assert text.splitlines() == [
        "# HELP x_total help with \\\\ and\\nnewline",
        "# TYPE x_total counter",
        'x_total{a="q\\""} 2',
        "# HELP h_seconds h",
        "# TYPE h_seconds histogram",
        'h_seconds_bucket{s="a",le="1"} 1',
        'h_seconds_bucket{s="a",le="5"} 2',
        'h_seconds_bucket{s="a",le="+Inf"} 2',
        'h_seconds_sum{s="a"} 3.2',
        'h_seconds_count{s="a"} 2',
    ]


def test_settings_tokens_and_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMP_API_TOKEN", " one-token , two-token ")
    monkeypatch.setenv("EMP_CORS_ORIGINS", "https://a.example/,*")
    monkeypatch.setenv("EMP_REDIS_URL", "redis://x")  # emp.config's variables are not errors here
    s = load_coordinator_settings(host="0.0.0.0")
    assert s.tokens() == ["one-token", "two-token"] and s.cors_origins == ["https://a.example", "*"]
    assert "one-token" not in repr(s) and "one-token" not in str(s.model_dump())
    assert bind_refusal(s) is None
    monkeypatch.delenv("EMP_API_TOKEN")
    s = load_coordinator_settings(host="0.0.0.0")
    assert bind_refusal(s) is not None and "EMP_API_TOKEN" in (bind_refusal(s) or "")
    assert bind_refusal(load_coordinator_settings(host="0.0.0.0", insecure=True)) is None
    assert bind_refusal(CoordinatorSettings(host="127.0.0.1")) is None
    assert is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("my-host")
    with pytest.raises(ConfigError) as info:
        load_coordinator_settings(api_tokens="has space")
    assert "EMP_API_TOKEN" in str(info.value) and "has space" not in str(info.value)
