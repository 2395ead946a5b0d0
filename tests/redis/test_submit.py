"""emp_submit: one job or a batch, all or nothing; refusals write nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.exceptions import ResponseError

from emp import defaults
from emp.errors import JobExists, JobValidationError
from emp.model import score as score_mod
from emp.model.job import check_batch_size, parse_submission
from emp.model.requirements import canonicalize
from emp.redis.calls import Calls
from tests.polling import wait_for
from tests.redis.helpers import (
    MAX_PAYLOAD,
    SERVICE,
    caps_with,
    claim,
    events,
    job_events,
    job_hash,
    namespace_keys,
    raw_wire,
    register,
    server_ms,
    sig_of,
    submit,
    wire,
)

pytestmark = pytest.mark.anyio


async def test_single_job_is_pending_with_its_fields_payload_and_queue_entry(calls: Calls) -> None:
    before = await server_ms(calls)
    req = {"hardware": {"gpu_memory_gb": 16}}
    st = await submit(
        calls,
        {"id": "j1", "priority": 70, "payload": {"prompt": "a cat", "steps": 20}, "requirements": req},
        customer_id="acme",
        workflow_id="wf1",
        step=1,
        total_steps=3,
        timeout_s=90,
    )
    assert st == ["pending"]
    h = await job_hash(calls, "j1")
    assert h["service"] == SERVICE and h["priority"] == "70" and h["status"] == "pending"
    assert h["customer_id"] == "acme" and h["workflow_id"] == "wf1"
    assert h["step"] == "1" and h["total_steps"] == "3" and h["max_attempts"] == "3"
    assert float(h["timeout_s"]) == 90
    assert h["sig"] == sig_of(SERVICE, req)
    assert before <= int(h["created_at"]) <= await server_ms(calls)
    # Empty optional fields are not stored.
    assert "workflow_priority" not in h and "run_at" not in h and "attempt" not in h
    # The payload lives in its own key, the requirements with the signature.
    assert json.loads(await calls.client.get(calls.keys.payload("j1"))) == {"prompt": "a cat", "steps": 20}
    assert await calls.client.hget(calls.keys.sigs(SERVICE), h["sig"]) == canonicalize(req).text
    # Queue entry: the documented score and member (emp.model.score is the twin).
    q = await calls.client.zrange(calls.keys.queue(SERVICE, h["sig"]), 0, -1, withscores=True)
    assert q == [(score_mod.member(int(h["seq"]), "j1"), float(score_mod.score(70, int(h["created_at"]))))]
    heads = await calls.client.zrange(calls.keys.heads(SERVICE), 0, -1, withscores=True)
    assert heads == [(f"{int(h['seq']):012x}" + h["sig"], q[0][1])]
    assert await calls.client.zrange(calls.keys.prefix + f"qwf:{SERVICE}:wf1", 0, -1) == [q[0][0]]
    assert await calls.client.zrange(calls.keys.prefix + f"qc:{SERVICE}:acme", 0, -1) == [q[0][0]]
    assert await calls.client.smembers(calls.keys.services) == {SERVICE}
    assert await calls.client.hget(calls.keys.stats, "submitted") == "1"


async def test_job_submitted_event_goes_to_the_global_stream_only(calls: Calls) -> None:
    await submit(calls, {"id": "j1", "priority": 60})
    evs = await events(calls)
    assert [e["type"] for e in evs] == ["job_submitted"]
    assert evs[0]["job"] == "j1"
    assert json.loads(evs[0]["data"]) == {"service": SERVICE, "priority": 60}
    assert int(evs[0]["ts"]) == int((await job_hash(calls, "j1"))["created_at"])
    # A pending job costs no stream of its own (docs/internals.md, "Events").
    assert await job_events(calls, "j1") == []


async def test_batch_gets_one_status_per_job_and_consecutive_seqs(calls: Calls) -> None:
    far = await server_ms(calls) + 3_600_000
    st = await submit(calls, "a", {"id": "b", "run_at": far}, "c")
    assert st == ["pending", "scheduled", "pending"]
    seqs = [int((await job_hash(calls, i))["seq"]) for i in "abc"]
    assert seqs == [1, 2, 3]
    assert await calls.client.get(calls.keys.prefix + "seq") == "3"
    assert [e["job"] for e in await events(calls, "job_submitted")] == ["a", "b", "c"]
    assert await calls.client.hget(calls.keys.stats, "submitted") == "3"


async def test_delayed_run_at_is_scheduled_not_queued(calls: Calls) -> None:
    run_at = await server_ms(calls) + 60_000
    assert await submit(calls, {"id": "later", "run_at": run_at}) == ["scheduled"]
    h = await job_hash(calls, "later")
    assert h["status"] == "scheduled" and h["run_at"] == str(run_at)
    assert await calls.client.zscore(calls.keys.scheduled, "later") == run_at
    assert await calls.client.zcard(calls.keys.queue(SERVICE, sig_of(SERVICE))) == 0
    sched = await events(calls, "job_scheduled")
    assert len(sched) == 1 and json.loads(sched[0]["data"]) == {"run_at": run_at}
    # Later events of a job also go to its own stream.
    assert [e["type"] for e in await job_events(calls, "later")] == ["job_scheduled"]


async def test_run_at_in_the_past_is_pending(calls: Calls) -> None:
    assert await submit(calls, {"id": "now", "run_at": 1_000}) == ["pending"]
    assert await calls.client.zcard(calls.keys.scheduled) == 0


async def _snapshot_of_writes(calls: Calls) -> tuple[set[str], str | None, int]:
    return (
        await namespace_keys(calls),
        await calls.client.get(calls.keys.prefix + "seq"),
        await calls.client.xlen(calls.keys.events),
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"priority": 1001},
        {"priority": "high"},
        {"max_attempts": 0},
        {"service": "Bad Service"},
        {"payload": "[1, 2]"},
        {"payload": '"text"'},
        {"requirements": "[]"},
        {"requirements": "not json"},
        {"requirements": '"gpu"'},
        {"id": "has space"},
        {"id": ""},
        {"timeout_s": "-1"},
        {"run_at": "tomorrow"},
        {"workflow_priority": "2000"},
    ],
    ids=lambda b: "-".join(f"{k}={v}" for k, v in b.items()),
)
async def test_a_bad_job_in_a_batch_refuses_the_whole_batch_and_writes_nothing(
    calls: Calls, bad: dict[str, str]
) -> None:
    await submit(calls, "existing")  # so seq and the event stream already exist
    before = await _snapshot_of_writes(calls)
    batch = [wire("ok1"), raw_wire("bad", **bad), wire("ok2")]
    with pytest.raises(JobValidationError, match="job 2"):
        await calls.submit(batch, MAX_PAYLOAD)
    assert await _snapshot_of_writes(calls) == before
    assert not await calls.client.exists(calls.keys.job("ok1"), calls.keys.job("ok2"), calls.keys.job("bad"))


async def test_a_bad_first_job_writes_nothing_in_a_fresh_namespace(calls: Calls) -> None:
    with pytest.raises(JobValidationError):
        await calls.submit([raw_wire("bad", payload="[]"), wire("ok")], MAX_PAYLOAD)
    assert await namespace_keys(calls) == set()


async def test_duplicate_id_is_refused_and_nothing_is_written(calls: Calls) -> None:
    await submit(calls, {"id": "dup", "priority": 10, "payload": {"v": 1}})
    before = await _snapshot_of_writes(calls)
    hash_before = await job_hash(calls, "dup")
    with pytest.raises(JobExists) as exc:
        await calls.submit([wire("fresh"), wire("dup", priority=99, payload={"v": 2})], MAX_PAYLOAD)
    assert exc.value.job_id == "dup"
    assert await _snapshot_of_writes(calls) == before
    assert await job_hash(calls, "dup") == hash_before
    assert json.loads(await calls.client.get(calls.keys.payload("dup"))) == {"v": 1}
    assert not await calls.client.exists(calls.keys.job("fresh"))


async def test_duplicate_id_inside_one_batch_is_refused(calls: Calls) -> None:
    with pytest.raises(JobValidationError, match="duplicate id"):
        await calls.submit([wire("x"), wire("x")], MAX_PAYLOAD)
    assert await namespace_keys(calls) == set()


async def test_oversized_payload_is_refused_in_lua_even_when_the_client_skips_its_check(calls: Calls) -> None:
    big = json.dumps({"blob": "x" * 2000})
    # The client-side check is skipped: a hand-built wire with a small limit passed to the Function.
    with pytest.raises(JobValidationError, match="payload is"):
        await calls.submit([raw_wire("big", payload=big)], 1000)
    assert await namespace_keys(calls) == set()
    # Exactly at the limit is fine.
    assert await calls.submit([raw_wire("fits", payload=big)], len(big)) == ["pending"]


async def test_wrong_argument_count_is_refused(calls: Calls) -> None:
    with pytest.raises(ResponseError, match="wrong argument count"):
        await calls.client.fcall("emp_submit", 1, calls.keys.events, calls.keys.prefix, MAX_PAYLOAD, 2, "only-one")
    with pytest.raises(JobValidationError):
        await calls.submit([], MAX_PAYLOAD)


async def test_submit_into_an_unworkable_signature_goes_straight_to_unworkable(calls: Calls) -> None:
    req = {"hardware": {"gpu_memory_gb": 80}}
    await submit(calls, {"id": "first", "requirements": req})
    assert (await calls.mark_unworkable(SERVICE, sig_of(SERVICE, req), 0))[0] == "OK"
    st = await submit(calls, {"id": "second", "requirements": req}, "plain")
    assert st == ["unworkable", "pending"]
    assert await calls.client.zscore(calls.keys.unworkable, "second") is not None
    assert await calls.client.zcard(calls.keys.queue(SERVICE, sig_of(SERVICE, req))) == 0
    assert [e["job"] for e in await events(calls, "job_unworkable") if e["job"] == "second"] == ["second"]


async def test_equal_requirements_in_any_key_order_share_one_signature(calls: Calls) -> None:
    await submit(
        calls,
        {"id": "a", "requirements": {"hardware": {"gpu_memory_gb": 16, "ram_gb": 32}, "pool": "std"}},
        {"id": "b", "requirements": {"pool": "std", "hardware.ram_gb": 32, "hardware.gpu_memory_gb": 16.0}},
        {"id": "c", "requirements": {"pool": "other"}},
    )
    sigs = {i: (await job_hash(calls, i))["sig"] for i in "abc"}
    assert sigs["a"] == sigs["b"] != sigs["c"]
    assert await calls.client.hlen(calls.keys.sigs(SERVICE)) == 2


async def test_customer_and_workflow_do_not_make_new_signatures(calls: Calls) -> None:
    await submit(calls, *[{"id": f"j{i}", "customer_id": f"c{i}", "workflow_id": f"wf{i}"} for i in range(20)])
    assert await calls.client.hlen(calls.keys.sigs(SERVICE)) == 1


async def test_submit_wakes_an_idle_worker_once(calls: Calls) -> None:
    await register(calls, "w1", wake_token="t1")
    await claim(calls, "w1")  # EMPTY: now idle
    await submit(calls, "a", "b")
    assert await calls.client.lrange(calls.keys.wake("t1"), 0, -1) == ["w1"]


async def test_ids_cannot_collide_with_another_jobs_subkeys(calls: Calls) -> None:
    """Regression: job ids may contain ':'. When the per-job stream was `job:<id>:events`, job
    "x:events" had job "x"'s stream as its hash key: the first event of "x" hit WRONGTYPE inside
    emp_claim *after* its first writes, leaving "x" in_progress under a lease nobody held and every
    later requeue failing the same way. Refusing such ids would also be a fine answer."""
    await register(calls, "w")
    await submit(calls, "x:events")
    try:
        await submit(calls, {"id": "x", "priority": 90})
    except JobValidationError:
        return  # refusing the id is a fine answer
    try:
        got = await claim(calls, "w", lease_ms=50)
    except ResponseError as exc:
        pytest.fail(f"a claim fails once ids 'x:events' and 'x' both exist: {exc}")
    assert getattr(got, "id", None) == "x"


async def test_payload_id_suffix_does_not_overwrite_another_job(calls: Calls) -> None:
    """Regression: with payloads at `job:<id>:payload`, submitting job "y:payload" then job "y"
    replaced the *hash* of job "y:payload" with y's payload string (an accepted job destroyed)."""
    await submit(calls, "y:payload")
    try:
        await submit(calls, "y")
    except JobValidationError:
        return
    assert await calls.client.type(calls.keys.job("y:payload")) == "hash", "job 'y:payload' was overwritten"


