"""The machine agent's HTTP endpoint: probes for the platform, status and logs for operators.

Routes (Salad's startup/liveness/readiness probes map to /health and /ready)::

    GET  /health                      200 {"status": "ok"} while the agent's event loop answers (liveness)
    GET  /ready                       200 {"ready": true} when ready(), else 503 {"ready": false}
                                      (readiness: at least one worker can take jobs)
    GET  /status                      200, JSON of status(): machine, GPUs, processes
    GET  /logs?process=NAME&lines=N   200 text/plain, the last N lines (default 100, at most 10,000);
                                      400 bad or missing arguments, 404 unknown process
    POST /restart?process=NAME        200 {"restarted": NAME}; needs the machine's token in
                                      ``Authorization: Bearer <token>`` or ``X-Emp-Token``:
                                      401 missing or wrong, 403 no token configured (restart
                                      disabled), 404 unknown process, 400 no process given

The server knows nothing about the agent: it calls the functions it is given. The token is
compared in constant time and never logged; the access log is off (probes hit it every few seconds).
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from aiohttp import web

from emp import defaults

__all__ = ["HealthServer"]

log = logging.getLogger(__name__)

_dumps = functools.partial(json.dumps, default=str)  # Paths, enums and datetimes become strings


class HealthServer:
    """An aiohttp server on ``host:port`` (port 0 picks a free one). :meth:`start`, then :meth:`stop`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: Callable[[], dict[str, Any]],
        ready: Callable[[], bool],
        tail: Callable[[str, int], list[str] | None],
        restart: Callable[[str], Awaitable[bool]],
        token: str | None,
    ) -> None:
        """``tail(name, lines)`` returns None for an unknown process (it runs in a worker thread: it
        reads the disk); ``restart(name)`` returns False for an unknown process."""
        self.host = host
        self.port = port
        self._status = status
        self._ready = ready
        self._tail = tail
        self._restart = restart
        self._token = token.encode() if token else None
        self._runner: web.AppRunner | None = None
        self.url: str | None = None

    async def start(self) -> str:
        """Listen; returns the URL (``http://host:port``, with the real port when 0 was asked)."""
        if self._runner is not None:
            raise RuntimeError("HealthServer already started")
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready_route)
        app.router.add_get("/status", self._status_route)
        app.router.add_get("/logs", self._logs)
        app.router.add_post("/restart", self._restart_route)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        log.info("health endpoint on %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- routes --------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ready_route(self, request: web.Request) -> web.Response:
        ready = bool(self._ready())
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def _status_route(self, request: web.Request) -> web.Response:
        return web.json_response(self._status(), dumps=_dumps)

    async def _logs(self, request: web.Request) -> web.Response:
        name = request.query.get("process", "")
        if not name:
            return _error(400, "missing ?process=NAME")
        raw = request.query.get("lines", str(defaults.HEALTH_LOG_LINES))
        try:
            lines = int(raw)
        except ValueError:
            return _error(400, f"lines must be a whole number, not {raw!r}")
        if lines < 0:
            return _error(400, "lines must be 0 or more")
        lines = min(lines, defaults.HEALTH_LOG_MAX_LINES)
        text = await anyio.to_thread.run_sync(self._tail, name, lines)
        if text is None:
            return _error(404, f"no process named {name!r}")
        return web.Response(text="".join(line + "\n" for line in text), content_type="text/plain")

    async def _restart_route(self, request: web.Request) -> web.Response:
        if self._token is None:
            return _error(403, "restart is disabled: the machine has no token configured")
        if not self._authorized(request, self._token):
            return _error(401, "a valid token is required (Authorization: Bearer <token> or X-Emp-Token)")
        name = request.query.get("process", "")
        if not name:
            return _error(400, "missing ?process=NAME")
        if not await self._restart(name):
            return _error(404, f"no process named {name!r}")
        log.info("process %s restarted through the health endpoint (%s)", name, request.remote)
        return web.json_response({"restarted": name})

    @staticmethod
    def _authorized(request: web.Request, token: bytes) -> bool:
        given = request.headers.get("X-Emp-Token")
        if given is None:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer":
                return False
            given = value.strip()
        return hmac.compare_digest(given.encode(), token)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
