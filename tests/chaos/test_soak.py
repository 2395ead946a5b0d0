"""`emp bench soak` (issue 13 part 5): a short soak with faults ends with a clean checker verdict.

The real command line, as a user runs it (`emp bench soak --minutes 0.3 --json`), with a shorter
lease, a fault every 1.5 s and a crash job early so that 18 s see several kinds of fault; the report
must carry the verdict, the throughput and the faults, and the exit code must follow the verdict.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from emp.bench.soak_plan import (
    FAULT_KINDS,
    SoakPlan,
    completions_per_bucket,
    fault_duration_s,
    job_payload,
    parse_faults,
    per_minute,
)
from emp.model.events import Event, EventType

pytestmark = pytest.mark.timeout(150)


def test_a_short_soak_with_faults_loses_nothing_and_commits_nothing_twice() -> None:
    argv = [sys.executable, "-m", "emp", "bench", "soak", "--minutes", "0.3", "--json"]
    argv += ["--lease", "3", "--fault-every", "1.5", "--poison-every", "20", "--seed", "7"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=140)
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout)
    shown = json.dumps({k: v for k, v in report.items() if k != "fault_log"})[:4000] + done.stderr[-2000:]

    verdict = report["verdict"]
    assert done.returncode == 0 and report["ok"] and verdict["ok"], shown
    for name in ("lost", "duplicated_commits", "multiple_terminals", "concurrent_attempts", "over_limits"):
        assert verdict[name] == 0, shown
    assert verdict["unexpected"] == 0 and report["recorder_gaps"] == [] and report["settled"], shown
    # the mix ran: jobs completed, the malformed ones and the poison job failed, retries happened
    assert verdict["accepted"] >= 100 and verdict["outcomes"]["completed"] >= 80, shown
    assert verdict["outcomes"].get("failed", 0) >= report["jobs_submitted"].get("malformed", 0) + 1, shown
    assert verdict["attempts"] > verdict["accepted"], shown
    # faults were injected, of several kinds, and the poison job killed worker processes
    assert sum(report["faults"].values()) >= 6 and len(report["faults"]) >= 3, shown
    assert report["workers"]["crashed"] >= 1 and report["workers"]["started"] > 4, shown
    # throughput over time, from the job_completed events
    throughput = report["throughput"]
    assert throughput["bucket_s"] == 10 and sum(throughput["completed"]) == verdict["outcomes"]["completed"], shown
    assert sum(throughput["per_minute"]) == sum(throughput["completed"]), shown


def test_the_plan_parts_are_pure_and_bounded() -> None:
    """The soak's pure pieces: fault names, fault lengths within their bounds, completions per bucket."""
    assert parse_faults(None) == FAULT_KINDS and parse_faults("none") == ()
    assert parse_faults("pause, kill") == ("kill", "pause")  # canonical order
    with pytest.raises(ValueError, match="nope"):
        parse_faults("kill,nope")
    with pytest.raises(ValueError):
        SoakPlan(faults=("kill", "nope"))

    plan, rng = SoakPlan(lease_s=3.0), random.Random(5)
    for _ in range(200):
        # a worker frozen past its lease, but by less than 1.4 leases: the fencing bound the checker uses
        assert 3.3 <= fault_duration_s(rng, "pause", plan) <= 3.9
        # Redis frozen well inside a lease; network blips no longer than one reply timeout
        assert 0 < fault_duration_s(rng, "redis_pause", plan) <= 1.0
        assert 0 < fault_duration_s(rng, "blackhole", plan) <= plan.reply_timeout_s < plan.lease_s
    kinds = {job_payload(rng)[0] for _ in range(500)}
    assert kinds == {"noop", "short", "long", "transient", "malformed"}

    def completed(ts: int) -> Event:
        return Event(id=f"{ts}-0", type=EventType.JOB_COMPLETED, ts=ts, job="j")

    events = [completed(1_000), completed(10_999), completed(11_000), completed(75_000), completed(500)]
    events.append(Event(id="1-1", type=EventType.JOB_STARTED, ts=2_000, job="j"))
    buckets = completions_per_bucket(events, start_ms=1_000, end_ms=80_000)
    assert buckets == [2, 1, 0, 0, 0, 0, 0, 1] and per_minute(buckets) == [3, 1]
