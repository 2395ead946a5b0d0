"""ComfyUI progress tracking, fed with event sequences as a real ComfyUI v0.8.0 sends them
(reference/comfyui-samples/transcripts: ok_invert_scale_first, _cached, progress_slow, ...)."""

from __future__ import annotations

from typing import Any

import pytest

from emp.worker.connectors.comfyui_progress import EXECUTION_CEILING, ProgressTracker, nodes_to_run

PID = "8011aaaa-0000-4000-8000-000000000000"

INVERT_SCALE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 3368652}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "nearest-exact", "width": 32}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "broker/ok"}},
}
SLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 1}},
    "2": {"class_type": "BrokerTestSlowProgress", "inputs": {"image": ["1", 0], "steps": 5, "delay": 0.2}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "broker/progress"}},
}


def state(**nodes: tuple[float, float, str]) -> dict[str, Any]:
    """A progress_state payload: node id -> (value, max, state)."""
    return {
        "prompt_id": PID,
        "nodes": {
            n.lstrip("n"): {
                "value": v,
                "max": m,
                "state": s,
                "node_id": n.lstrip("n"),
                "prompt_id": PID,
                "display_node_id": n.lstrip("n"),
                "parent_node_id": None,
                "real_node_id": n.lstrip("n"),
            }
            for n, (v, m, s) in nodes.items()
        },
    }


def feed_all(tracker: ProgressTracker, events: list[tuple[str, dict[str, Any]]]) -> list[float]:
    seen = []
    for event, data in events:
        tracker.feed(event, data)
        seen.append(tracker.percent)
    return seen


def assert_monotonic(values: list[float]) -> None:
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)), values


def test_nodes_to_run_follows_links_back_from_the_outputs() -> None:
    assert nodes_to_run(INVERT_SCALE) == {"1", "2", "3", "4"}
    graph = {**INVERT_SCALE, "9": {"class_type": "EmptyImage", "inputs": {"width": 8}}}  # a second sink
    assert nodes_to_run(graph) == {"1", "2", "3", "4", "9"}
    assert nodes_to_run(graph, output_nodes=["4"]) == {"1", "2", "3", "4"}


def test_nodes_to_run_leaves_out_outputs_dropped_by_node_errors() -> None:
    # partial_one_output_invalid: node 3 is invalid, output 4 (which needs it) is dropped, output 2 runs
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "bogus"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
    }
    assert nodes_to_run(graph, dropped_outputs=["4"]) == {"1", "2"}


def test_first_run_with_a_cached_node_climbs_monotonically_and_finishes_at_100() -> None:
    tracker = ProgressTracker(INVERT_SCALE)
    events: list[tuple[str, dict[str, Any]]] = [
        ("execution_start", {"prompt_id": PID, "timestamp": 1}),
        ("execution_cached", {"nodes": ["1"], "prompt_id": PID}),
        ("progress_state", state(n2=(0.0, 1.0, "running"))),
        ("executing", {"node": "2", "display_node": "2", "prompt_id": PID}),
        ("progress_state", state(n2=(1.0, 1.0, "finished"))),
        ("progress_state", state(n2=(1.0, 1.0, "finished"), n3=(0.0, 1.0, "running"))),
        ("executing", {"node": "3", "display_node": "3", "prompt_id": PID}),
        ("progress_state", state(n2=(1.0, 1.0, "finished"), n3=(1.0, 1.0, "finished"))),
        ("executing", {"node": "4", "display_node": "4", "prompt_id": PID}),
        ("executed", {"node": "4", "output": {"images": []}, "prompt_id": PID}),
        ("execution_success", {"prompt_id": PID}),
        ("executing", {"node": None, "prompt_id": PID}),
    ]
    values = feed_all(tracker, events)
    assert_monotonic(values)
    assert values[1] == pytest.approx(25.0)  # the cached node counts as executed
    assert values[4] == pytest.approx(50.0)
    assert values[-1] == EXECUTION_CEILING  # all 4 nodes done; 100 waits for the outputs
    assert tracker.finish() == 100.0 and tracker.percent == 100.0


def test_node_progress_counts_as_a_fraction_of_its_node() -> None:
    tracker = ProgressTracker(SLOW)
    tracker.feed("execution_cached", {"nodes": ["1"], "prompt_id": PID})
    tracker.feed("executing", {"node": "2", "display_node": "2", "prompt_id": PID})
    tracker.feed("progress_state", state(n2=(1, 5, "running")))
    assert tracker.feed("progress", {"value": 1, "max": 5, "prompt_id": PID, "node": "2"}) is False  # same value
    assert tracker.percent == pytest.approx(100 * (1 + 0.2) / 3)
    assert tracker.feed("progress", {"value": 4, "max": 5, "prompt_id": PID, "node": "2"}) is True
    assert tracker.percent == pytest.approx(100 * (1 + 0.8) / 3)
    assert "BrokerTestSlowProgress" in tracker.message and "4/5" in tracker.message


def test_progress_never_goes_down() -> None:
    tracker = ProgressTracker(SLOW)
    tracker.feed("progress", {"value": 4, "max": 5, "node": "2", "prompt_id": PID})
    high = tracker.percent
    # a later, smaller report (e.g. a sampler restarting its bar) must not lower the overall value
    assert tracker.feed("progress", {"value": 1, "max": 5, "node": "2", "prompt_id": PID}) is False
    tracker.feed("progress_state", state(n2=(0.0, 1.0, "running")))
    assert tracker.percent == high


def test_fully_cached_rerun_jumps_to_the_ceiling() -> None:
    tracker = ProgressTracker(INVERT_SCALE)
    tracker.feed("execution_cached", {"nodes": ["1", "2", "3", "4"], "prompt_id": PID})
    assert tracker.percent == EXECUTION_CEILING


def test_servers_without_progress_state_finish_a_node_when_the_next_one_starts() -> None:
    tracker = ProgressTracker(INVERT_SCALE)
    tracker.feed("executing", {"node": "1", "prompt_id": PID})
    assert tracker.percent == 0.0
    tracker.feed("executing", {"node": "2", "prompt_id": PID})
    assert tracker.percent == pytest.approx(25.0)
    tracker.feed("executing", {"node": "3", "prompt_id": PID})
    assert tracker.percent == pytest.approx(50.0)


def test_expanded_nodes_count_under_their_display_node() -> None:
    tracker = ProgressTracker(SLOW)
    tracker.feed("executing", {"node": "2.0.7", "display_node": "2", "prompt_id": PID})
    tracker.feed("progress", {"value": 1, "max": 2, "node": "2.0.7", "prompt_id": PID})
    assert tracker.percent == pytest.approx(100 * 0.5 / 3)


@pytest.mark.parametrize(
    "data",
    [
        {"value": 1, "max": 0, "node": "2"},
        {"value": True, "max": 2, "node": "2"},
        {"value": "1", "max": 2, "node": "2"},
        {"value": 1, "max": 2, "node": "no-such-node"},
    ],
)
def test_nonsense_progress_is_ignored(data: dict[str, Any]) -> None:
    tracker = ProgressTracker(SLOW)
    assert tracker.feed("progress", data) is False
    assert tracker.percent == 0.0


def test_dropped_outputs_shrink_the_denominator() -> None:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["1", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0]}},
    }
    tracker = ProgressTracker(graph)
    assert tracker.total == 4
    tracker.drop_outputs(["4"])
    assert tracker.total == 2
    tracker.feed("executed", {"node": "1", "prompt_id": PID})
    assert tracker.percent == pytest.approx(50.0)
