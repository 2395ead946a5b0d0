"""Fuzzing the API from its own /openapi.json (schemathesis): no 500, no unhandled error, every answer
as the description says (status, content type, body schema), and what the description allows is
accepted (a 422 for a request the description calls valid means the two disagree).

The app runs on a free loopback port over the session's redis-server (``start_api``); the fuzzer is
synchronous, so it runs in a worker thread while the app keeps serving on the test's event loop.
Every operation gets a bounded number of examples in each generation mode (valid and invalid
requests), derandomized so that CI sends the same ones on every run.

The event stream (``GET /api/jobs/{id}/events``) only ends when its job ends: it is fuzzed first,
while the namespace holds no job (every id answers 404 at once), then pinned to a job that has
ended (the stream ends after its events), never after other operations created live jobs. Every
request has a timeout as well, so a stream that does not end fails the test instead of hanging it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.coordinator.conftest import TOKEN, Api

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

EXAMPLES = 40
"""Examples per operation and generation mode (measured: both tests together take ~15 s)."""

ENDED_EXAMPLES = 20
"""Examples of the stream of an ended job: a resume point past its last event waits one block
(API_SSE_BLOCK_MS, 1 s) before the stream ends, so these are fewer."""

REQUEST_TIMEOUT_S = 10.0
"""No answer may take longer: a stream that never ends fails here instead of hanging the run."""

EVENTS = "GET /api/jobs/{id}/events"

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

OPAQUE: dict[str, set[str]] = {"GET /api/jobs": {"cursor"}, "POST /api/flows": {"steps", "id"}}
"""Parameters the description cannot constrain (a cursor is opaque: a made-up one is refused; a flow's
edges must name its own steps and form no cycle, and a flow id may be taken already)."""


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure shows its case (and curl) as found
        print_blob=True,
    )


Check = Callable[[schemathesis.Case, schemathesis.Response, GenerationMode], None]


@dataclass
class Fuzzer:
    """Sends each operation's examples to the app; records the statuses it got, per operation."""

    base_url: str
    headers: dict[str, str]
    seen: dict[str, set[int]] = field(default_factory=dict)
    unnegatable: set[str] = field(default_factory=set)
    """Operations with nothing the description lets the fuzzer make invalid (no parameters)."""

    def fuzz(self, op: APIOperation, check: Check, examples: int = EXAMPLES, **fixed: Any) -> None:
        """``examples`` valid requests to ``op``, then as many invalid ones; ``fixed``: values not fuzzed."""
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                self._fuzz(op, check, examples, mode, fixed)
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise
                self.unnegatable.add(op.label)

    def _fuzz(self, op: APIOperation, check: Check, examples: int, mode: GenerationMode, fixed: Any) -> None:
        with requests.Session() as session:

            @_settings(examples)
            @given(case=op.as_strategy(generation_mode=mode, **fixed))
            def one(case: schemathesis.Case) -> None:
                response = case.call(
                    base_url=self.base_url, session=session, headers=self.headers, timeout=REQUEST_TIMEOUT_S
                )
                self.seen.setdefault(op.label, set()).add(response.status_code)
                check(case, response, mode)

            one()


async def _operations(api: Api) -> dict[str, APIOperation]:
    resp = await api.http.get("/openapi.json")
    assert resp.status_code == 200
    schema = schemathesis.openapi.from_dict(resp.json())
    return {op.label: op for op in (result.ok() for result in schema.get_all_operations())}


def _conforms(case: schemathesis.Case, response: schemathesis.Response, mode: GenerationMode) -> None:
    """The description's checks, and: a request it calls valid is not refused as invalid."""
    case.validate_response(response, checks=CHECKS)
    if mode is GenerationMode.POSITIVE and response.status_code == 422:
        fields = set(json.loads(response.text)["error"]["fields"])
        label = case.operation.label
        assert fields <= OPAQUE.get(label, set()), f"{label}: the description allows what is refused: {response.text}"


async def test_fuzzing_with_the_token_finds_no_500_and_answers_as_described(api: Api) -> None:
    ops = await _operations(api)
    fuzzer = Fuzzer(api.url, {"Authorization": f"Bearer {TOKEN}"})

    # 1. The stream, while no job exists: every answer is immediate (404 for any well-formed request).
    await anyio.to_thread.run_sync(lambda: fuzzer.fuzz(ops[EVENTS], _conforms))
    assert 404 in fuzzer.seen[EVENTS] and 200 not in fuzzer.seen[EVENTS]

    # 2. The stream of a job that has ended: it ends after the job's last event.
    resp = await api.http.post("/api/jobs", json={"id": "ended", "service": "simulation"})
    assert resp.status_code == 201
    assert (await api.http.post("/api/jobs/ended/cancel")).json()["cancelled"] is True
    await anyio.to_thread.run_sync(
        lambda: fuzzer.fuzz(ops[EVENTS], _conforms, ENDED_EXAMPLES, path_parameters={"id": "ended"})
    )
    assert 200 in fuzzer.seen[EVENTS]

    # 3. Everything else: submissions first, so that reads, cancels and retries meet real jobs.
    others = sorted((label for label in ops if label != EVENTS), key=lambda label: label != "POST /api/jobs")

    def fuzz_others() -> None:
        for label in others:
            fuzzer.fuzz(ops[label], _conforms)

    await anyio.to_thread.run_sync(fuzz_others)

    assert fuzzer.seen.keys() == ops.keys(), "every operation was fuzzed"
    assert not any(500 in codes for codes in fuzzer.seen.values()), fuzzer.seen
    assert fuzzer.unnegatable <= {"GET /health", "GET /openapi.json"}, fuzzer.unnegatable
    # The fuzzer got through the checks to the work (the description's valid requests are valid).
    assert 201 in fuzzer.seen["POST /api/jobs"] and 200 in fuzzer.seen["GET /api/jobs"]
    counts = await api.client.count()
    assert sum(counts.values()) > 1, counts


async def test_fuzzing_without_the_token_answers_401_on_every_protected_operation(api: Api) -> None:
    ops = await _operations(api)
    public = {label for label, op in ops.items() if not op.definition.raw.get("security")}
    assert public == {"GET /health", "GET /openapi.json"}
    fuzzer = Fuzzer(api.url, {})  # generated requests carry a made-up bearer token, or none at all

    def refused(case: schemathesis.Case, response: schemathesis.Response, mode: GenerationMode) -> None:
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
        label = case.operation.label
        if label not in public:
            assert response.status_code == 401, f"{label} answered {response.status_code} without the token"
            assert json.loads(response.text)["error"]["code"] == "unauthorized"
            assert TOKEN not in response.text

    def fuzz_all() -> None:
        for op in ops.values():
            fuzzer.fuzz(op, refused)

    await anyio.to_thread.run_sync(fuzz_all)
    assert fuzzer.seen.keys() == ops.keys()
    assert all(fuzzer.seen[label] == {401} for label in ops.keys() - public), fuzzer.seen
    assert sum((await api.client.count()).values()) == 0, "nothing was written"