async def test_job_submitted_ts_is_server_time(calls: Calls) -> None:
    t0 = await server_ms(calls)
    await submit(calls, "a")
    ev = (await wait_for(lambda: events(calls, "job_submitted")))[0]
    assert t0 <= int(ev["ts"]) <= await server_ms(calls)


@pytest.mark.parametrize("payload", ["{oops", '{"a": 1', '{"a": 1} trailing'])
async def test_a_payload_that_is_not_json_is_refused(calls: Calls, payload: str) -> None:
    """BUG (submit.lua, `if string.sub(j.payload, 1, 1) ~= '{'`): the Function only looks at the
    first character, so a client that skips its own checks gets a broken payload accepted; the
    claim wrapper then turns the undecodable text into {} (calls._parse_claim), and the job runs
    silently with an empty payload. DESIGN 10: bad input gets a clear error and changes nothing.
    (Decoding costs Lua time per job; the alternative is to say in internals.md that the Function
    trusts the client's JSON and to make the worker fail such a job as malformed.)"""
    with pytest.raises(JobValidationError, match="payload"):
        await calls.submit([raw_wire("broken", payload=payload)], MAX_PAYLOAD)
    assert await namespace_keys(calls) == set()


# -- the submission limits, on both sides (emp/defaults.py is their one home) --------------------


