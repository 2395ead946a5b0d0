"""The fake ComfyUI's prompt machinery: validation, the queue, the output cache and the executor.

Each piece follows the v0.8.0 behaviour described in shared/reference/comfyui-protocol.md and
seen in the captured transcripts: ``validate_prompt`` (error types, messages, the quirky
``dependent_outputs`` accumulation), the heap-ordered queue, the input-signature cache (classic
policy: only signatures of the latest prompt survive), the execution order (ready nodes, output
nodes first), ``progress_state`` bookkeeping, and the error/interrupt payloads.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import comfyui_nodes as nodes
from .comfyui_config import Config


class FakeComfyUI(Protocol):
    """What the executor needs of the server (emp.stand_ins.comfyui.FakeComfyUI): its socket, its
    interrupt state and its config. A protocol, so that the executor does not import the server."""

    client_id: str | None
    last_node_id: str | None
    interrupt_flag: bool

    @property
    def cfg(self) -> Config: ...

    def started(self, prompt_id: str) -> None: ...

    def check_interrupt(self) -> None: ...

    def queue_updated(self) -> None: ...

    def send_sync(self, event: Any, data: Any, sid: str | None = None) -> None: ...

    def supports_preview_metadata(self, sid: str | None) -> bool: ...


MAXIMUM_HISTORY_SIZE = 10000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


def now_ms() -> int:
    return int(time.time() * 1000)


def is_link(value: Any) -> bool:
    """graph_utils.is_link: ``[node_id: str, output_index: int]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


# ------------------------------------------------------------------ validation (execution.py validate_prompt)


def validate_node_input(received: Any, wanted: Any) -> bool:
    if received == wanted:
        return True
    if not isinstance(received, str) or not isinstance(wanted, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in wanted.split(",")}
    if "*" in got or "*" in want:
        return True
    return bool(got & want)


def _input_info(types: dict[str, Any], name: str) -> tuple[Any, str | None, dict[str, Any]]:
    for category in ("required", "optional", "hidden"):
        if name in types.get(category, {}):
            spec = types[category][name]
            if isinstance(spec, str):
                return spec, category, {}
            return spec[0], category, (spec[1] if len(spec) > 1 else {})
    return None, None, {}


VALIDATE_FRAMES = [("execution.py", 1043, "validate_prompt"), ("execution.py", 818, "validate_inputs")]
"""The frames a validation exception is reported with (as captured from v0.8.0)."""


