"""GET /api/stats and /metrics against jobs driven through a worker's calls; /metrics is checked line
by line against the Prometheus text format."""

from __future__ import annotations

import math
import re

import pytest

from emp import defaults
from tests.coordinator.conftest import Api, ApiFactory
from tests.coordinator.helpers import SERVICE, start_job
from tests.redis.helpers import claim_job

pytestmark = pytest.mark.anyio

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)"
SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? ({_VALUE})$")
HELP = re.compile(rf"^# HELP ({_NAME}) .*$")
TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")


def parse_prometheus(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """A strict parser of the text format: family -> [(sample name, labels, value)]. Fails on any
    line that is not HELP, TYPE or a sample, on a sample before its TYPE, on a repeated family."""
    assert text.endswith("\n")
    families: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    kinds: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if m := HELP.match(line):
            continue
        if m := TYPE.match(line):
            name = m.group(1)
            assert name not in kinds, f"family {name} declared twice"
            kinds[name] = m.group(2)
            families[name] = []
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus line: {line!r}"
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(3)
        assert current is not None
        suffixes = ("_bucket", "_sum", "_count") if kinds[current] == "histogram" else ("",)
        assert any(name == current + s for s in suffixes), f"{name} outside its family {current}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels_text))
        families[current].append((name, labels, float(value)))
    return families


async def _drive(api: Api) -> None:
    jobs = [{"id": f"j{i}", "service": SERVICE} for i in range(4)]
    assert (await api.http.post("/api/jobs", json=jobs)).status_code == 201
    first = await start_job(api.calls)
    await api.calls.complete(first.id, first.attempt, "w1", "{}")
    second = await claim_job(api.calls, "w1")
    await api.calls.complete(second.id, second.attempt, "w1", "{}")
    third = await claim_job(api.calls, "w1")
    await api.calls.fail(third.id, third.attempt, "w1", "malformed", "bad input", 0.0)


async def test_stats(api: Api) -> None:
    await _drive(api)
    resp = await api.http.get("/api/stats")
    assert resp.status_code == 200, resp.text
    stats = resp.json()
    assert stats["jobs"]["completed"] == 2 and stats["jobs"]["failed"] == 1 and stats["jobs"]["pending"] == 1
    [svc] = stats["depth"]
    assert svc["service"] == SERVICE and svc["pending"] == 1 and svc["signatures"][0]["pending"] == 1
    assert [w["window_s"] for w in stats["windows"]] == list(defaults.STATS_WINDOWS_S)
    for w in stats["windows"]:
        assert w["ended"] == {"completed": 2, "failed": 1, "cancelled": 0}
        assert math.isclose(w["success_rate"], 2 / 3)
        assert math.isclose(w["throughput_per_s"], 2 / w["window_s"])
        assert w["wait_s"]["count"] == 3 and w["run_s"]["count"] == 3 and not w["sampled"]
        assert 0 <= w["wait_s"]["p50"] <= w["wait_s"]["p99"] <= w["wait_s"]["max"]
    # The dashboards' sparkline: one count a minute, the oldest first: all three ended in this minute.
    assert stats["per_minute"]["completed"] == [0] * (defaults.STATS_SPARK_MINUTES - 1) + [2]
    assert stats["per_minute"]["failed"] == [0] * (defaults.STATS_SPARK_MINUTES - 1) + [1]
    assert stats["oldest_pending_s"] is not None and 0 <= stats["oldest_pending_s"] < 60


async def test_metrics_parse_as_prometheus_text(api: Api) -> None:
    await _drive(api)
    resp = await api.http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    fam = parse_prometheus(resp.text)
    assert fam["emp_up"][0][2] == 1
    assert fam["emp_redis_latency_seconds"][0][2] > 0
    jobs = {s[1]["status"]: s[2] for s in fam["emp_jobs"]}
    assert jobs["completed"] == 2 and jobs["failed"] == 1 and jobs["pending"] == 1
    assert [(s[1]["service"], s[2]) for s in fam["emp_queue_depth"]] == [(SERVICE, 1)]
    ended = {(s[1]["status"], s[1]["failure_class"]): s[2] for s in fam["emp_jobs_ended_recent"]}
    assert ended == {("completed", ""): 2, ("failed", "malformed"): 1}
    assert fam["emp_jobs_submitted_total"][0][2] == 4
    assert {s[1]["state"] for s in fam["emp_workers"]} == {"idle"}
    for hist in ("emp_job_wait_seconds_recent", "emp_job_run_seconds_recent"):
        buckets = [(s[1]["le"], s[2]) for s in fam[hist] if s[0].endswith("_bucket")]
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), "buckets are cumulative"
        assert buckets[-1] == ("+Inf", 3)
        assert [s[2] for s in fam[hist] if s[0].endswith("_count")] == [3]


async def test_metrics_and_health_when_redis_is_down(start_api: ApiFactory) -> None:
    api = await start_api()
    api.client.redis_url = "redis://127.0.0.1:1/0"  # a port nothing listens on
    await api.client.aclose()  # the next call connects again, to the dead URL
    resp = await api.http.get("/metrics")
    assert resp.status_code == 200
    assert parse_prometheus(resp.text)["emp_up"][0][2] == 0
    resp = await api.http.get("/health")
    assert resp.status_code == 503 and resp.json()["redis"] == "unreachable"
    resp = await api.http.get("/api/jobs")
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "unavailable"
    assert "127.0.0.1:1" not in resp.text