def nested(depth: int) -> dict[str, Any]:
    """A JSON object whose objects nest ``depth`` levels deep (``{}`` is 1)."""
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


OVER_THE_LIMIT: list[tuple[str, dict[str, Any]]] = [
    ("service", {"service": "s" * (defaults.SERVICE_NAME_MAX + 1)}),
    ("id", {"id": "i" * (defaults.JOB_ID_MAX + 1)}),
    ("max_attempts", {"max_attempts": defaults.MAX_ATTEMPTS_CEILING + 1}),
    ("customer_id", {"customer_id": "c" * (defaults.TEXT_FIELD_MAX + 1)}),
    ("workflow_id", {"workflow_id": "w" * (defaults.TEXT_FIELD_MAX + 1)}),
    ("payload", {"payload": nested(defaults.MAX_JSON_DEPTH + 1)}),
    ("run_at", {"run_at": defaults.MAX_MS + 1}),
]
AT_THE_LIMIT: list[dict[str, Any]] = [
    {"service": "s" * defaults.SERVICE_NAME_MAX},
    {"id": "i" * defaults.JOB_ID_MAX},
    {"max_attempts": defaults.MAX_ATTEMPTS_CEILING},
    {"customer_id": "c" * defaults.TEXT_FIELD_MAX},
    {"payload": nested(defaults.MAX_JSON_DEPTH)},
]


