"""A latency probe: PING a Redis every few milliseconds from a process of its own and report the worst.

`emp bench scale` and the T16 test (tests/chaos/test_slowlog.py) run it while the upkeep sweeps walk
a big keyspace: a Function call that runs long blocks every client, and the PINGs queued behind it
show how long. The probe is its own process on a plain blocking socket, so neither the client
library's connection pool nor the event loop of the process that sweeps adds to what it measures.

Run ``python -m emp.bench.ping_probe --port P [--interval-ms 2]``: it prints ``ready`` once it
reaches Redis, PINGs until its stdin closes (the parent closes it, or dies), then prints one JSON
line: :meth:`ProbeStats.as_dict`. Every reply that is not ``+PONG`` is counted (``-BUSY ...``: a
script ran past busy-reply-threshold).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from emp.bench.report import percentile

PING = b"*1\r\n$4\r\nPING\r\n"
CONNECT_TIMEOUT_S = 5.0
REPLY_TIMEOUT_S = 30.0
"""A reply slower than this is an error of its own (the probe reconnects), not a latency sample."""


@dataclass(slots=True)
class ProbeStats:
    """Round trips in ms, in the order measured, and what went wrong."""

    samples_ms: list[float] = field(default_factory=list)
    busy: int = 0
    """``-BUSY`` replies: a script or Function ran past busy-reply-threshold."""
    other_replies: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    worst_at_s: float = 0.0
    """When the slowest round trip began, in seconds since the probe started."""

    def as_dict(self) -> dict[str, Any]:
        xs = sorted(self.samples_ms)
        return {
            "samples": len(xs),
            "max_ms": round(xs[-1], 3) if xs else None,
            "p99_ms": round(percentile(xs, 99), 3) if xs else None,
            "p50_ms": round(percentile(xs, 50), 3) if xs else None,
            "over_50ms": sum(1 for x in xs if x > 50.0),
            "over_10ms": sum(1 for x in xs if x > 10.0),
            "worst_at_s": round(self.worst_at_s, 3),
            "busy": self.busy,
            "other_replies": self.other_replies[:5],
            "errors": self.errors[:5],
        }


def _read_line(sock: socket.socket) -> bytes:
    """One RESP simple reply line (PING's reply is always one line: +PONG or -ERR...)."""
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
    return buf


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    sock.settimeout(REPLY_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def run_probe(host: str, port: int, interval_s: float, stop: threading.Event) -> ProbeStats:
    """PING every ``interval_s`` until ``stop`` is set; each round trip is one sample."""
    stats = ProbeStats()
    t_start = time.perf_counter()
    sock: socket.socket | None = None
    worst = -1.0
    while not stop.is_set():
        try:
            if sock is None:
                sock = _connect(host, port)
            t0 = time.perf_counter()
            sock.sendall(PING)
            reply = _read_line(sock)
            took_ms = (time.perf_counter() - t0) * 1000
        except OSError as exc:
            stats.errors.append(f"{type(exc).__name__}: {exc}")
            if sock is not None:
                sock.close()
                sock = None
            stop.wait(0.05)
            continue
        if reply.startswith(b"+PONG"):
            stats.samples_ms.append(took_ms)
            if took_ms > worst:
                worst, stats.worst_at_s = took_ms, t0 - t_start
        elif reply.startswith(b"-BUSY"):
            stats.busy += 1
        else:
            stats.other_replies.append(reply.decode(errors="replace").strip())
        stop.wait(interval_s)
    if sock is not None:
        sock.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="PING a Redis every few ms until stdin closes; print JSON stats.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    _connect(args.host, args.port).close()  # reachable before the parent is told so
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stats = run_probe(args.host, args.port, args.interval_ms / 1000, stop)
    sys.stdout.write(json.dumps(stats.as_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