def _error(kind: str, message: str, details: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


class Validator:
    def __init__(self, cfg: Any, prompt: dict[str, Any]) -> None:
        self.cfg = cfg
        self.prompt = prompt
        self.validated: dict[str, tuple[bool, list[dict[str, Any]], str]] = {}

    def node(self, class_type: str) -> nodes.Node:
        return nodes.NODE_CLASSES[class_type]()

    def check(self, unique_id: str) -> tuple[bool, list[dict[str, Any]], str]:  # noqa: C901 - mirrors validate_inputs
        if unique_id in self.validated:
            return self.validated[unique_id]
        inputs = self.prompt[unique_id]["inputs"]
        node = self.node(self.prompt[unique_id]["class_type"])
        types = node.input_types(self.cfg)
        errors: list[dict[str, Any]] = []
        valid = True
        names = list(types.get("required", {})) + [n for n in types.get("optional", {}) if n not in types["required"]]
        for x in names:
            input_type, category, extra = _input_info(types, x)
            if x not in inputs:
                if category == "required":
                    errors.append(_error("required_input_missing", "Required input is missing", x, input_name=x))
                continue
            val = inputs[x]
            info = [input_type, extra]
            if isinstance(val, list):
                if len(val) != 2:
                    errors.append(
                        _error(
                            "bad_linked_input",
                            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            x,
                            input_name=x,
                            input_config=info,
                            received_value=val,
                        )
                    )
                    continue
                o_id = val[0]
                received = nodes.NODE_CLASSES[self.prompt[o_id]["class_type"]].return_types[val[1]]
                if not validate_node_input(received, input_type):
                    errors.append(
                        _error(
                            "return_type_mismatch",
                            "Return type mismatch between linked nodes",
                            f"{x}, received_type({received}) mismatch input_type({input_type})",
                            input_name=x,
                            input_config=info,
                            received_type=received,
                            linked_node=val,
                        )
                    )
                    continue
                try:
                    if self.check(o_id)[0] is False:
                        valid = False
                        continue
                except Exception as ex:
                    valid = False
                    self.validated[o_id] = (
                        False,
                        [
                            _error(
                                "exception_during_inner_validation",
                                "Exception when validating inner node",
                                str(ex),
                                input_name=x,
                                input_config=info,
                                exception_message=str(ex),
                                exception_type=nodes.full_type_name(type(ex)),
                                traceback=nodes.format_frames(VALIDATE_FRAMES[1:] * 2),
                                linked_node=val,
                            )
                        ],
                        o_id,
                    )
                    continue
            else:
                try:
                    if isinstance(val, dict) and "__value__" in val:
                        val = inputs[x] = val["__value__"]
                    convert = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(
                        input_type if isinstance(input_type, str) else ""
                    )
                    if convert is not None:
                        val = inputs[x] = convert(val)
                except Exception as ex:
                    errors.append(
                        _error(
                            "invalid_input_type",
                            f"Failed to convert an input value to a {input_type} value",
                            f"{x}, {val}, {ex}",
                            input_name=x,
                            input_config=info,
                            received_value=val,
                            exception_message=str(ex),
                        )
                    )
                    continue
                if x in node.validate_args:
                    continue
                if "min" in extra and val < extra["min"]:
                    errors.append(
                        _error(
                            "value_smaller_than_min",
                            f"Value {val} smaller than min of {extra['min']}",
                            x,
                            input_name=x,
                            input_config=info,
                            received_value=val,
                        )
                    )
                    continue
                if "max" in extra and val > extra["max"]:
                    errors.append(
                        _error(
                            "value_bigger_than_max",
                            f"Value {val} bigger than max of {extra['max']}",
                            x,
                            input_name=x,
                            input_config=info,
                            received_value=val,
                        )
                    )
                    continue
                if isinstance(input_type, list) and val not in input_type:
                    config: Any = info
                    listing = str(input_type)
                    if len(input_type) > 20:
                        listing, config = f"(list of length {len(input_type)})", None
                    errors.append(
                        _error(
                            "value_not_in_list",
                            "Value not in list",
                            f"{x}: '{val}' not in {listing}",
                            input_name=x,
                            input_config=config,
                            received_value=val,
                        )
                    )
                    continue
        if node.validate_args:
            given = {x: (None if isinstance(inputs[x], list) else inputs[x]) for x in inputs if x in node.validate_args}
            verdict = node.validate(self.cfg, **given)
            if verdict is not True:
                for x in given:
                    details = x if verdict is False else f"{x} - {verdict}"
                    errors.append(_error("custom_validation_failed", "Custom validation failed for node", details,
                                         input_name=x))  # fmt: skip
        result = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
        self.validated[unique_id] = result
        return result


def validate_prompt(
    cfg: Any, prompt: dict[str, Any], partial: list[str] | None
) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    """(valid, error, outputs to run, node_errors), as execution.py validate_prompt."""
    outputs: list[str] = []
    for x in prompt:
        if "class_type" not in prompt[x]:
            error = _error(
                "invalid_prompt", "Cannot execute because a node is missing the class_type property.", f"Node ID '#{x}'"
            )
            return False, error, [], {}
        class_type = prompt[x]["class_type"]
        cls = nodes.NODE_CLASSES.get(class_type) if isinstance(class_type, str) else None
        if cls is None:
            error = _error(
                "invalid_prompt", f"Cannot execute because node {class_type} does not exist.", f"Node ID '#{x}'"
            )
            return False, error, [], {}
        if cls.output_node and (partial is None or x in partial):
            outputs.append(x)
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    validator = Validator(cfg, prompt)
    good: list[str] = []
    failures: list[tuple[str, list[dict[str, Any]]]] = []
    node_errors: dict[str, Any] = {}
    for o in outputs:
        try:
            valid, reasons, _ = validator.check(o)
        except Exception as ex:
            valid = False
            reasons = [
                _error(
                    "exception_during_validation",
                    "Exception when validating node",
                    str(ex),
                    exception_type=nodes.full_type_name(type(ex)),
                    traceback=nodes.format_frames(VALIDATE_FRAMES),
                )
            ]
            validator.validated[o] = (False, reasons, o)
        if valid is True:
            good.append(o)
            continue
        failures.append((o, reasons))
        # As the real server: every failing node validated so far lists this output as dependent.
        for node_id, (ok, why, _) in validator.validated.items():
            if ok is not True and why:
                if node_id not in node_errors:
                    node_errors[node_id] = {
                        "errors": why,
                        "dependent_outputs": [],
                        "class_type": prompt[node_id]["class_type"],
                    }
                node_errors[node_id]["dependent_outputs"].append(o)
    if not good:
        details = "\n".join(f"{e['message']}: {e['details']}" for _, errs in failures for e in errs)
        error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return False, error, [], node_errors
    return True, None, good, node_errors


# ------------------------------------------------------------------ the queue (execution.py PromptQueue)


class PromptQueue:
    def __init__(self, server: FakeComfyUI) -> None:
        self.server = server
        self.queue: list[tuple[Any, ...]] = []
        self.currently_running: dict[int, tuple[Any, ...]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.task_counter = 0
        self.flags: dict[str, Any] = {}
        self.not_empty = asyncio.Event()

    def put(self, item: tuple[Any, ...]) -> None:
        heapq.heappush(self.queue, item)
        self.server.queue_updated()
        self.not_empty.set()

    async def get(self) -> tuple[tuple[Any, ...], int]:
        while not self.queue:
            self.not_empty.clear()
            await self.not_empty.wait()
        item = heapq.heappop(self.queue)
        i = self.task_counter
        self.currently_running[i] = copy.deepcopy(item)
        self.task_counter += 1
        self.server.queue_updated()
        return item, i

    def task_done(self, item_id: int, history_result: dict[str, Any], status: dict[str, Any]) -> None:
        prompt = self.currently_running.pop(item_id)
        if len(self.history) > MAXIMUM_HISTORY_SIZE:
            self.history.pop(next(iter(self.history)))
        pid = prompt[1]  # a re-used prompt_id overwrites its entry (which keeps its first place in the order)
        self.history[pid] = {"prompt": list(prompt[:5]), "outputs": {}, "status": copy.deepcopy(status)}
        self.history[pid].update(history_result)
        self.server.queue_updated()

    def remaining(self) -> int:
        return len(self.queue) + len(self.currently_running)

    def wipe_queue(self) -> None:
        self.queue = []
        self.server.queue_updated()

    def delete_queue_item(self, match: Callable[[tuple[Any, ...]], bool]) -> bool:
        for x in range(len(self.queue)):
            if match(self.queue[x]):
                if len(self.queue) == 1:
                    self.wipe_queue()
                else:
                    self.queue.pop(x)
                    heapq.heapify(self.queue)
                self.server.queue_updated()
                return True
        return False

    def get_history(self, prompt_id: str | None = None, max_items: int | None = None, offset: int = -1) -> Any:
        if prompt_id is not None:
            return {prompt_id: copy.deepcopy(self.history[prompt_id])} if prompt_id in self.history else {}
        out: dict[str, Any] = {}
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        for i, key in enumerate(self.history):
            if i >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out


# ------------------------------------------------------------------ cache (classic: input signatures)


@dataclass
class CacheEntry:
    ui: dict[str, Any] | None
    outputs: tuple[Any, ...]


class OutputCache:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.entries: dict[str, CacheEntry] = {}
        self.node_sig: dict[str, str] = {}

    def set_prompt(self, signatures: dict[str, str]) -> None:
        self.node_sig = signatures
        keep = set(signatures.values())
        self.entries = {k: v for k, v in self.entries.items() if k in keep}

    def get(self, node_id: str) -> CacheEntry | None:
        sig = self.node_sig.get(node_id)
        return self.entries.get(sig) if sig is not None else None

    def set(self, node_id: str, entry: CacheEntry) -> None:
        if self.enabled and node_id in self.node_sig:
            self.entries[self.node_sig[node_id]] = entry


def signatures(cfg: Any, prompt: dict[str, Any]) -> dict[str, str]:
    """Each node's input signature: class, IS_CHANGED, literal inputs and the ancestors' signatures."""
    memo: dict[str, str] = {}
    busy: set[str] = set()

    def sig(node_id: str) -> str:
        if node_id in memo:
            return memo[node_id]
        if node_id in busy or node_id not in prompt:
            return json.dumps(["CYCLE-OR-MISSING", node_id])
        busy.add(node_id)
        node = prompt[node_id]
        cls = nodes.NODE_CLASSES[node["class_type"]]
        changed: Any = False
        if cls.has_is_changed:
            literal = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
            try:
                changed = cls().is_changed(cfg, **literal)
            except Exception:
                changed = f"NaN-{uuid.uuid4()}"  # float('nan') never equals itself
            if isinstance(changed, float) and math.isnan(changed):
                changed = f"NaN-{uuid.uuid4()}"
        parts: list[Any] = [node["class_type"], changed]
        if cls.unique_id_in_signature:
            parts.append(node_id)
        for key in sorted(node["inputs"]):
            value = node["inputs"][key]
            parts.append([key, ["LINK", sig(value[0]), value[1]]] if is_link(value) else [key, value])
        busy.discard(node_id)
        memo[node_id] = json.dumps(parts, sort_keys=True, default=str)
        return memo[node_id]

    return {node_id: sig(node_id) for node_id in prompt}


# ------------------------------------------------------------------ execution order (comfy_execution/graph.py)


class ExecutionList:
    def __init__(self, prompt: dict[str, Any], cache: OutputCache) -> None:
        self.prompt = prompt
        self.cache = cache
        self.pending: dict[str, bool] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, dict[int, bool]]] = {}

    def is_output(self, node_id: str) -> bool:
        return nodes.NODE_CLASSES[self.prompt[node_id]["class_type"]].output_node

    def add_strong_link(self, from_id: str, socket: int, to_id: str) -> None:
        if self.cache.get(from_id) is None:
            self.add_node(from_id)
            if to_id not in self.blocking[from_id]:
                self.blocking[from_id][to_id] = {}
                self.block_count[to_id] += 1
            self.blocking[from_id][to_id][socket] = True

    def add_node(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid] = True
            self.block_count[uid] = 0
            self.blocking[uid] = {}
            if self.cache.get(uid) is not None:
                continue
            for value in self.prompt[uid]["inputs"].values():
                if is_link(value):
                    if self.cache.get(value[0]) is None:
                        stack.append(value[0])
                    links.append((value[0], value[1], uid))
        for link in links:
            self.add_strong_link(*link)

    def stage(self) -> str | None:
        """The next node to run (output nodes first, then what feeds them); None on a cycle."""
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            return None
        for n in ready:
            if self.is_output(n):
                return n
        for n in ready:
            if any(self.is_output(b) for b in self.blocking[n]):
                return n
        for n in ready:
            if any(self.is_output(b2) for b in self.blocking[n] for b2 in self.blocking.get(b, {})):
                return n
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking[node_id]:
            self.block_count[blocked] -= 1
        del self.blocking[node_id]

    def is_empty(self) -> bool:
        return not self.pending