def by_hand(fields: dict[str, Any]) -> dict[str, Any]:
    """The wire a client that skips its own checks would send for these fields."""
    wire_fields = {k: json.dumps(v) if k == "payload" else v for k, v in fields.items()}
    return raw_wire(wire_fields.pop("id", "j"), **wire_fields)


@pytest.mark.parametrize(("field", "fields"), OVER_THE_LIMIT, ids=[c[0] for c in OVER_THE_LIMIT])
async def test_a_limit_is_enforced_by_the_model_and_by_lua(calls: Calls, field: str, fields: dict[str, Any]) -> None:
    with pytest.raises(JobValidationError, match=field):
        parse_submission({"service": SERVICE, **fields})
    with pytest.raises(JobValidationError, match=f"job 1: {field}"):
        await calls.submit([by_hand(fields)], MAX_PAYLOAD)
    assert await namespace_keys(calls) == set()


@pytest.mark.parametrize("fields", AT_THE_LIMIT, ids=lambda f: next(iter(f)))
async def test_a_value_at_the_limit_is_accepted_by_both(calls: Calls, fields: dict[str, Any]) -> None:
    parse_submission({"service": SERVICE, **fields})
    assert await calls.submit([by_hand(fields)], MAX_PAYLOAD) == ["pending"]


