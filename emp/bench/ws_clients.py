"""The monitor sockets of `emp bench`'s ``api`` scenario, held in a process of their own.

``python -m emp.bench.ws_clients --url ws://127.0.0.1:PORT/ws/monitor --sockets 1000 --mark M``

The bench starts this child so that the 1,000 client sides do not share the coordinator's process
(and core): the figures are then the server's. It talks to the bench over its stdin and stdout,
one JSON object a line:

1. it opens ``--sockets`` monitors (``--parallel`` handshakes at a time), waits for each one's first
   snapshot, and writes ``{"ready": {...}}`` (opened, connected, failed, seconds);
2. it counts what every socket receives (``event`` messages, later ``snapshot`` messages by reason,
   and the time, on the system-wide monotonic clock, when the event whose data carries ``--mark``
   arrived) until the bench writes ``report``;
3. then it waits up to ``--wait-s`` for every open socket to get the mark, writes ``{"result": {...}}``
   (per-socket counts, see :class:`SocketTally`), closes the sockets and exits 0.

A closed stdin (the bench died) ends it at once. The token comes in ``EMP_BENCH_TOKEN`` (never
argv, where ``ps`` shows it); nothing here prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

TOKEN_ENV = "EMP_BENCH_TOKEN"
"""Where the child finds the API token (the environment of this one process)."""

EVENT_PREFIX = '{"type":"event",'
EVENTS_PREFIX = '{"type":"events",'
SNAPSHOT_PREFIX = '{"type":"snapshot"'
BATCH_QUERY = "batch=1"
"""The sockets ask for ``events`` messages (several events a message), as the web monitor does."""


@dataclass(slots=True)
class SocketTally:
    """What one socket received after its first snapshot."""

    events: int = 0
    resyncs: dict[str, int] = field(default_factory=dict)
    """Later snapshots by reason (``slow``: the server dropped this socket's queued events)."""
    mark_at: float | None = None
    """``time.monotonic()`` when the marked event arrived (None: it never did)."""
    closed: bool = False
    close_code: int | None = None
    """The WebSocket close code, when the socket was closed (1001: server shutdown; 1006: abnormal)."""


class Sockets:
    """The held monitors and their tallies."""

    def __init__(self, url: str, mark: str, headers: dict[str, str]) -> None:
        self.url = url
        self.mark = mark
        self.headers = headers
        self.tallies: list[SocketTally] = []
        self.failed = 0
        self.errors: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wsockets: list[aiohttp.ClientWebSocketResponse] = []
        self.marked = asyncio.Event()

    async def open(self, http: aiohttp.ClientSession, count: int, parallel: int) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with gate:
                try:
                    ws = await http.ws_connect(self.url, headers=self.headers, heartbeat=None, max_msg_size=0)
                    first = await ws.receive(timeout=120)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self.failed += 1
                    name = type(exc).__name__
                    self.errors[name] = self.errors.get(name, 0) + 1
                    return
            if first.type != aiohttp.WSMsgType.TEXT or not str(first.data).startswith(SNAPSHOT_PREFIX):
                self.failed += 1
                self.errors["no snapshot first"] = self.errors.get("no snapshot first", 0) + 1
                await ws.close()
                return
            tally = SocketTally()
            self.tallies.append(tally)
            self._wsockets.append(ws)
            self._tasks.append(asyncio.create_task(self._read(ws, tally)))

        await asyncio.gather(*(one() for _ in range(count)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, tally: SocketTally) -> None:
        mark = self.mark
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                text: str = msg.data
                if text.startswith(EVENTS_PREFIX):
                    # Counted without parsing (the figures are the server's): each event of the
                    # batch is an ``event`` message, which starts with the prefix.
                    tally.events += text.count(EVENT_PREFIX)
                elif text.startswith(EVENT_PREFIX):
                    tally.events += 1
                else:
                    if text.startswith(SNAPSHOT_PREFIX):
                        reason = str(json.loads(text).get("reason"))
                        tally.resyncs[reason] = tally.resyncs.get(reason, 0) + 1
                    continue
                if mark in text and tally.mark_at is None:
                    tally.mark_at = time.monotonic()
                    if self.all_marked():
                        self.marked.set()
        finally:
            tally.closed = True
            tally.close_code = ws.close_code
            if self.all_marked():
                self.marked.set()

    def all_marked(self) -> bool:
        return all(t.mark_at is not None or t.closed for t in self.tallies)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self._wsockets), return_exceptions=True)


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def say(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


def with_batch(url: str) -> str:
    """``url`` asking for ``events`` messages, unless it already says which form it wants."""
    if "batch=" in url:
        return url
    return url + ("&" if "?" in url else "?") + BATCH_QUERY


async def run(url: str, sockets: int, mark: str, parallel: int, wait_s: float) -> int:
    _raise_fd_limit(sockets + 256)
    token = os.environ.get(TOKEN_ENV, "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    held = Sockets(url, mark, headers)
    commands = await stdin_lines()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        t0 = time.monotonic()
        await held.open(http, sockets, parallel)
        say(
            {
                "ready": {
                    "opened": sockets,
                    "connected": len(held.tallies),
                    "failed": held.failed,
                    "errors": held.errors,
                    "seconds": round(time.monotonic() - t0, 3),
                }
            }
        )
        line = await commands.readline()
        if line.strip() != b"report":
            await held.close()
            return 1  # stdin closed: the bench is gone
        try:
            await asyncio.wait_for(held.marked.wait(), timeout=wait_s)
        except TimeoutError:
            pass
        connected = sum(1 for t in held.tallies if not t.closed)
        say({"result": {"connected": connected, "sockets": [asdict(t) for t in held.tallies]}})
        await held.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emp.bench.ws_clients", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="ws:// URL of /ws/monitor (with its query; batch=1 is added unless it has batch=)"
    )
    parser.add_argument("--sockets", type=int, required=True)
    parser.add_argument("--mark", required=True, help="text in the data of the last event written")
    parser.add_argument("--parallel", type=int, default=100, help="handshakes at a time")
    parser.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for the mark on report")
    args = parser.parse_args(argv)
    if args.sockets < 1 or args.parallel < 1:
        parser.error("--sockets and --parallel must be at least 1")
    import uvloop  # the client side as fast as it can be: the figures are the server's

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run(with_batch(args.url), args.sockets, args.mark, args.parallel, args.wait_s))


if __name__ == "__main__":
    raise SystemExit(main())
