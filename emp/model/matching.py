"""Which worker may run which job: the Python twin of the matcher in ``emp/redis/functions/_matching.lua``.

The rules are settled in ``docs/internals.md`` ("Matching") and the two implementations are held
together by one table of cases (``tests/cases/matching_cases.json``) run against both. The claim
Function decides in Redis; this module serves ``emp jobs explain``, unworkable detection and tests.

Rule for one key with required value ``r`` and worker value ``w`` (walked by dot path):

1. ``r == "all"`` -> match (even when ``w`` is missing);
2. ``w`` missing (or null) -> no match;
3. ``r`` array -> ``w`` must be an array containing every item of ``r``;
4. ``w`` array and ``r`` scalar -> ``w`` contains ``r``;
5. ``r`` number -> ``w`` must be a number and ``w >= r`` (booleans are not numbers);
6. otherwise ``w == r`` (same type and value).

Special keys: ``models`` (every model in ``caps.models[service]``, or in ``caps.models`` when that
is a plain array) and ``customer_isolation`` (``"strict"`` needs a strict worker; other values add
no constraint). A negative key excludes the worker when it *matches* by the same rules.

Per-job rules (not part of a signature): the worker's customer deny/allow lists and strict
isolation, its workflow restriction, and, after the job ran out of memory (``resource_exhausted``),
the workers it avoids and the GPU memory it needs more than (:func:`emp.model.retry.after_out_of_memory`).

Worker capabilities are a plain dict::

    {"services": ["comfyui"], "hardware": {"gpu_model": "RTX 4090", "gpu_memory_gb": 24,
     "ram_gb": 64, "cpu_cores": 16}, "models": {"comfyui": ["sdxl"]},
     "customer_access": {"isolation": "loose", "allowed_customers": [], "denied_customers": []},
     "workflow_id": None, "pool": "standard", ...custom keys, nested allowed}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from emp.model.requirements import EMPTY, Canonical

ALL = "all"
MODELS = "models"
CUSTOMER_ISOLATION = "customer_isolation"
STRICT = "strict"


@dataclass(frozen=True, slots=True)
class JobView:
    """What matching needs to know about one job."""

    service: str
    requirements: Canonical = EMPTY
    customer_id: str | None = None
    workflow_id: str | None = None
    avoid_workers: tuple[str, ...] = ()
    """Workers the job ran out of memory on: none of them takes it again."""
    gpu_gb_over: float | None = None
    """Set after it ran out of memory with this much GPU memory while a live worker had more: only a
    worker with more than this (``hardware.gpu_memory_gb``) takes it."""


# -- one key ----------------------------------------------------------------------------------


def walk(caps: Any, dotted_key: str) -> Any:
    """The value at ``dotted_key`` in ``caps``, or None when missing (or null).

    Only objects are walked into: a path through an array or a scalar is missing.
    """
    cur = caps
    for part in dotted_key.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
        if cur is None:
            return None
    return cur


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _same(a: object, b: object) -> bool:
    """Same JSON type and value: 1 == 1.0 (both numbers), but True != 1 and "1" != 1."""
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


def _contains(items: list[Any], v: object) -> bool:
    return any(_same(x, v) for x in items)


def value_matches(required: Any, worker_value: Any) -> bool:
    """Rules 1-6 for one key. A missing or wrongly typed worker value is "no match", never an error."""
    if isinstance(required, str) and required == ALL:
        return True
    if worker_value is None:
        return False
    if isinstance(required, list):
        return isinstance(worker_value, list) and all(_contains(worker_value, item) for item in required)
    if isinstance(worker_value, list):
        return _contains(worker_value, required)
    if _is_number(required):
        return _is_number(worker_value) and bool(worker_value >= required)
    return _same(required, worker_value)


def worker_models(caps: dict[str, Any], service: str) -> list[Any] | None:
    """The models a worker offers for ``service`` (None when it advertises none)."""
    models = caps.get(MODELS)
    if isinstance(models, dict):
        models = models.get(service)
    return models if isinstance(models, list) else None


def _models_match(required: Any, caps: dict[str, Any], service: str) -> bool:
    if isinstance(required, str) and required == ALL:
        return True
    models = worker_models(caps, service)
    if models is None:
        return False
    if isinstance(required, list):
        return all(_contains(models, m) for m in required)
    return _contains(models, required)


def _isolation(caps: dict[str, Any]) -> Any:
    access = caps.get("customer_access")
    return access.get("isolation") if isinstance(access, dict) else None


def _is_strict(v: object) -> bool:
    return isinstance(v, str) and v == STRICT


def key_matches(key: str, required: Any, caps: dict[str, Any], service: str) -> bool:
    """One (flattened) requirement key against a worker, special keys included."""
    if key == MODELS:
        return _models_match(required, caps, service)
    if key == CUSTOMER_ISOLATION:
        return not _is_strict(required) or _is_strict(_isolation(caps))
    return value_matches(required, walk(caps, key))


# -- requirements (per signature) --------------------------------------------------------------


def requirements_match(canonical: Canonical, caps: Any, service: str) -> bool:
    """Do these requirements let this worker run a job of ``service``? (Not the service check itself.)"""
    c = caps if isinstance(caps, dict) else {}
    for key, required in canonical.positive.items():
        if not key_matches(key, required, c, service):
            return False
    return not any(key_matches(key, required, c, service) for key, required in canonical.negative.items())


def _requirements_reason(canonical: Canonical, caps: dict[str, Any], service: str) -> str | None:
    for key, required in canonical.positive.items():
        if not key_matches(key, required, caps, service):
            return _positive_reason(key, required, caps, service)
    for key, required in canonical.negative.items():
        if key_matches(key, required, caps, service):
            rule = describe_requirement(key, required, service)
            return f"excluded by negative requirement {rule}; worker has {_has(key, caps, service)}"
    return None


def describe_requirement(key: str, required: Any, service: str) -> str:
    """The requirement in words: "hardware.gpu_memory_gb >= 24", "models ['sdxl'] for 'comfyui'"."""
    if key == MODELS:
        return f"models {_show(required)} for service {service!r}"
    if key == CUSTOMER_ISOLATION:
        return f"customer_isolation = {_show(required)}"
    if isinstance(required, str) and required == ALL:
        return f"{key} = 'all'"
    if isinstance(required, list):
        return f"{key} to contain all of {_show(required)}"
    if _is_number(required):
        return f"{key} >= {_show(required)}"
    return f"{key} = {_show(required)}"


def _has(key: str, caps: dict[str, Any], service: str) -> str:
    if key == MODELS:
        models = worker_models(caps, service)
        return "no models for it" if models is None else _show(models)
    if key == CUSTOMER_ISOLATION:
        iso = _isolation(caps)
        return "no customer isolation" if iso is None else f"isolation {_show(iso)}"
    value = walk(caps, key)
    return "none" if value is None else _show(value)


def _positive_reason(key: str, required: Any, caps: dict[str, Any], service: str) -> str:
    if key == CUSTOMER_ISOLATION:
        return f"requires a worker with strict customer isolation, worker has {_has(key, caps, service)}"
    return f"requires {describe_requirement(key, required, service)}, worker has {_has(key, caps, service)}"


def _show(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, ensure_ascii=False, default=str)
    return str(v)


# -- per-job rules -----------------------------------------------------------------------------


def _str_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _job_rules_reason(job: JobView, caps: dict[str, Any], worker_id: str | None) -> str | None:
    wf = caps.get("workflow_id")
    if isinstance(wf, str) and wf and job.workflow_id != wf:
        got = f"workflow {job.workflow_id!r}" if job.workflow_id else "no workflow"
        return f"worker is restricted to workflow {wf!r}, job has {got}"
    access = caps.get("customer_access")
    if isinstance(access, dict):
        customer = job.customer_id or None
        denied = _str_list(access.get("denied_customers"))
        allowed = _str_list(access.get("allowed_customers"))
        if customer is not None and _contains(denied, customer):
            return f"customer {customer!r} is denied"
        if allowed and (customer is None or not _contains(allowed, customer)):
            if customer is None:
                return f"job has no customer, worker takes only customers {_show(allowed)}"
            return f"customer {customer!r} is not in the worker's allowed customers {_show(allowed)}"
        if _is_strict(access.get("isolation")) and not allowed:
            return "worker has strict customer isolation and no allowed customers"
    return _memory_reason(job, caps, worker_id)


def gpu_memory_gb(caps: Any) -> float | None:
    """The worker's ``hardware.gpu_memory_gb`` when it is a number, else None."""
    mem = walk(caps, "hardware.gpu_memory_gb")
    return float(mem) if _is_number(mem) else None