# ------------------------------------------------------------------ progress_state (comfy_execution/progress.py)


class ProgressRegistry:
    def __init__(self, server: FakeComfyUI, prompt_id: str) -> None:
        self.server = server
        self.prompt_id = prompt_id
        self.nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        if node_id not in self.nodes:
            self.nodes[node_id] = {"state": "pending", "value": 0, "max": 1}
        return self.nodes[node_id]

    def _send(self) -> None:
        active = {
            nid: {
                "value": st["value"],
                "max": st["max"],
                "state": st["state"],
                "node_id": nid,
                "prompt_id": self.prompt_id,
                "display_node_id": nid,
                "parent_node_id": None,
                "real_node_id": nid,
            }
            for nid, st in self.nodes.items()
            if st["state"] != "pending"
        }
        self.server.send_sync("progress_state", {"prompt_id": self.prompt_id, "nodes": active}, self.server.client_id)

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._send()

    def update(self, node_id: str, value: Any, total: Any, image: Any) -> None:
        self._entry(node_id).update(state="running", value=value, max=total)
        self._send()
        if image is not None and self.server.supports_preview_metadata(self.server.client_id):
            meta = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            self.server.send_sync(4, (image, meta), self.server.client_id)

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry.update(state="finished", value=entry["max"])
        self._send()