async def test_a_batch_over_max_batch_is_refused_by_both(calls: Calls) -> None:
    with pytest.raises(JobValidationError, match="batch"):
        check_batch_size(defaults.MAX_BATCH + 1)
    check_batch_size(defaults.MAX_BATCH)
    too_many = [raw_wire(f"j{i}") for i in range(defaults.MAX_BATCH + 1)]
    with pytest.raises(JobValidationError, match="batch"):
        await calls.submit(too_many, MAX_PAYLOAD)
    assert await namespace_keys(calls) == set()
    assert len(await calls.submit(too_many[:-1], MAX_PAYLOAD)) == defaults.MAX_BATCH


async def test_an_oversized_payload_is_refused_by_both(calls: Calls) -> None:
    big = {"x": "y" * defaults.MAX_PAYLOAD_BYTES}
    with pytest.raises(JobValidationError, match="payload"):
        parse_submission({"service": SERVICE, "payload": big}).to_wire()
    with pytest.raises(JobValidationError, match="payload"):
        await calls.submit([by_hand({"payload": big})], defaults.MAX_PAYLOAD_BYTES)
    # No limit from the client at all: the library's own default applies.
    with pytest.raises(JobValidationError, match="payload"):
        await calls.submit([by_hand({"payload": big})], "")  # type: ignore[arg-type]
    assert await namespace_keys(calls) == set()


async def test_the_payload_depth_limit_is_put_back_after_each_decode(calls: Calls) -> None:
    """The payload's depth limit is cjson's own setting, shared by the whole Lua VM: after a refused
    payload, deeper JSON elsewhere (here a worker's capabilities, decoded with cjson's default) still
    decodes. (Requirements have the payload's depth limit too, since issue 13.)"""
    deep = json.dumps(nested(defaults.MAX_JSON_DEPTH + 1))
    with pytest.raises(JobValidationError, match="nested more than"):
        await calls.submit([raw_wire("too-deep", payload=deep)], MAX_PAYLOAD)
    with pytest.raises(JobValidationError, match="requirements is nested more than"):
        await calls.submit([raw_wire("deep-requirements", requirements=deep)], MAX_PAYLOAD)
    await register(calls, "w-deep-caps", caps={"deep": nested(defaults.MAX_JSON_DEPTH + 1)})
    assert await calls.client.hget(calls.keys.worker("w-deep-caps"), "status") == "idle"


# -- a batch groups its writes and wake-ups (docs/internals.md "Submit") --------------------------


async def test_a_batch_wakes_each_idle_worker_that_can_run_its_jobs_once(calls: Calls) -> None:
    for wid in ("w1", "w2", "w3"):
        await register(calls, wid, wake_token=f"t{wid}")
        await claim(calls, wid)  # nothing to run: idle
    await submit(calls, *[f"j{i}" for i in range(2)])
    woken = [wid for wid in ("w1", "w2", "w3") if await calls.client.lrange(calls.keys.wake(f"tw{wid[1]}"), 0, -1)]
    assert len(woken) == 2  # two jobs: two workers, the third stays idle
    await submit(calls, *[f"k{i}" for i in range(50)])
    for wid in ("w1", "w2", "w3"):
        assert await calls.client.lrange(calls.keys.wake(f"tw{wid[1]}"), 0, -1) == [wid]