def _memory_reason(job: JobView, caps: dict[str, Any], worker_id: str | None) -> str | None:
    """The rules a job gets after running out of memory (both are checked only once it has)."""
    if not job.avoid_workers:
        return None
    if worker_id is not None and worker_id in job.avoid_workers:
        return f"job ran out of memory on worker {worker_id!r} before and avoids it"
    if job.gpu_gb_over is not None:
        mem = gpu_memory_gb(caps)
        if mem is None or mem <= job.gpu_gb_over:
            has = "none" if mem is None else _show(walk(caps, "hardware.gpu_memory_gb"))
            return (
                f"job needs more than {_show(job.gpu_gb_over)} GB of GPU memory (it ran out of memory with that "
                f"much), worker has {has}"
            )
    return None


def job_rules_match(job: JobView, caps: Any, worker_id: str | None = None, now_ms: int = 0) -> bool:
    """The rules that depend on the job's own customer / workflow / out-of-memory history.

    ``now_ms`` is accepted for callers written when avoiding a worker was time-bound; no rule
    depends on the time now.
    """
    return _job_rules_reason(job, caps if isinstance(caps, dict) else {}, worker_id) is None


# -- the whole decision ------------------------------------------------------------------------


def explain(job: JobView, caps: Any, worker_id: str | None, now_ms: int = 0) -> str | None:
    """None when the worker can run the job now; else a short reason naming the first failing rule.

    Order of checks: service, positive requirements, negative requirements, workflow restriction,
    customer rules, avoided workers, GPU memory after running out of it. (``now_ms``: see
    :func:`job_rules_match`.)
    """
    c = caps if isinstance(caps, dict) else {}
    services = _str_list(c.get("services"))
    if not _contains(services, job.service):
        return f"service {job.service!r} not in worker services {_show(services)}"
    return _requirements_reason(job.requirements, c, job.service) or _job_rules_reason(job, c, worker_id)


def can_run(job: JobView, caps: Any, worker_id: str | None, now_ms: int = 0) -> bool:
    """Can this worker (``caps``, ``worker_id``) take this job? (``now_ms``: see :func:`job_rules_match`.)"""
    c = caps if isinstance(caps, dict) else {}
    return (
        _contains(_str_list(c.get("services")), job.service)
        and requirements_match(job.requirements, c, job.service)
        and job_rules_match(job, c, worker_id, now_ms)
    )
