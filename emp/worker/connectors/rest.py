"""The generic REST connector: a configured HTTP service, synchronous or asynchronous.

- **sync** (``mode = "sync"``): ``<method> <submit_path>`` with the job's payload as the JSON body;
  the answer carries the result. Cancel closes the request (and sends ``cancel_path`` if set).
- **async** (``mode = "async"``): the submit answers with a job id; the connector then polls
  ``GET <status_path>`` (``{id}`` filled in) every ``poll_interval_s`` until the status is one of
  ``done_values`` (result) or ``failed_values`` (failure), reporting ``progress_field`` on the way.
  On cancel, and whenever the connector gives up on a job the service still runs, it sends
  ``<cancel_method> <cancel_path>`` (if configured) inside :func:`shielded_cleanup`.

The body is the job's payload exactly as submitted: emp adds no envelope and takes no key out of
it (a ``"body"`` key would be sent as is), so what a client submits is what the service gets.

How answers are read (ids, statuses, failure classes, results, base64 outputs, progress) is in
:mod:`emp.worker.connectors.rest_protocol`; the options are in
:mod:`emp.worker.connectors.rest_settings`. HTTP trouble is classified by
:mod:`emp.worker.connectors.http`, refined by the error body (class field, out-of-memory text).
Two refinements while polling: a 404 means the service lost the job (restarted?), which is
``transient``, not ``malformed``; and up to ``poll_error_limit`` consecutive transient poll
failures are ridden out before the job fails.

Progress: 0 once submitted, the service's progress (never decreasing) while it runs, 100 once the
result and its outputs are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import anyio
import httpx

from emp.worker.connectors import rest_protocol as proto
from emp.worker.connectors.base import ConnectorError, Health, JobContext, shielded_cleanup
from emp.worker.connectors.http import HEALTH_TIMEOUT_S, HttpService, HttpStatusError, parse_json
from emp.worker.connectors.rest_settings import RestSettings, parse_settings

log = logging.getLogger(__name__)

SERVICE = "rest"
"""How error messages name the service (with its URL where it helps)."""


class RestConnector:
    name: ClassVar[str] = "rest"
    default_url: ClassVar[str | None] = None
    """No default: a REST service is wherever the config says."""

    def __init__(self, settings: RestSettings) -> None:
        self.settings = settings
        self.http = HttpService(
            settings.url,
            service=SERVICE,
            timeout_s=settings.timeout_s,
            headers=settings.headers,
            max_response_bytes=settings.max_response_bytes,
        )

    @classmethod
    def from_config(cls, url: str | None, options: Mapping[str, Any]) -> RestConnector:
        """Build from a services-config table; ValueError naming the bad option."""
        return cls(parse_settings(url or cls.default_url, options))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def run(self, ctx: JobContext) -> dict[str, Any]:
        if self.settings.mode == "async":
            body = await self._run_async(ctx)
        else:
            body = await self._run_sync(ctx)
        result = proto.result_of(body, self.settings, SERVICE)
        for out in proto.take_outputs(result, self.settings, SERVICE):
            await ctx.outputs.put(out.name, out.data, out.content_type)
        await ctx.progress(100.0, "completed")
        return result

    async def _run_sync(self, ctx: JobContext) -> Any:
        s = self.settings
        await ctx.progress(0.0, "submitted")
        try:
            response = await self._request(s.method, s.submit_path, ctx.payload)
        except anyio.get_cancelled_exc_class():
            await self._cancel(None)
            raise
        body = parse_json(response, SERVICE)
        # A sync service may answer 200 with a failed status in the body.
        if isinstance(body, dict) and not proto.missing(proto.dig(body, s.status_field)):
            status = proto.read_status(body, s, SERVICE)
            if status.state == "failed":
                raise proto.job_failure(body, status, s, SERVICE)
        return body

    async def _run_async(self, ctx: JobContext) -> Any:
        s = self.settings
        submitted = parse_json(await self._request(s.method, s.submit_path, ctx.payload), SERVICE)
        job = proto.job_id(submitted, s, SERVICE)
        log.debug("job %s attempt %d: rest job id %s", ctx.job_id, ctx.attempt, job)
        await ctx.progress(0.0, "submitted")
        ended = False  # the service's job has finished: nothing left to cancel
        try:
            body = submitted
            # Some services answer the submit with the job's status already (a cached result).
            status = None if proto.missing(proto.dig(body, s.status_field)) else proto.read_status(body, s, SERVICE)
            high, last_word, errors = 0.0, "", 0
            while status is None or status.state == "running":
                if status is not None and (status.value != last_word or (status.percent or 0.0) > high):
                    high, last_word = max(high, status.percent or 0.0), status.value
                    await ctx.progress(high, status.value)
                await anyio.sleep(s.poll_interval_s)
                try:
                    body = await self._poll(job)
                    status = proto.read_status(body, s, SERVICE)
                    errors = 0
                except ConnectorError as exc:
                    if exc.failure_class != "transient" or errors >= s.poll_error_limit:
                        raise
                    errors += 1
                    log.warning(
                        "job %s: poll %d/%d of rest job %s failed: %s", ctx.job_id, errors, s.poll_error_limit, job, exc
                    )
                    status = None
            ended = True
            assert status is not None  # the loop ends on a done or failed status only
            if status.state == "failed":
                raise proto.job_failure(body, status, s, SERVICE)
            return body
        except BaseException:
            # Cancelled, or given up while the service may still be working: stop it there.
            if not ended:
                await self._cancel(job)
            raise

    async def _poll(self, job: str) -> Any:
        path = self.settings.status_path.format(id=quote(job, safe=""))
        try:
            return parse_json(await self._request("GET", path), SERVICE)
        except HttpStatusError as exc:
            if exc.response.status_code == 404:
                raise ConnectorError("transient", f"{SERVICE} no longer knows job {job}: {exc}") from exc
            raise

    async def _cancel(self, job: str | None) -> None:
        s = self.settings
        if s.cancel_path is None:
            return
        path = s.cancel_path.format(id=quote(job, safe="")) if job is not None else s.cancel_path
        async with shielded_cleanup():
            await self.http.request(s.cancel_method, path)
            log.info("rest: sent %s %s", s.cancel_method, path)

    async def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request; an error answer is classified by its status, refined by its body."""
        try:
            return await self.http.request(method, path, json_body=body)
        except HttpStatusError as exc:
            response = exc.response
            cls, text = proto.http_failure(response.status_code, _text(response), exc.failure_class, self.settings)
            raise HttpStatusError(
                cls, f"{SERVICE} {method} {path} answered {response.status_code}: {text}", response
            ) from exc

    async def health(self) -> Health:
        """GET health_path: any 2xx is ok; unreachable is offline; anything else is error."""
        try:
            response = await self.http.request("GET", self.settings.health_path, timeout_s=HEALTH_TIMEOUT_S)
        except ConnectorError as exc:
            return Health("offline" if exc.failure_class == "service_unavailable" else "error", str(exc))
        if not response.is_success:
            return Health("error", f"{SERVICE} GET {self.settings.health_path} answered {response.status_code}")
        return Health("ok", info={"url": self.settings.url, "mode": self.settings.mode})

    async def list_models(self) -> list[str]:
        """GET models_path and read the names, or the static ``models`` list without a path."""
        s = self.settings
        if s.models_path is None:
            return list(s.models)
        return proto.model_names(await self.http.get_json(s.models_path), s, SERVICE)


def _text(response: httpx.Response) -> str:
    try:
        return response.text
    except Exception:  # undecodable bytes
        return repr(response.content[:300])
