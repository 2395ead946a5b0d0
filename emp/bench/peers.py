"""The peer harness's figures (``../shared/peers-bench``, its ``peers-main.json``) next to emp's.

PURE: reads a parsed JSON document, returns numbers. The harness measures end-to-end throughput
"steady": jobs started over the span from the first job started to the last, on a queue filled
before the workers start. ``emp bench`` measures the same way in its ``e2e_*_steady`` runs, so the
ratios below compare like with like.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BULLMQ_C1 = "bullmq"
BULLMQ_C10 = "bullmq-c10"


class PeersFileError(ValueError):
    """The document is not a peer-harness result with the figures asked for (the message says which)."""


@dataclass(frozen=True, slots=True)
class PeerFigure:
    lib: str
    run: str
    """The harness's run name: ``e2e1`` (one worker process) or ``e2e2`` (two)."""
    steady: float
    """jobs/s, the median over the harness's repetitions"""
    reps: int


def steady(doc: Mapping[str, Any], lib: str, run: str = "e2e2") -> PeerFigure:
    """The median ``steady`` rate of ``lib``'s ``run`` in a peers-main.json document."""
    libs = doc.get("libs")
    if not isinstance(libs, Mapping):
        raise PeersFileError("no 'libs' object: not a peers-bench result (peers-main.json)")
    entry = libs.get(lib)
    if not isinstance(entry, Mapping):
        raise PeersFileError(f"no results for {lib!r} (run the harness with --libs {BULLMQ_C1},{BULLMQ_C10})")
    runs = entry.get("runs", {}).get(run) if isinstance(entry.get("runs"), Mapping) else None
    rates = [r["steady"] for r in runs or [] if isinstance(r, Mapping) and isinstance(r.get("steady"), int | float)]
    if not rates:
        raise PeersFileError(f"no {run} 'steady' figure for {lib!r}")
    return PeerFigure(lib, run, float(statistics.median(rates)), len(rates))


def started(doc: Mapping[str, Any]) -> str:
    """When the harness run started (its meta.started), or '' when the document does not say."""
    meta = doc.get("meta")
    return str(meta.get("started", "")) if isinstance(meta, Mapping) else ""