async def test_a_batch_wakes_a_worker_restricted_to_its_workflow(calls: Calls) -> None:
    await register(calls, "wf-only", caps=caps_with(workflow_id="wf9"), wake_token="twf")
    await claim(calls, "wf-only")
    await submit(calls, "other", {"id": "mine", "workflow_id": "wf9"}, "other2")
    assert await calls.client.lrange(calls.keys.wake("twf"), 0, -1) == ["wf-only"]


@pytest.mark.parametrize(
    ("existing", "batch", "head"),
    [
        (50, [50, 50, 50], "old"),  # equal priority: the older job stays the head
        (50, [10, 90, 70], "b1"),  # the best of the batch is in its middle
        (90, [10, 50], "old"),
        (None, [50, 70, 70, 10], "b1"),
    ],
)
async def test_a_batch_leaves_the_queue_head_in_the_heads_index(
    calls: Calls, existing: int | None, batch: list[int], head: str
) -> None:
    if existing is not None:
        await submit(calls, {"id": "old", "priority": existing})
    await submit(calls, *[{"id": f"b{i}", "priority": p} for i, p in enumerate(batch)])
    qkey = calls.keys.queue(SERVICE, sig_of(SERVICE))
    q = await calls.client.zrange(qkey, 0, -1, withscores=True)
    assert len(q) == len(batch) + (existing is not None)
    first_member, first_score = q[0]
    assert first_member.endswith(":" + head)
    seq = int((await job_hash(calls, head))["seq"])
    heads = await calls.client.zrange(calls.keys.heads(SERVICE), 0, -1, withscores=True)
    assert heads == [(f"{seq:012x}" + sig_of(SERVICE), first_score)]


async def test_a_mixed_batch_puts_every_job_in_its_queue_and_indexes(calls: Calls) -> None:
    req = {"hardware": {"gpu_memory_gb": 80}}
    await submit(calls, {"id": "flagged", "requirements": req})
    assert (await calls.mark_unworkable(SERVICE, sig_of(SERVICE, req), 0))[0] == "OK"
    far = await server_ms(calls) + 3_600_000
    st = await submit(
        calls,
        {"id": "a", "customer_id": "acme"},
        {"id": "b", "workflow_id": "wf1", "customer_id": "acme"},
        {"id": "c", "requirements": req},
        {"id": "d", "run_at": far, "workflow_id": "wf1"},
        {"id": "e", "service": "ollama", "workflow_id": "wf1"},
    )
    assert st == ["pending", "pending", "unworkable", "scheduled", "pending"]

    def ids(members: list[str]) -> list[str]:
        return [m[13:] for m in members]

    p = calls.keys.prefix
    assert ids(await calls.client.zrange(calls.keys.queue(SERVICE, sig_of(SERVICE)), 0, -1)) == ["a", "b"]
    assert ids(await calls.client.zrange(calls.keys.queue("ollama", sig_of("ollama")), 0, -1)) == ["e"]
    assert ids(await calls.client.zrange(p + f"qc:{SERVICE}:acme", 0, -1)) == ["a", "b"]
    assert ids(await calls.client.zrange(p + f"qwf:{SERVICE}:wf1", 0, -1)) == ["b"]
    assert ids(await calls.client.zrange(p + "qwf:ollama:wf1", 0, -1)) == ["e"]
    assert ids(await calls.client.zrange(p + f"uq:{SERVICE}:{sig_of(SERVICE, req)}", 0, -1)) == ["flagged", "c"]
    assert "c" in await calls.client.zrange(calls.keys.unworkable, 0, -1)
    assert await calls.client.smembers(calls.keys.services) == {SERVICE, "ollama"}
    for job_id in "abcde":
        assert (await job_hash(calls, job_id))["status"] == st["abcde".index(job_id)]
        assert await calls.client.get(calls.keys.payload(job_id)) == "{}"
    evs = [(e["type"], e["job"]) for e in await events(calls)][1:]  # after the first submit's event
    assert [t for t, _ in evs if t == "job_submitted"] == ["job_submitted"] * 5
    assert [j for t, j in evs if t == "job_submitted"] == list("abcde")
    assert ("job_unworkable", "c") in evs and ("job_scheduled", "d") in evs


