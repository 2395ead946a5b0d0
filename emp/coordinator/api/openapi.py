"""/openapi.json: an OpenAPI 3.1 description built from the route table and the pydantic models.

Schemas come from ``model_json_schema`` (JSON Schema 2020-12, which OpenAPI 3.1 uses as it is); the
request schema of a job is :class:`emp.model.job.JobSubmission`'s own, the model that validates it,
with the limits its validators enforce written in (pydantic cannot see inside a ``BeforeValidator``):
:func:`job_schema`. The original system's body (``OriginalJob``) is derived from it through the
mapping tables of :mod:`emp.coordinator.api.compat`. A client (or a fuzzer) that sends what the
description allows is accepted; tests/coordinator/test_fuzz.py holds the description to that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from emp import __version__, defaults
from emp.coordinator.api import models as m
from emp.coordinator.api.auth import Scope
from emp.coordinator.api.compat import IGNORED_FIELDS, RENAMED_FIELDS
from emp.coordinator.api.routes import Route
from emp.model.job import (  # the validators' own patterns (one place)
    BAD_ID_CHARS,
    ID_MAX,
    MAX_MS,
    SERVICE_ALIASES,
    SERVICE_RE,
    TEXT_MAX,
    JobSubmission,
)

__all__ = ["build_openapi", "job_schema", "original_job_schema"]

_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    401: "Missing or wrong bearer token",
    403: "The token's scope does not allow this route (the message and WWW-Authenticate name the scope needed)",
    404: "No such job",
    409: "Conflict (the job exists, or cannot be retried)",
    413: "Body too large",
    422: "Invalid input; nothing was written (error.fields names the fields)",
    503: "Redis is unavailable",
    507: "The broker is full (Redis at maxmemory): nothing was written, retry later",
}


def build_openapi(routes: Sequence[Route], *, auth: bool) -> dict[str, Any]:
    """The description of ``routes``; ``auth``: tokens are configured (protected routes say so)."""
    models: list[type[BaseModel]] = [JobSubmission, m.BatchRequest, m.ErrorBody]
    models += [model for r in routes for model in _answers(r) if model not in models]
    # A route's own body models (flows: FlowRequest), described as components too.
    models += [x for r in routes if r.body for x in r.body.get("models", ()) if x not in models]
    _, schema = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    components: dict[str, Any] = {"schemas": schema.get("$defs", {})}
    job = components["schemas"]["JobSubmission"] = job_schema(components["schemas"]["JobSubmission"])
    components["schemas"]["OriginalJob"] = original_job_schema(job)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token of EMP_API_TOKEN (docs/security.md). Its scope is read (GET routes, event "
            "streams, /metrics), submit (read, and submitting jobs and flows) or admin (everything: cancel, "
            "retry; a token given without a scope). Each operation's security lists the scope it needs.",
        }
    }
    paths: dict[str, Any] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": _operation_id(r),
            "tags": [r.tag],
            "responses": {str(r.status): _response(r)},
        }
        if r.params:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "description": p.description,
                    "required": p.required,
                    "schema": p.schema,
                }
                for p in r.params
            ]
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "description": r.body["description"],
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                *({"$ref": _REF.format(model=name)} for name in r.body["schemas"]),
                                *(
                                    [
                                        {
                                            "type": "array",
                                            "items": {"$ref": _REF.format(model="JobSubmission")},
                                            "minItems": 1,
                                            "maxItems": defaults.MAX_BATCH,
                                        }
                                    ]
                                    if r.body.get("jobs_array", True)  # flows: a flow is one object
                                    else []
                                ),
                            ]
                        }
                    }
                },
            }
        # Any valid token reads: only routes that need more than read can answer 403.
        codes = sorted({*r.errors, *((401,) if r.auth else ()), *((403,) if r.scope not in (None, Scope.READ) else ())})
        for code in codes:
            op["responses"][str(code)] = {
                "description": _STATUS_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
            }
        if r.scope is not None:
            # OpenAPI 3.1: a non-OAuth scheme's requirement may list the roles it needs (here: the scope).
            needs = [{"bearer": [str(r.scope)]}]
            op["security"] = needs if auth else [*needs, {}]
            op["x-emp-scope"] = str(r.scope)
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "emp coordinator API",
            "version": __version__,
            "description": "Submit, list and follow jobs of an emp broker; see docs/api.md.",
        },
        "paths": paths,
        "components": components,
    }


def _answers(r: Route) -> list[type[BaseModel]]:
    return [model for model in (r.response, *r.also) if model is not None]


def _response(r: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"description": r.summary}
    if r.content_type == "application/json":
        refs = [{"$ref": _REF.format(model=model.__name__)} for model in _answers(r)]
        if refs:
            out["content"] = {"application/json": {"schema": refs[0] if len(refs) == 1 else {"anyOf": refs}}}
        else:
            out["content"] = {"application/json": {"schema": {"type": "object"}}}
    elif r.content_type == "text/event-stream":
        # One message of the stream (how OpenAPI 3.1 describes an event stream; 3.2 calls it itemSchema).
        data: dict[str, Any] = {"type": "string", "contentMediaType": "application/json"}
        if r.response is not None:
            data["contentSchema"] = {"$ref": _REF.format(model=r.response.__name__)}
        event = {
            "type": "object",
            "description": "One SSE message: id is the stream entry id, event the event's type",
            "properties": {"id": {"type": "string"}, "event": {"type": "string"}, "data": data},
            "required": ["id", "event", "data"],
        }
        out["content"] = {"text/event-stream": {"schema": event}}
    else:
        out["content"] = {r.content_type.split(";")[0]: {"schema": {"type": "string"}}}
    return out


def _operation_id(r: Route) -> str:
    """``get_api_jobs_id_events`` and the like: unique per (method, path)."""
    path = r.path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace(".", "_")
    return f"{r.method.lower()}_{path}"


# -- the job's schema -----------------------------------------------------------------------------

_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_REQ_SCALAR = {"type": ["string", "number", "boolean"]}
_REQUIREMENTS = {
    "type": "object",
    "description": "Dot-path keys into the worker's capabilities -> a required value (a string, number or "
    "boolean, or a non-empty array of them). Also accepted, and described in docs/api.md: nested objects, "
    "positive_requirements / negative_requirements sub-objects. At most "
    f"{defaults.REQUIREMENTS_MAX_BYTES} bytes of canonical JSON, nested at most {defaults.MAX_JSON_DEPTH} levels.",
    "propertyNames": {
        "pattern": r"^[^.]+(\.[^.]+)*$",
        "not": {"enum": ["positive_requirements", "negative_requirements"]},
    },
    "additionalProperties": {"anyOf": [_REQ_SCALAR, {"type": "array", "minItems": 1, "items": _REQ_SCALAR}]},
}
"""The flat form of requirements (every key a dot path, no nesting: no key can be given twice)."""


def _limits() -> dict[str, dict[str, Any]]:
    """What each field's validator in emp.model.job accepts, in JSON Schema words."""
    ms = {"type": "integer", "minimum": 0, "maximum": MAX_MS}
    prio = {"type": "integer", "minimum": defaults.PRIORITY_MIN, "maximum": defaults.PRIORITY_MAX}
    text = {"type": "string", "maxLength": TEXT_MAX, "pattern": _NO_CONTROL}
    return {
        "id": {"type": "string", "minLength": 1, "maxLength": ID_MAX, "pattern": _none_of(BAD_ID_CHARS)},
        "service": {"type": "string", "pattern": f"^{SERVICE_RE.pattern}$"},
        "priority": prio,
        "workflow_priority": prio,
        "customer_id": text,
        "workflow_id": text,
        "workflow_datetime": ms,
        "run_at": ms,
        "step": {"type": "integer", "minimum": 0},
        "total_steps": {"type": "integer", "minimum": 0},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": defaults.MAX_ATTEMPTS_CEILING},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0},
        "requirements": _REQUIREMENTS,
    }


