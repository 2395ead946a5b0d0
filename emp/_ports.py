"""Free loopback ports for the servers emp starts itself (embedded redis-server, stand-in
services, the demo's GPU box). A port is free "a moment ago": callers that bind later retry or
accept the small race, as every such helper must."""

from __future__ import annotations

import socket

PAIR_ATTEMPTS = 50


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_port_pair() -> int:
    """A free port whose next port is free too (base + i per GPU)."""
    for _ in range(PAIR_ATTEMPTS):
        base = free_port()
        if base >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two free ports in a row on 127.0.0.1")