@pytest.mark.parametrize(("order", "error"), [("exists-first", JobExists), ("bad-first", JobValidationError)])
async def test_a_batch_refuses_with_the_error_of_its_first_bad_job(
    calls: Calls, order: str, error: type[Exception]
) -> None:
    await submit(calls, "taken")
    bad = raw_wire("bad", priority="x")
    batch = [wire("ok"), wire("taken"), bad] if order == "exists-first" else [wire("ok"), bad, wire("taken")]
    before = await _snapshot_of_writes(calls)
    with pytest.raises(error):
        await calls.submit(batch, MAX_PAYLOAD)
    assert await _snapshot_of_writes(calls) == before


async def test_copies_of_one_bad_payload_are_all_refused(calls: Calls) -> None:
    """Texts are judged once per call: a refused text is refused for every job that carries it."""
    with pytest.raises(JobValidationError, match="job 1: payload"):
        await calls.submit([raw_wire(f"j{i}", payload="{oops") for i in range(3)], MAX_PAYLOAD)
    with pytest.raises(JobValidationError, match="job 2: requirements"):
        await calls.submit([wire("fine"), raw_wire("j", requirements="[]")], MAX_PAYLOAD)
    assert await namespace_keys(calls) == set()


async def _fcall_submit(calls: Calls, *args: Any) -> Any:
    return await calls.client.fcall("emp_submit", 1, calls.keys.events, calls.keys.prefix, MAX_PAYLOAD, *args)


async def test_the_plain_form_of_fourteen_values_a_job_is_still_accepted(calls: Calls) -> None:
    """What clients before the shared form send (SUBMIT_FIELDS per job)."""
    from emp.redis.calls import SUBMIT_FIELDS

    jobs = [wire("p1", priority=70), wire("p2", customer_id="acme")]
    flat = ["" if (v := w.get(f)) is None else v for w in jobs for f in SUBMIT_FIELDS]
    assert await _fcall_submit(calls, 2, *flat) == ["OK", "pending", "pending"]
    assert (await job_hash(calls, "p1"))["priority"] == "70"
    assert (await job_hash(calls, "p2"))["customer_id"] == "acme"


async def test_jobs_of_several_templates_keep_their_own_fields(calls: Calls) -> None:
    batch = [wire("a", priority=10), wire("b", priority=90), wire("c", priority=10), wire("d", workflow_id="wf")]
    assert await calls.submit(batch, MAX_PAYLOAD) == ["pending"] * 4
    got = {i: await job_hash(calls, i) for i in "abcd"}
    assert [got[i]["priority"] for i in "abcd"] == ["10", "90", "10", "50"]
    assert "workflow_id" not in got["c"] and got["d"]["workflow_id"] == "wf"


@pytest.mark.parametrize(
    ("count", "tail"),
    [
        ("2:1", ["a", "1"]),  # one pair short
        ("1:2", ["a", "1"]),  # more templates than jobs
        ("1:0", ["a", "1"]),
        ("1:1", ["a", "2"]),  # no such template
        ("1:1", ["a", "x"]),
        ("x:1", ["a", "1"]),
    ],
)
async def test_a_malformed_shared_form_is_refused(calls: Calls, count: str, tail: list[str]) -> None:
    from emp.redis.calls import SUBMIT_FIELDS

    template = ["" if (v := wire("t").get(f)) is None else v for f in SUBMIT_FIELDS[1:]]
    with pytest.raises(ResponseError, match="EMP_INVALID batch"):
        await _fcall_submit(calls, count, *template, *tail)
    assert await namespace_keys(calls) == set()
    # The same template with a well-formed tail is fine.
    assert await _fcall_submit(calls, "2:1", *template, "a", 1, "b", 1) == ["OK", "pending", "pending"]