# ------------------------------------------------------------------ the executor (execution.py PromptExecutor)


class DependencyCycleError(Exception):
    pass


DependencyCycleError.__module__ = "graph"


class Executor:
    def __init__(self, server: FakeComfyUI) -> None:
        self.server = server
        self.success = True  # as the real one: only node results change it, never reset per prompt
        self.status_messages: list[list[Any]] = []
        self.history_result: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """POST /free {free_memory: true}: drop the caches."""
        self.cache = OutputCache(enabled=not self.server.cfg.cache_none)
        self.objects: dict[tuple[str, str], nodes.Node] = {}

    def add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": now_ms()}
        self.status_messages.append([event, data])
        if self.server.client_id is not None or broadcast:
            self.server.send_sync(event, data, self.server.client_id)

    async def execute(
        self, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any], execute_outputs: list[str]
    ) -> None:
        srv = self.server
        srv.interrupt_flag = False
        srv.client_id = extra_data.get("client_id")
        self.status_messages = []
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        preview_method = extra_data.get("preview_method") or srv.cfg.preview_method
        progress = ProgressRegistry(srv, prompt_id)
        self.cache.set_prompt(signatures(srv.cfg, prompt) if self.cache.enabled else {})
        cached_nodes = [nid for nid in prompt if self.cache.get(nid) is not None]
        self.add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False)
        run = _Run(self, prompt, prompt_id, extra_data, progress, preview_method)
        current_outputs = list(prompt)
        elist = ExecutionList(prompt, self.cache)
        for node_id in execute_outputs:
            elist.add_node(node_id)
        while not elist.is_empty():
            staged = elist.stage()
            if staged is None:
                ex = DependencyCycleError("Dependency cycle detected")
                cycle: dict[str, Any] = {
                    "node_id": next(iter(elist.pending)),
                    "exception_message": str(ex),
                    "exception_type": "graph.DependencyCycleError",
                    "traceback": [],
                    "current_inputs": [],
                }
                self.handle_error(prompt_id, prompt, current_outputs, run.executed, cycle, ex)
                break
            ok, error, exc = await run.node(staged)
            self.success = ok
            if not ok:
                assert error is not None and exc is not None
                self.handle_error(prompt_id, prompt, current_outputs, run.executed, error, exc)
                break
            elist.complete(staged)
        else:
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
        self.history_result = {
            "outputs": {nid: ui["output"] for nid, ui in run.ui_outputs.items()},
            "meta": {nid: ui["meta"] for nid, ui in run.ui_outputs.items()},
        }
        srv.last_node_id = None

    def handle_error(
        self,
        prompt_id: str,
        prompt: dict[str, Any],
        current_outputs: list[str],
        executed: list[str],
        error: dict[str, Any],
        ex: BaseException,
    ) -> None:
        node_id = error["node_id"]
        mes: dict[str, Any] = {
            "prompt_id": prompt_id,
            "node_id": node_id,
            "node_type": prompt[node_id]["class_type"],
            "executed": list(executed),
        }
        if isinstance(ex, nodes.InterruptProcessingException):
            self.add_message("execution_interrupted", mes, broadcast=True)
            return
        mes.update(
            exception_message=error["exception_message"],
            exception_type=error["exception_type"],
            traceback=error["traceback"],
            current_inputs=error["current_inputs"],
            current_outputs=list(current_outputs),
        )
        self.add_message("execution_error", mes, broadcast=False)


