"""Service status: the states a connector's service can be in, and the fleet-wide summary.

Pure: the worker's service monitor (``emp.worker.service_monitor``) feeds it health checks, and
``emp services`` renders the summary of what ``emp_list_services`` returns.

States: ``starting`` (never healthy yet, within the starting grace), ``idle`` (healthy, no job),
``active`` (healthy, running a job), ``error`` (answers, but wrongly), ``offline`` (cannot be
reached). A worker claims only while its services are ``idle``/``active``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ServiceState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    ACTIVE = "active"
    ERROR = "error"
    OFFLINE = "offline"


READY_STATES = frozenset({ServiceState.IDLE, ServiceState.ACTIVE})


def derive_state(health_state: str, *, busy: bool, ever_ok: bool, within_grace: bool) -> ServiceState:
    """The service's state from one health check (``ok``/``offline``/``error``) and the worker's view.

    A service that has never answered ``ok`` and is still within its starting grace is
    ``starting`` whatever the check said: booting services refuse connections or answer 5xx.
    """
    if health_state == "ok":
        return ServiceState.ACTIVE if busy else ServiceState.IDLE
    if not ever_ok and within_grace:
        return ServiceState.STARTING
    return ServiceState.ERROR if health_state == "error" else ServiceState.OFFLINE


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One service as the fleet sees it (a row of ``emp services``)."""

    id: str
    status: str
    connector: str
    url: str
    machine_id: str
    services: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    message: str = ""
    since_ms: int = 0
    updated_ms: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> ServiceRecord:
        """From the hash emp_list_services returns (all strings; lists and objects as JSON text)."""
        return cls(
            id=str(raw.get("id", "")),
            status=str(raw.get("status", "")),
            connector=str(raw.get("connector", "")),
            url=str(raw.get("url", "")),
            machine_id=str(raw.get("machine_id", "")),
            services=_str_list(raw.get("services")),
            workers=_str_list(raw.get("workers")),
            models=_str_list(raw.get("models")),
            message=str(raw.get("message", "")),
            since_ms=_int(raw.get("since")),
            updated_ms=_int(raw.get("updated")),
            info=_obj(raw.get("info")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "connector": self.connector,
            "url": self.url,
            "machine_id": self.machine_id,
            "services": self.services,
            "workers": self.workers,
            "models": self.models,
            "message": self.message,
            "since_ms": self.since_ms,
            "updated_ms": self.updated_ms,
            "info": self.info,
        }


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """Per connector type: how many services in each state, and on which machines they are up."""

    connector: str
    by_state: dict[str, int]
    up_machines: list[str]

    @property
    def up(self) -> int:
        return sum(n for s, n in self.by_state.items() if s in READY_STATES)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


def summarize(records: list[ServiceRecord]) -> list[ServiceSummary]:
    """Group by connector type, sorted by name ("how many ComfyUI are up, and on which machines")."""
    out: list[ServiceSummary] = []
    for connector in sorted({r.connector for r in records}):
        rows = [r for r in records if r.connector == connector]
        counts = Counter(r.status for r in rows)
        machines = sorted({r.machine_id for r in rows if r.status in READY_STATES})
        out.append(ServiceSummary(connector, dict(sorted(counts.items())), machines))
    return out


def _str_list(value: Any) -> list[str]:
    parsed = _json(value)
    return [str(v) for v in parsed] if isinstance(parsed, list) else []


def _obj(value: Any) -> dict[str, Any]:
    parsed = _json(value)
    return parsed if isinstance(parsed, dict) else {}


def _json(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
