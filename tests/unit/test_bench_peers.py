"""emp.bench.peers: reading the peer harness's peers-main.json (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from emp.bench import peers


def harness_doc() -> dict[str, Any]:
    return {
        "meta": {"started": "2026-12-04 19:10:39"},
        "libs": {
            "bullmq": {"runs": {"e2e2": [{"steady": 9000.0}, {"steady": 9667.0}, {"steady": 12000.0}]}},
            "bullmq-c10": {"runs": {"e2e1": [{"steady": 18000.0}], "e2e2": [{"steady": 14270.5}]}},
        },
    }


def test_steady_is_the_median_over_the_repetitions() -> None:
    got = peers.steady(harness_doc(), peers.BULLMQ_C1)
    assert (got.steady, got.reps, got.run) == (9667.0, 3, "e2e2")
    assert peers.steady(harness_doc(), peers.BULLMQ_C10, "e2e1").steady == 18000.0


def test_started_reads_the_meta_and_is_empty_without_it() -> None:
    assert peers.started(harness_doc()) == "2026-12-04 19:10:39"
    assert peers.started({"libs": {}}) == ""


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"rows": []}, "not a peers-bench result"),
        ({"libs": {"bullmq": {"runs": {"e2e2": []}}}}, "no results for 'bullmq-c10'"),
        ({"libs": {"bullmq-c10": {"runs": {"e2e2": [{"steady": "fast"}]}}}}, "no e2e2 'steady' figure"),
    ],
)
def test_a_document_without_the_figure_is_refused_with_the_reason(doc: dict[str, Any], says: str) -> None:
    with pytest.raises(peers.PeersFileError, match=says):
        peers.steady(doc, peers.BULLMQ_C10)