class _Run:
    """One prompt's execution state."""

    def __init__(
        self,
        executor: Executor,
        prompt: dict[str, Any],
        prompt_id: str,
        extra_data: dict[str, Any],
        progress: ProgressRegistry,
        preview_method: str,
    ) -> None:
        self.ex = executor
        self.srv = executor.server
        self.prompt = prompt
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.progress = progress
        self.preview_method = preview_method
        self.executed: list[str] = []
        self.ui_outputs: dict[str, dict[str, Any]] = {}
        self.values: dict[str, tuple[Any, ...]] = {}

    def value_of(self, node_id: str, socket: int) -> Any:
        if node_id not in self.values:
            entry = self.ex.cache.get(node_id)
            if entry is None:
                return None
            self.values[node_id] = entry.outputs
        outputs = self.values[node_id]
        return outputs[socket] if socket < len(outputs) else None

    def gather(self, node: nodes.Node, node_id: str) -> tuple[dict[str, list[Any]], dict[str, Any]]:
        """(input_data_all as execution.py formats it for errors, the keyword arguments)."""
        types = node.input_types(self.srv.cfg)
        shown: dict[str, list[Any]] = {}
        kwargs: dict[str, Any] = {}
        for name, value in self.prompt[node_id]["inputs"].items():
            category = next((c for c in ("required", "optional", "hidden") if name in types.get(c, {})), None)
            if is_link(value):
                got = self.value_of(value[0], value[1])
                shown[name], kwargs[name] = [got], got
            elif category is not None:
                shown[name], kwargs[name] = [value], value
        for name, kind in types.get("hidden", {}).items():
            hidden = {
                "PROMPT": self.prompt,
                "EXTRA_PNGINFO": self.extra_data.get("extra_pnginfo"),
                "UNIQUE_ID": node_id,
            }
            if kind in hidden:
                shown[name], kwargs[name] = [hidden[kind]], hidden[kind]
        return shown, kwargs

    def context(self, node_id: str) -> nodes.RunContext:
        srv, cfg = self.srv, self.srv.cfg

        async def progress(value: int, total: int, preview: Any) -> None:
            srv.check_interrupt()  # main.py hijack_progress: the interrupt lands at a ProgressBar update
            self.progress.update(node_id, value, total, preview)
            srv.send_sync("progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id},
                          srv.client_id)  # fmt: skip
            if preview is not None and not srv.supports_preview_metadata(srv.client_id):
                srv.send_sync(2, preview, srv.client_id)
            await asyncio.sleep(0)

        def send_text(text: str) -> None:
            nid = node_id.encode()
            srv.send_sync(3, len(nid).to_bytes(4, "big") + nid + text.encode(), None)  # no sid: every socket

        return nodes.RunContext(
            node_id=node_id,
            prompt=self.prompt,
            extra_data=self.extra_data,
            output_dir=cfg.output_dir,
            temp_dir=cfg.temp_dir,
            input_dir=cfg.input_dir,
            step_s=cfg.step_ms / 1000.0,
            ram_total=cfg.ram_total,
            preview_method=self.preview_method,
            progress=progress,
            send_text=send_text,
        )

    async def node(self, node_id: str) -> tuple[bool, dict[str, Any] | None, BaseException | None]:
        srv, pid = self.srv, self.prompt_id
        class_type = self.prompt[node_id]["class_type"]
        cached = self.ex.cache.get(node_id)
        if cached is not None:
            if srv.client_id is not None:
                cached_ui = cached.ui or {}
                executed = {
                    "node": node_id,
                    "display_node": node_id,
                    "output": cached_ui.get("output"),
                    "prompt_id": pid,
                }
                srv.send_sync("executed", executed, srv.client_id)
                if cached.ui is not None:
                    self.ui_outputs[node_id] = cached.ui
            self.progress.finish(node_id)
            srv.started(pid)
            return True, None, None
        key = (node_id, class_type)
        node = self.ex.objects.get(key)
        if node is None:
            node = self.ex.objects[key] = nodes.NODE_CLASSES[class_type]()
        shown: dict[str, list[Any]] | None = None
        try:
            self.progress.start(node_id)
            shown, kwargs = self.gather(node, node_id)
            if srv.client_id is not None:
                srv.last_node_id = node_id
                srv.send_sync("executing", {"node": node_id, "display_node": node_id, "prompt_id": pid}, srv.client_id)
            srv.started(pid)
            srv.check_interrupt()  # nodes.before_node_execution
            await asyncio.sleep(0)
            outputs, ui = await node.run(self.context(node_id), **kwargs)
            if ui:
                self.ui_outputs[node_id] = {
                    "meta": {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id},
                    "output": ui,
                }
                if srv.client_id is not None:
                    srv.send_sync("executed", {"node": node_id, "display_node": node_id, "output": ui,
                                               "prompt_id": pid}, srv.client_id)  # fmt: skip
            self.values[node_id] = outputs
            self.ex.cache.set(node_id, CacheEntry(ui=self.ui_outputs.get(node_id), outputs=outputs))
        except nodes.InterruptProcessingException as iex:
            return False, {"node_id": node_id}, iex
        except Exception as caught:
            ex: BaseException = caught
            frame = node.source
            if isinstance(caught, nodes.NodeError):
                ex, frame = caught.exc, caught.frame
            tips = nodes.OOM_TIPS if isinstance(ex, nodes.OutOfMemoryError) else ""
            error = {
                "node_id": node_id,
                "exception_message": f"{ex}\n{tips}",
                "exception_type": nodes.full_type_name(type(ex)),
                "traceback": nodes.format_frames([*nodes.EXEC_FRAMES, frame]),
                "current_inputs": {k: [nodes.format_value(v) for v in vs] for k, vs in (shown or {}).items()},
            }
            return False, error, ex
        self.progress.finish(node_id)
        self.executed.append(node_id)
        return True, None, None
