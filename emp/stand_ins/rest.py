"""A fake generic REST service, synchronous and asynchronous, for the ``rest`` connector.

Run: ``python -m emp.stand_ins.rest --port N [--host H] [--step-ms 20]``; prints ``READY <url>``.

Endpoints:

- ``POST /run`` (sync): works ``steps`` x ``step_ms``, then answers 200
  ``{"status": "completed", "result": {...}}``.
- ``POST /jobs`` (async): answers 202 ``{"id": "<hex>", "status": "queued"}``; the job then runs in
  the background, one step every ``step_ms``.
- ``GET /jobs/{id}``: ``{"id", "status": "queued"|"running"|"completed"|"failed"|"cancelled",
  "progress": 0..1, "result"?, "error"?, "error_class"?}``; 404 ``{"error"}`` for an unknown id.
- ``POST /jobs/{id}/cancel``: stops the job (status ``cancelled``), 404 for an unknown id.
- ``POST /interrupt``: stops every running sync ``/run`` (it answers 500 ``{"error": "interrupted"}``).
- ``GET /health`` -> ``{"status": "ok"}``; ``GET /models`` -> ``{"models": [{"name": ...}, ...]}``.
- ``GET /_fake/state`` (for tests): ``{"cancels": [ids...], "interrupts": n, "jobs": {id: status},
  "runs": n}``.

The result is ``{"echo": payload.echo, "steps": n, "files": [...]}``; ``files`` is there when the
payload has ``"outputs": k``: k files ``{name, data (base64), content_type}`` (PNG-like bytes).

Triggers, all in the JSON payload:

=======================  ============================================================================
``"steps": n``           work n steps (default 3); ``"step_ms": m`` overrides ``--step-ms`` for the job
``"fail": "bad_request"``  400 ``{"error": "...", "error_class": "malformed"}`` (sync and async)
``"fail": "oom"``        sync: 500 CUDA OOM body with ``error_class: resource_exhausted``; async: the
                         job fails half-way with that error and class
``"fail": "error"``      sync: 500 ``{"error": "model crashed"}``; async: status ``failed`` with that
                         error and no class
``"fail": "failed_200"``   sync: 200 ``{"status": "failed", "error": ...}`` (a failure in a 200)
``"fail": "garbage"``    200 with an HTML body (not JSON), sync and async submit
``"fail": "no_id"``      async: 202 JSON without an ``id``
``"fail": "flaky_poll"``   async: the first 2 polls of the job answer 502, then it behaves
=======================  ============================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from emp.stand_ins.serving import run_app

DEFAULT_STEP_MS = 20
MODELS = ["fake-rest-small", "fake-rest-large"]
OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.69 GiB total capacity)"
FLAKY_POLLS = 2


def payload_ok(steps: int = 3, **extra: Any) -> dict[str, Any]:
    return {"steps": steps, "echo": "hello", **extra}


def payload_invalid() -> dict[str, Any]:
    return {"fail": "bad_request"}


def payload_oom() -> dict[str, Any]:
    return {"fail": "oom", "steps": 2}


def payload_slow(steps: int = 10_000) -> dict[str, Any]:
    """A job that runs until cancelled (10,000 steps x step_ms)."""
    return {"steps": steps, "echo": "slow"}


def payload_garbage() -> dict[str, Any]:
    return {"fail": "garbage"}


def payload_outputs(k: int = 2) -> dict[str, Any]:
    return payload_ok(outputs=k)


def file_bytes(i: int) -> bytes:
    """The content of output file ``i`` (tests compare stored files with it)."""
    return b"\x89PNG\r\n\x1a\n" + f"fake image {i}".encode()


def result_for(payload: dict[str, Any], steps: int) -> dict[str, Any]:
    result: dict[str, Any] = {"echo": payload.get("echo"), "steps": steps}
    k = payload.get("outputs")
    if isinstance(k, int) and k > 0:
        result["files"] = [
            {"name": f"image-{i}.png", "data": base64.b64encode(file_bytes(i)).decode(), "content_type": "image/png"}
            for i in range(k)
        ]
    return result


@dataclass
class FakeJob:
    id: str
    payload: dict[str, Any]
    status: str = "queued"
    progress: float = 0.0
    result: Any = None
    error: str | None = None
    error_class: str | None = None
    polls: int = 0
    task: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status, "progress": round(self.progress, 4)}
        if self.status == "completed":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        if self.error_class is not None:
            out["error_class"] = self.error_class
        return out


@dataclass
class State:
    step_ms: int
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    cancels: list[str] = field(default_factory=list)
    interrupts: int = 0
    runs: int = 0
    sync_runs: set[asyncio.Event] = field(default_factory=set)
    """One event per running sync /run: /interrupt sets them."""


STATE = web.AppKey("state", State)


def _steps(payload: dict[str, Any], state: State) -> tuple[int, float]:
    steps = payload.get("steps", 3)
    step_ms = payload.get("step_ms", state.step_ms)
    if not isinstance(steps, int) or steps < 0 or not isinstance(step_ms, int | float) or step_ms < 0:
        raise web.HTTPBadRequest(
            text='{"error": "steps and step_ms must be non-negative numbers", "error_class": "malformed"}',
            content_type="application/json",
        )
    return steps, step_ms / 1000


async def _payload(request: web.Request) -> dict[str, Any]:
    try:
        payload = await request.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
    return payload


async def _accept(request: web.Request) -> tuple[State, dict[str, Any], web.Response | None]:
    """A run counted: the state, the payload, and the answer of a payload that fails at once."""
    state = request.app[STATE]
    payload = await _payload(request)
    state.runs += 1
    return state, payload, _early_answer(payload)


def _early_answer(payload: dict[str, Any]) -> web.Response | None:
    fail = payload.get("fail")
    if fail == "bad_request":
        return web.json_response(
            {"error": "invalid input: 'prompt' is required", "error_class": "malformed"}, status=400
        )
    if fail == "garbage":
        return web.Response(text="<html><body>It works!</body></html>", content_type="text/html")
    return None


async def run_sync(request: web.Request) -> web.Response:
    state, payload, early = await _accept(request)
    if early is not None:
        return early
    steps, step_s = _steps(payload, state)
    fail = payload.get("fail")
    stopped = asyncio.Event()
    state.sync_runs.add(stopped)
    try:
        await asyncio.wait_for(stopped.wait(), steps * step_s / (2 if fail == "oom" else 1))
        return web.json_response({"error": "interrupted"}, status=500)
    except TimeoutError:
        pass
    finally:
        state.sync_runs.discard(stopped)
    if fail == "oom":
        return web.json_response({"error": OOM_MESSAGE, "error_class": "resource_exhausted"}, status=500)
    if fail == "error":
        return web.json_response({"error": "model crashed"}, status=500)
    if fail == "failed_200":
        return web.json_response({"status": "failed", "error": "the model refused the input"})
    return web.json_response({"status": "completed", "result": result_for(payload, steps)})


async def interrupt(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.interrupts += 1
    running = list(state.sync_runs)
    for stopped in running:
        stopped.set()
    return web.json_response({"interrupted": len(running)})


async def _work(job: FakeJob, steps: int, step_s: float) -> None:
    fail = job.payload.get("fail")
    job.status = "running"
    for step in range(1, steps + 1):
        await asyncio.sleep(step_s)
        if fail in ("oom", "error") and step >= max(1, steps // 2):
            job.status = "failed"
            if fail == "oom":
                job.error, job.error_class = OOM_MESSAGE, "resource_exhausted"
            else:
                job.error = "model crashed"
            return
        job.progress = step / steps
    job.progress = 1.0
    job.result = result_for(job.payload, steps)
    job.status = "completed"


async def submit_async(request: web.Request) -> web.Response:
    state, payload, early = await _accept(request)
    if early is not None:
        return early
    steps, step_s = _steps(payload, state)
    job = FakeJob(uuid.uuid4().hex, payload)
    state.jobs[job.id] = job
    job.task = asyncio.create_task(_work(job, steps, step_s))
    if payload.get("fail") == "no_id":
        return web.json_response({"job": {"ref": job.id}, "status": "queued"}, status=202)
    return web.json_response({"id": job.id, "status": "queued"}, status=202)


def _job(request: web.Request) -> FakeJob:
    job = request.app[STATE].jobs.get(request.match_info["id"])
    if job is None:
        raise web.HTTPNotFound(text='{"error": "no such job"}', content_type="application/json")
    return job


async def job_status(request: web.Request) -> web.Response:
    job = _job(request)
    job.polls += 1
    if job.payload.get("fail") == "flaky_poll" and job.polls <= FLAKY_POLLS:
        return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
    return web.json_response(job.view())


async def cancel_job(request: web.Request) -> web.Response:
    job = _job(request)
    request.app[STATE].cancels.append(job.id)
    if job.status in ("queued", "running"):
        if job.task is not None:
            job.task.cancel()
        job.status = "cancelled"
    return web.json_response(job.view())


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"name": m, "size": 1} for m in MODELS]})


async def fake_state(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "cancels": state.cancels,
            "interrupts": state.interrupts,
            "jobs": {j.id: j.status for j in state.jobs.values()},
            "runs": state.runs,
        }
    )


def make_app(step_ms: int = DEFAULT_STEP_MS) -> web.Application:
    app = web.Application()
    app[STATE] = State(step_ms)
    app.router.add_post("/run", run_sync)
    app.router.add_post("/interrupt", interrupt)
    app.router.add_post("/jobs", submit_async)
    app.router.add_get("/jobs/{id}", job_status)
    app.router.add_post("/jobs/{id}/cancel", cancel_job)
    app.router.add_get("/health", health)
    app.router.add_get("/models", models)
    app.router.add_get("/_fake/state", fake_state)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--step-ms", type=int, default=DEFAULT_STEP_MS)
    args = parser.parse_args()
    run_app(make_app(args.step_ms), args.host, args.port)


if __name__ == "__main__":
    main()
