"""`emp services`: the fleet-wide view of the services workers drive (ComfyUI, A1111, ...).

Answers "how many ComfyUI services are up, and on which machines": a summary per connector type
(counts per state, the machines where it is up), then one row per service. ``--json`` prints
``{"summary": [...], "services": [...]}``. Only services whose last report has not lapsed are
listed (a report every 15 s, a 45 s TTL): a machine that died drops out on its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from emp.jobs import _stdout, open_calls, print_json
from emp.model.services import READY_STATES, ServiceRecord, ServiceSummary, summarize

if TYPE_CHECKING:
    from rich.console import RenderableType

STATE_STYLES = {"idle": "green", "active": "cyan", "starting": "yellow", "error": "red", "offline": "red"}


async def run_services(
    url: str, namespace: str, *, connector: str | None = None, up_only: bool = False, as_json: bool = False
) -> int:
    async with open_calls(url, namespace) as calls:
        raw = await calls.list_services()
    records = sorted((ServiceRecord.from_raw(r) for r in raw), key=lambda r: (r.connector, r.machine_id, r.url, r.id))
    if connector:
        records = [r for r in records if r.connector == connector]
    if up_only:
        records = [r for r in records if r.status in READY_STATES]
    summary = summarize(records)
    if as_json:
        print_json(
            {
                "summary": [
                    {"connector": s.connector, "up": s.up, "total": s.total, "by_state": s.by_state,
                     "up_machines": s.up_machines}
                    for s in summary
                ],
                "services": [r.to_json() for r in records],
            }
        )  # fmt: skip
        return 0
    out = _stdout(table=True)
    if not records:
        out.print("no services reported")
        return 0
    out.print(summary_table(summary))
    out.print(services_table(records, now_ms=int(time.time() * 1000)))
    return 0


def summary_table(summary: list[ServiceSummary]) -> RenderableType:
    from rich.table import Table

    table = Table(title="services", title_justify="left", box=None, pad_edge=False)
    for col in ("connector", "up", "total", "states", "up on machines"):
        table.add_column(col, justify="right" if col in ("up", "total") else "left")
    for s in summary:
        states = ", ".join(f"{n} {state}" for state, n in s.by_state.items())
        table.add_row(s.connector, str(s.up), str(s.total), states, ", ".join(s.up_machines) or "-")
    return table


def services_table(records: list[ServiceRecord], *, now_ms: int) -> RenderableType:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("connector", "status", "for", "machine", "url", "services", "workers", "message"):
        table.add_column(col)
    for r in records:
        style = STATE_STYLES.get(r.status, "")
        table.add_row(
            r.connector,
            f"[{style}]{r.status}[/]" if style else r.status,
            _age(now_ms - r.since_ms) if r.since_ms else "-",
            r.machine_id,
            r.url or "-",
            ",".join(r.services),
            ",".join(r.workers),
            r.message[:80],
        )
    return table


def _age(ms: int) -> str:
    s = max(0, ms) // 1000
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h"
