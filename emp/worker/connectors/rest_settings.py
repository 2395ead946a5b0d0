"""Settings of the generic REST connector, and their validation from a TOML options table.

Every option, its type and default (``[connectors.<name>.options]`` in the services config):

=================  ==============================  ===============================================
option             default                         meaning
=================  ==============================  ===============================================
mode               "sync"                          "sync": one request answers with the result;
                                                   "async": submit answers with an id, then poll
submit_path        "/"                             where the job is sent (the payload is the body)
method             "POST"                          POST, PUT or PATCH
headers            {}                              sent with every request (``${VAR}`` expanded
                                                   by the services config: put tokens there)
timeout_s          60.0                            one HTTP request's time: its whole answer must
                                                   arrive within it; the job's own timeout is the
                                                   worker's (job ``timeout_s``)
max_response_bytes 64 MiB                          largest answer read (a bigger one fails the
                                                   attempt as malformed; defaults.py
                                                   CONNECTOR_MAX_RESPONSE_BYTES)
health_path        "/health"                       GET; any 2xx is healthy, the body is ignored
status_path        "/jobs/{id}"                    async: GET to poll; ``{id}`` is the job's id
id_field           "id"                            async: dotted path to the id in the submit
                                                   answer
status_field       "status"                        dotted path to the status in a poll answer
done_values        ["completed", "succeeded",      statuses meaning success (case-insensitive)
                   "success", "done"]
failed_values      ["failed", "error",             statuses meaning failure (case-insensitive);
                   "cancelled", "canceled"]        any other status means "still running"
result_field       "result"                        dotted path to the result; "" = the whole body
error_field        "error"                         dotted path to the error message
class_field        none                            dotted path to a failure class in an error
                                                   body (resource_exhausted, malformed, ...)
progress_field     none                            dotted path to the progress in a poll answer
progress_max       1.0                             what the service's "finished" progress is:
                                                   1.0 for 0..1, 100.0 for percent
poll_interval_s    0.5                             async: time between polls
poll_error_limit   3                               async: consecutive transient poll failures
                                                   (5xx, timeouts, garbage) tolerated
cancel_path        none                            on cancel: this request is sent (``{id}`` is
                                                   the job's id; async mode only)
cancel_method      "POST"                          the cancel request's method
models_path        none                            GET: the model list
models_field       "models"                        dotted path to the list in that answer; items
                                                   are strings or objects with ``models_name_field``
models_name_field  "name"
models             []                              static model list, used without models_path
outputs_field      none                            dotted path (inside the result) to a list of
                                                   files ``{name, data (base64), content_type}``
=================  ==============================  ===============================================

Each option is checked here: an unknown key or a wrong type is a ValueError that names the key
and what it expects (the services config turns it into a ConfigError with the file name).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from emp import defaults
from emp.worker.connectors.options import BadOption, parse_options

Mode = Literal["sync", "async"]
METHODS = ("POST", "PUT", "PATCH")
CANCEL_METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")

DONE_VALUES = ("completed", "succeeded", "success", "done")
FAILED_VALUES = ("failed", "error", "cancelled", "canceled")
"""A job the service cancelled on its own is failed (class unknown: retried), not polled forever."""

DEFAULT_TIMEOUT_S = 60.0
"""One request's read timeout: the original's WORKER_REST_SYNC_TIMEOUT (60 s). A sync service that
takes longer per job needs a bigger value; async polls are short requests."""
DEFAULT_POLL_INTERVAL_S = 0.5
"""The original polled every 2 s; 0.5 s finishes a short job sooner at two cheap GETs a second."""
DEFAULT_POLL_ERROR_LIMIT = 3
"""A long job should not fail on one 502 from a proxy in front of the service."""


@dataclass(frozen=True, slots=True)
class RestSettings:
    url: str
    mode: Mode = "sync"
    submit_path: str = "/"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    health_path: str = "/health"
    status_path: str = "/jobs/{id}"
    id_field: str = "id"
    status_field: str = "status"
    done_values: tuple[str, ...] = DONE_VALUES
    failed_values: tuple[str, ...] = FAILED_VALUES
    result_field: str = "result"
    error_field: str = "error"
    class_field: str | None = None
    progress_field: str | None = None
    progress_max: float = 1.0
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    poll_error_limit: int = DEFAULT_POLL_ERROR_LIMIT
    cancel_path: str | None = None
    cancel_method: str = "POST"
    models_path: str | None = None
    models_field: str = "models"
    models_name_field: str = "name"
    models: tuple[str, ...] = ()
    outputs_field: str | None = None
    max_response_bytes: int = defaults.CONNECTOR_MAX_RESPONSE_BYTES


_POSITIVE = "a positive number"
_NON_EMPTY = "a non-empty string"
_STRINGS = "a list of non-empty strings"
_EXPECTED: dict[str, str] = {
    "submit_path": _NON_EMPTY,
    "method": f"one of {', '.join(METHODS)}",
    "headers": 'a table of string values (header name = "value")',
    "timeout_s": _POSITIVE,
    "health_path": _NON_EMPTY,
    "status_path": _NON_EMPTY,
    "id_field": _NON_EMPTY,
    "status_field": _NON_EMPTY,
    "done_values": _STRINGS,
    "failed_values": _STRINGS,
    "result_field": "a string",
    "error_field": _NON_EMPTY,
    "class_field": _NON_EMPTY,
    "progress_field": _NON_EMPTY,
    "progress_max": _POSITIVE,
    "poll_interval_s": _POSITIVE,
    "poll_error_limit": "a non-negative integer",
    "cancel_path": _NON_EMPTY,
    "cancel_method": f"one of {', '.join(CANCEL_METHODS)}",
    "models_path": _NON_EMPTY,
    "models_field": "a string",
    "models_name_field": _NON_EMPTY,
    "models": _STRINGS,
    "outputs_field": _NON_EMPTY,
    "max_response_bytes": "a positive integer",
}
"""What each option expects, as error messages say it (``mode``'s type says it: one of sync, async)."""
_CHOICES = {"method": METHODS, "cancel_method": CANCEL_METHODS}
"""Options given in any case and kept upper-case."""
_PATHS = ("submit_path", "health_path", "status_path", "cancel_path", "models_path")
_LOWERED = ("done_values", "failed_values")
_EMPTY_OK = ("result_field", "models_field")
"""An empty dotted path means the whole body."""


def parse_settings(url: str | None, options: Mapping[str, Any]) -> RestSettings:
    """RestSettings from a URL and an options table; ValueError naming the bad key otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError('url: the rest connector needs the service\'s base URL (url = "http://host:port")')
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
    values = parse_options(
        options,
        RestSettings,
        label="option of the rest connector",
        expected=_EXPECTED,
        valid=_valid,
        exclude={"url"},
        quiet={"headers"},  # never quote them: headers carry tokens
    )
    settings = RestSettings(url=url, **{key: _normal(key, value) for key, value in values.items()})
    _check_templates(settings)
    overlap = set(settings.done_values) & set(settings.failed_values)
    if overlap:
        raise ValueError(f"done_values and failed_values: {sorted(overlap)} cannot be both success and failure")
    return settings


def _valid(key: str, value: Any) -> bool:
    """What an option of the right type must also be (the rest of its "expected ..." above)."""
    if key in _CHOICES:
        return value.upper() in _CHOICES[key]
    if isinstance(value, str):
        return bool(value) or key in _EMPTY_OK
    if isinstance(value, list):
        return all(value)
    if _EXPECTED.get(key) == _POSITIVE:
        return math.isfinite(value) and value > 0
    if key == "poll_error_limit":
        return bool(value >= 0)
    if key == "max_response_bytes":
        return bool(value > 0)
    return True  # headers: a table of strings is all they need to be


def _normal(key: str, value: Any) -> Any:
    """A valid option as the settings keep it; BadOption for a path that is not one."""
    if key in _PATHS and not value.startswith("/"):
        raise BadOption(key, 'a path starting with "/"', value)
    if key in _CHOICES:
        return value.upper()
    return tuple(v.lower() for v in value) if key in _LOWERED else value


def _check_templates(s: RestSettings) -> None:
    for key, template in (("status_path", s.status_path), ("cancel_path", s.cancel_path)):
        if template is None:
            continue
        try:
            template.format(id="x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{key}: {template!r} may contain only {{id}} as a placeholder ({exc})") from None
    if s.mode == "async" and "{id}" not in s.status_path:
        raise ValueError(f'status_path: async mode needs the job id in it, like "/jobs/{{id}}"; got {s.status_path!r}')
    if s.mode == "sync" and s.cancel_path is not None and "{id}" in s.cancel_path:
        raise ValueError("cancel_path: a sync job has no id; {id} can be used in async mode only")
