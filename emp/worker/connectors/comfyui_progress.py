"""Pure: one prompt's overall progress, from the ComfyUI events that carry its prompt_id.

Overall progress = (nodes done + the fractions of the running nodes) / nodes that will run.

- *Nodes that will run* (:func:`nodes_to_run`): the output nodes (the nodes no other node links
  to, or the job's ``output_nodes``), less those ComfyUI dropped for ``node_errors``, plus
  everything they depend on. ComfyUI runs nothing else.
- A node is *done* when it is cached (``execution_cached``), ``executed``, or ``finished`` in a
  ``progress_state``. Servers without ``progress_state`` (before v0.4) only say ``executing``: a
  node then counts as done when the next one starts.
- A running node's fraction is ``value / max`` of its last ``progress`` (or ``progress_state``).
- Nodes created by graph expansion (ids not in the graph) are counted under their
  ``display_node`` when that is in the graph, and otherwise only as "something is running".

The value never decreases, and stays at most :data:`EXECUTION_CEILING` until :meth:`finish`: the
last percent is the download of the outputs, and 100 means the job is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

EXECUTION_CEILING = 99.0
"""Where progress waits while outputs are fetched; :meth:`ProgressTracker.finish` gives 100."""


def _links(inputs: Any) -> Iterable[str]:
    """Node ids that an ``inputs`` object links to (a link is ``[source_node_id, output_index]``)."""
    if not isinstance(inputs, Mapping):
        return
    for value in inputs.values():
        if (
            isinstance(value, list)
            and len(value) == 2
            and isinstance(value[0], str | int)
            and not isinstance(value[0], bool)
            and isinstance(value[1], int)
            and not isinstance(value[1], bool)
        ):
            yield str(value[0])


def nodes_to_run(
    workflow: Mapping[str, Any], output_nodes: Iterable[str] = (), dropped_outputs: Iterable[str] = ()
) -> set[str]:
    """The ids of the nodes ComfyUI will run (see the module docstring)."""
    deps = {
        str(node_id): {d for d in _links(node.get("inputs")) if d in workflow}
        for node_id, node in workflow.items()
        if isinstance(node, Mapping)
    }
    targets = set(output_nodes)
    if not targets:
        linked = {d for ds in deps.values() for d in ds}
        targets = set(deps) - linked
    targets -= set(dropped_outputs)
    run: set[str] = set()
    stack = [t for t in targets if t in deps]
    while stack:
        node_id = stack.pop()
        if node_id not in run:
            run.add(node_id)
            stack.extend(deps[node_id] - run)
    return run


def _fraction(value: Any, maximum: Any) -> float | None:
    if isinstance(value, bool) or isinstance(maximum, bool):
        return None
    if not isinstance(value, int | float) or not isinstance(maximum, int | float) or maximum <= 0:
        return None
    return min(max(float(value) / float(maximum), 0.0), 1.0)


class ProgressTracker:
    """Feed it the events of one prompt (:meth:`feed`); read :attr:`percent` and :attr:`message`."""

    def __init__(
        self,
        workflow: Mapping[str, Any],
        output_nodes: Iterable[str] = (),
        dropped_outputs: Iterable[str] = (),
    ) -> None:
        self._workflow = workflow
        self._output_nodes = tuple(output_nodes)
        self._expected = nodes_to_run(workflow, self._output_nodes, dropped_outputs) or {str(n) for n in workflow}
        self._done: set[str] = set()
        self._running: dict[str, float] = {}
        self._executing: str | None = None
        self._has_state = False
        self.percent = 0.0
        self.message = "queued"

    def drop_outputs(self, dropped: Iterable[str]) -> None:
        """ComfyUI dropped these outputs (``node_errors`` on a 200): fewer nodes will run."""
        expected = nodes_to_run(self._workflow, self._output_nodes, dropped)
        if expected:
            self._expected = expected

    @property
    def total(self) -> int:
        return len(self._expected)

    def _resolve(self, node: Any, display: Any = None) -> str | None:
        for candidate in (node, display):
            if (
                isinstance(candidate, str | int)
                and not isinstance(candidate, bool)
                and str(candidate) in self._expected
            ):
                return str(candidate)
        return None

    def _label(self, node_id: str) -> str:
        node = self._workflow.get(node_id)
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        return f"{class_type} (node {node_id})" if class_type else f"node {node_id}"

    def _mark_done(self, node_id: str | None) -> None:
        if node_id is not None:
            self._done.add(node_id)
            self._running.pop(node_id, None)

    def feed(self, event: str, data: Mapping[str, Any]) -> bool:
        """Apply one event (its ``type`` and ``data``); True if :attr:`percent` went up."""
        if event == "execution_start":
            self.message = "started"
        elif event == "execution_cached":
            nodes = data.get("nodes")
            for node in nodes if isinstance(nodes, list) else []:
                self._mark_done(self._resolve(node))
        elif event == "executing":
            self._on_executing(data)
        elif event == "progress":
            node_id = self._resolve(data.get("node")) or self._executing
            fraction = _fraction(data.get("value"), data.get("max"))
            if node_id is not None and fraction is not None and node_id not in self._done:
                self._running[node_id] = max(self._running.get(node_id, 0.0), fraction)
                self.message = f"{self._label(node_id)}: {data.get('value')}/{data.get('max')}"
        elif event == "progress_state":
            self._on_progress_state(data)
        elif event == "executed":
            self._mark_done(self._resolve(data.get("node"), data.get("display_node")))
        return self._update()

    def _on_executing(self, data: Mapping[str, Any]) -> None:
        node = data.get("node")
        if node is None:
            return
        node_id = self._resolve(node, data.get("display_node"))
        if not self._has_state and self._executing is not None and self._executing != node_id:
            self._mark_done(self._executing)  # old servers: the previous node is finished
        self._executing = node_id
        if node_id is not None and node_id not in self._done:
            self._running.setdefault(node_id, 0.0)
            self.message = f"running {self._label(node_id)}"

    def _on_progress_state(self, data: Mapping[str, Any]) -> None:
        nodes = data.get("nodes")
        if not isinstance(nodes, Mapping):
            return
        self._has_state = True
        for key, state in nodes.items():
            if not isinstance(state, Mapping):
                continue
            node_id = self._resolve(key, state.get("display_node_id")) or self._resolve(state.get("real_node_id"))
            if node_id is None or node_id in self._done:
                continue
            if state.get("state") == "finished" and node_id == self._resolve(key):
                self._mark_done(node_id)  # an expanded child finishing does not finish its parent
                continue
            fraction = _fraction(state.get("value"), state.get("max"))
            if fraction is not None:
                self._running[node_id] = max(self._running.get(node_id, 0.0), fraction)

    def _update(self) -> bool:
        total = len(self._expected)
        done = len(self._done & self._expected)
        partial = sum(f for n, f in self._running.items() if n not in self._done)
        raw = min(EXECUTION_CEILING, 100.0 * (done + partial) / total) if total else 0.0
        if raw > self.percent:
            self.percent = raw
            return True
        return False

    def finish(self) -> float:
        """The prompt and its outputs are done: 100."""
        self.percent = 100.0
        self.message = "done"
        return self.percent