def _none_of(chars: re.Pattern[str]) -> str:
    """A pattern of non-empty strings without any character ``chars`` finds, spelled out one by one:
    ``\\s`` means a different set in ECMA-262 (what JSON Schema reads) and in Python. Every character
    Python's ``\\s`` finds is at most U+3000."""
    bad = "".join(f"\\u{c:04x}" for c in range(0x3001) if chars.search(chr(c)))
    return f"^[^{bad}]+$"


def _narrow(prop: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """``prop`` (pydantic's schema of one field; ``anyOf [T, null]`` when optional) with ``limits`` on T."""
    out = dict(prop)
    branches = out.get("anyOf")
    if isinstance(branches, list):
        out["anyOf"] = [b if b.get("type") == "null" else {**b, **limits} for b in branches]
    else:
        out.update(limits)
    return out


def job_schema(base: dict[str, Any]) -> dict[str, Any]:
    """JobSubmission's schema (``base``, from pydantic) with the limits of :func:`_limits` written in."""
    limits = _limits()
    props = {name: _narrow(prop, limits.get(name, {})) for name, prop in base["properties"].items()}
    return {**base, "properties": props}


_ORIGINAL_NAMES = {"service": "service_required", "step": "step_number", "max_attempts": "max_retries"}
"""The name the description gives an emp field in the original's body (compat maps every alias)."""


def original_job_schema(job: dict[str, Any]) -> dict[str, Any]:
    """The original system's body, derived from the job's schema and compat's tables: one name per field
    (two names of one field with different values are refused; the others are in the description),
    ``timeout_minutes`` for ``timeout_s``, and the fields emp ignores (any value)."""
    props: dict[str, Any] = {}
    for name, prop in job["properties"].items():
        aliases = list(SERVICE_ALIASES) if name == "service" else [o for o, e in RENAMED_FIELDS.items() if e == name]
        if name == "timeout_s":
            props["timeout_minutes"] = {**prop, "description": "-> timeout_s (x 60)"}
            continue
        if name == "workflow_datetime":
            prop = {**prop, "description": "epoch ms (ISO 8601 text is accepted too, and converted)"}
        own = _ORIGINAL_NAMES.get(name, name)
        others = [a for a in aliases if a not in (own, name)]
        note = f"-> {name}" if own != name else ""
        note += f" ({', '.join(others)}: the same field)" if others else ""
        props[own] = {**prop, "description": note.strip()} if note else prop
    for name in sorted(IGNORED_FIELDS):
        props[name] = {"description": "accepted and ignored (the original's bookkeeping)"}
    return {
        "title": "OriginalJob",
        "description": "The original system's job body (docs/api.md maps it field by field)",
        "type": "object",
        "properties": props,
        "required": [_ORIGINAL_NAMES["service"]],
        "additionalProperties": False,
    }
