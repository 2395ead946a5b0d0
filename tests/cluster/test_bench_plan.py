"""`emp bench`: the cluster measurement is left out of --quick unless asked for (no Redis needed)."""

from __future__ import annotations

from emp.bench.runner import make_plan


def test_quick_leaves_the_cluster_run_out_unless_named() -> None:
    assert "cluster" not in make_plan(quick=True).only
    assert make_plan(quick=True, only="cluster").only == ("cluster",)
    assert "cluster" in make_plan().only
