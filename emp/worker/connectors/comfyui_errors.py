"""Pure: ComfyUI's error bodies and events → failure classes and readable messages.

How a ComfyUI failure is classified (DESIGN section 9):

=========================================================  ===================
what ComfyUI said                                          failure class
=========================================================  ===================
``POST /prompt`` → 400 (``invalid_prompt``,                malformed
  ``prompt_outputs_failed_validation``, ``prompt_no_outputs``,
  ``no_prompt``): the message lists every node error
200 with ``node_errors`` (only some outputs valid), unless  malformed
  the connector allows partial outputs
``execution_error``, OOM: ``exception_type`` is            resource_exhausted
  ``torch.OutOfMemoryError`` / ``torch.cuda.OutOfMemoryError``
  (any ``*OutOfMemoryError``), or the message says "out of
  memory", "Allocation on device" (cudaMallocAsync), or a CPU
  allocator failure ("can't allocate memory"): another machine
  may have the memory
``execution_error`` from the GPU stack ("CUDA error",          transient
  cuDNN/cuBLAS/NCCL, device-side assert, illegal memory
  access): the machine is at fault, not the job
``execution_error`` with an environment error (OSError and     transient
  its subclasses, ImportError, network errors of
  requests/urllib/httpx/aiohttp): a missing file or package,
  a download that failed; another attempt may work
``execution_error`` with ValueError, TypeError, KeyError,      malformed
  IndexError, AssertionError, ZeroDivisionError,
  NotImplementedError: a node refused the job's inputs; the
  same graph fails the same way everywhere, so retrying only
  burns GPU time
any other ``execution_error`` (RuntimeError, AttributeError,  unknown
  custom exception types): could be either; retried with
  backoff up to the job's max_attempts
``execution_interrupted`` that this worker did not ask for    transient
  (an operator or another client interrupted it)
=========================================================  ===================

``execution_error`` with ``exception_type: "ExecutionBlocked"`` is not a failure: ComfyUI sends it
when a node blocks a branch, stores nothing in history and carries on (:func:`is_blocked_notice`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emp.worker.connectors.base import ConnectorError

MAX_MESSAGE = 2000
"""Longest message stored on a job (a node's exception text can be a whole tensor dump)."""

OOM_TIPS = "\nThis error means you ran out of memory on your GPU."
"""ComfyUI appends this (and its TIPS paragraph) to an OOM's message: cut from stored messages."""

OOM_MARKERS = (
    "out of memory",  # CUDA ("CUDA out of memory. Tried to allocate"), HIP, MPS
    "allocation on device",  # cudaMallocAsync, the allocator ComfyUI enables by default
    "can't allocate memory",  # torch's CPU allocator (DefaultCPUAllocator)
    "cannot allocate memory",
    "not enough memory",  # the Windows CPU allocator
)
GPU_FAULT_MARKERS = (
    "cuda error",
    "cudnn_status",
    "cudnn error",
    "cublas_status",
    "nccl error",
    "device-side assert",
    "illegal memory access",
    "unspecified launch failure",
    "hip error",
    "no cuda gpus are available",
)
ENVIRONMENT_TYPES = frozenset(
    {
        "OSError",
        "IOError",
        "FileNotFoundError",
        "PermissionError",
        "IsADirectoryError",
        "NotADirectoryError",
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "TimeoutError",
        "ImportError",
        "ModuleNotFoundError",
    }
)
ENVIRONMENT_MODULES = ("requests.", "urllib.", "urllib3.", "httpx.", "aiohttp.", "socket.", "huggingface_hub.")
JOB_FAULT_TYPES = frozenset(
    {
        "ValueError",
        "TypeError",
        "KeyError",
        "IndexError",
        "AssertionError",
        "ZeroDivisionError",
        "NotImplementedError",
    }
)
BLOCKED_TYPE = "ExecutionBlocked"


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- validation (HTTP 400 on POST /prompt, node_errors on a 200) ------------------------------


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def format_node_errors(node_errors: Any) -> str:
    """``node_errors`` as one readable line per node: ``node 2 (ImageScale): Value not in list: …``."""
    if not isinstance(node_errors, Mapping) or not node_errors:
        return ""
    lines = []
    for node_id, entry in node_errors.items():
        if not isinstance(entry, Mapping):
            lines.append(f"node {node_id}: {entry!r}")
            continue
        class_type = _text(entry.get("class_type"))
        label = f"node {node_id} ({class_type})" if class_type else f"node {node_id}"
        problems = []
        errors = entry.get("errors")
        for error in errors if isinstance(errors, list) else []:
            if not isinstance(error, Mapping):
                continue
            message, details = _text(error.get("message")), _text(error.get("details"))
            problems.append(f"{message}: {details}" if message and details else message or details or "error")
        lines.append(f"{label}: {'; '.join(problems) or 'invalid'}")
    return "\n".join(lines)


def dropped_outputs(node_errors: Any) -> set[str]:
    """The output node ids ComfyUI dropped because of ``node_errors`` (their ``dependent_outputs``)."""
    dropped: set[str] = set()
    if isinstance(node_errors, Mapping):
        for entry in node_errors.values():
            outputs = entry.get("dependent_outputs") if isinstance(entry, Mapping) else None
            if isinstance(outputs, list):
                dropped.update(str(o) for o in outputs)
    return dropped


def validation_error(body: Any, status: int) -> ConnectorError:
    """The ``malformed`` error for a POST /prompt that ComfyUI refused (its JSON ``body``)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping):
        kind = _text(error.get("type"))
        message, details = _text(error.get("message")), _text(error.get("details"))
        head = message or kind or "invalid prompt"
        if details and details not in head:
            head = f"{head} ({details})"
        prefix = f"ComfyUI rejected the workflow [{kind}]" if kind else "ComfyUI rejected the workflow"
        text = f"{prefix}: {head}"
    elif isinstance(error, str) and error.strip():  # older servers: {"error": "...", ...}
        text = f"ComfyUI rejected the workflow: {error.strip()}"
    else:
        text = f"ComfyUI rejected the workflow with HTTP {status}: {str(body)[:300]}"
    nodes = format_node_errors(body.get("node_errors") if isinstance(body, Mapping) else None)
    if nodes:
        text = f"{text}\n{nodes}"
    return ConnectorError("malformed", clip(text))


def partial_error(node_errors: Any) -> ConnectorError:
    """The ``malformed`` error for a 200 whose ``node_errors`` dropped some of the job's outputs."""
    dropped = ", ".join(sorted(dropped_outputs(node_errors))) or "?"
    text = f"ComfyUI accepted only part of the workflow: output node(s) {dropped} failed validation\n"
    return ConnectorError("malformed", clip(text + format_node_errors(node_errors)))


# -- execution ---------------------------------------------------------------------------------


def is_blocked_notice(data: Mapping[str, Any]) -> bool:
    """An ``execution_error`` that only says a node blocked a branch: the prompt carries on."""
    return data.get("exception_type") == BLOCKED_TYPE


def is_oom(exception_type: str, message: str) -> bool:
    if exception_type.endswith("OutOfMemoryError"):
        return True
    lowered = message.lower()
    return any(marker in lowered for marker in OOM_MARKERS)


def error_class(exception_type: str, message: str) -> str:
    """The failure class of an ``execution_error`` (see the table in the module docstring)."""
    if is_oom(exception_type, message):
        return "resource_exhausted"
    lowered = message.lower()
    if any(marker in lowered for marker in GPU_FAULT_MARKERS):
        return "transient"
    if exception_type in ENVIRONMENT_TYPES or exception_type.startswith(ENVIRONMENT_MODULES):
        return "transient"
    if exception_type in JOB_FAULT_TYPES:  # built-ins are reported unqualified
        return "malformed"
    return "unknown"


def _node_label(data: Mapping[str, Any]) -> str:
    node_id, node_type = data.get("node_id"), _text(data.get("node_type"))
    if node_id is None:
        return "a node"
    return f"node {node_id} ({node_type})" if node_type else f"node {node_id}"


def execution_error(data: Mapping[str, Any]) -> ConnectorError:
    """The ConnectorError for an ``execution_error`` payload (from the socket or from history)."""
    exception_type = _text(data.get("exception_type")) or "Exception"
    raw = data.get("exception_message")
    message = raw if isinstance(raw, str) else ""
    failure_class = error_class(exception_type, message)
    shown = message.split(OOM_TIPS, 1)[0].strip() or "(no message)"
    return ConnectorError(failure_class, clip(f"ComfyUI {_node_label(data)} failed: {exception_type}: {shown}"))


def interrupted_error(data: Mapping[str, Any]) -> ConnectorError:
    """An ``execution_interrupted`` this worker did not ask for: someone else stopped the prompt."""
    return ConnectorError(
        "transient", f"ComfyUI interrupted the prompt at {_node_label(data)} (not at this worker's request)"
    )
