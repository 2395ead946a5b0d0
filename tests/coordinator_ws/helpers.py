"""Helpers for the WebSocket tests: connecting, reading messages with a deadline, folding a monitor's feed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anyio

from emp.client import Client
from emp.coordinator.ws import Hub
from emp.coordinator.ws.protocol import event_from_message, events_in, snapshot_from_message, stream_key
from emp.dashboard.state import FleetState, apply_event, apply_snapshot
from emp.redis.calls import Calls

TOKEN = "test-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Served:
    url: str
    hub: Hub
    calls: Calls
    client: Client


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    """The next JSON message (fails after ``timeout`` seconds)."""
    with anyio.fail_after(timeout):
        msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text message, got {msg.type}: {msg.data!r}"
    doc = json.loads(msg.data)
    assert isinstance(doc, dict)
    return doc


def flat(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """An ``events`` message as its ``event`` messages; any other message as itself."""
    return [dict(e) for e in events_in(msg)] if msg.get("type") == "events" else [msg]


async def receive_until(ws: aiohttp.ClientWebSocketResponse, want: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Messages up to and including the first one ``want(msg)`` accepts (an ``events`` message
    counts as its events, one by one; those after the accepted one are dropped)."""
    out: list[dict[str, Any]] = []
    with anyio.fail_after(timeout):
        while True:
            for msg in flat(await receive(ws, timeout)):
                out.append(msg)
                if want(msg):
                    return out


@dataclass
class Fold:
    """A monitor's feed folded into the dashboard's FleetState, as a Python client would."""

    state: FleetState = field(default_factory=FleetState)
    last_id: str = ""
    snapshots: list[str] = field(default_factory=list)
    messages: int = 0
    events: int = 0

    def add(self, msg: dict[str, Any]) -> None:
        self.messages += 1
        if msg["type"] == "events":
            for ev in msg["events"]:
                self.add(ev)
            self.messages -= len(msg["events"])
        elif msg["type"] == "snapshot":
            snap = snapshot_from_message(msg)
            self.state = FleetState()
            apply_snapshot(self.state, snap.snapshot, snap.jobs, every_worker=True)
            self.last_id = snap.stream_id
            self.snapshots.append(snap.reason)
        elif msg["type"] == "event":
            late = stream_key(msg["id"]) > stream_key(self.last_id)
            assert late, f"event {msg['id']} after {self.last_id}: out of order or twice"
            apply_event(self.state, event_from_message(msg))
            self.last_id = msg["id"]
            self.events += 1
