"""/openapi.json: an OpenAPI 3.1 description built from the route table and the pydantic models.

Schemas come from ``model_json_schema`` (JSON Schema 2020-12, which OpenAPI 3.1 uses as it is); the
request schema of a job is :class:`emp.model.job.JobSubmission`'s own, the model that validates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from emp import __version__
from emp.coordinator.api import models as m
from emp.coordinator.api.routes import Route
from emp.model.job import JobSubmission

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    401: "Missing or wrong bearer token",
    404: "No such job",
    409: "Conflict (the job exists, or cannot be retried)",
    413: "Body too large",
    422: "Invalid input; nothing was written (error.fields names the fields)",
    503: "Redis is unavailable",
}


def build_openapi(routes: Sequence[Route], *, auth: bool) -> dict[str, Any]:
    """The description of ``routes``; ``auth``: tokens are configured (protected routes say so)."""
    models: list[type[BaseModel]] = [JobSubmission, m.OriginalJob, m.BatchRequest, m.ErrorBody]
    models += [r.response for r in routes if r.response is not None and r.response not in models]
    _, schema = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    components: dict[str, Any] = {"schemas": schema.get("$defs", {})}
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
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
                            "oneOf": [
                                *({"$ref": _REF.format(model=name)} for name in r.body["schemas"]),
                                {"type": "array", "items": {"$ref": _REF.format(model="JobSubmission")}},
                            ]
                        }
                    }
                },
            }
        codes = sorted({*r.errors, *((401,) if r.auth else ())})
        for code in codes:
            op["responses"][str(code)] = {
                "description": _STATUS_TEXT.get(code, "Error"),
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
            }
        if r.auth:
            op["security"] = [{"bearer": []}] if auth else [{"bearer": []}, {}]
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


def _response(r: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"description": r.summary}
    if r.content_type == "application/json":
        if r.response is not None:
            out["content"] = {"application/json": {"schema": {"$ref": _REF.format(model=r.response.__name__)}}}
        else:
            out["content"] = {"application/json": {"schema": {"type": "object"}}}
    elif r.content_type == "text/event-stream":
        out["content"] = {
            "text/event-stream": {
                "schema": {"type": "string", "description": "SSE messages; each data field is an EventOut"},
            }
        }
    else:
        out["content"] = {r.content_type.split(";")[0]: {"schema": {"type": "string"}}}
    return out


def _operation_id(r: Route) -> str:
    """``get_api_jobs_id_events`` and the like: unique per (method, path)."""
    path = r.path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace(".", "_")
    return f"{r.method.lower()}_{path}"
