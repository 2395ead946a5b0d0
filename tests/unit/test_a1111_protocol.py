"""A1111 request building, progress, error classification and decoding: pure, no server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from emp.worker.connectors.a1111_protocol import (
    ProgressTracker,
    build_request,
    classify_error,
    decode_images,
    error_message,
    image_kind,
    parse_info,
    result_of,
)
from emp.worker.connectors.base import ConnectorError

PNG = b"\x89PNG\r\n\x1a\n" + b"rest"


def test_build_request_defaults_to_txt2img_and_passes_fields_through() -> None:
    req = build_request({"prompt": "cat", "steps": 20, "override_settings": {"sd_model_checkpoint": "x"}})
    assert (req.mode, req.path) == ("txt2img", "/sdapi/v1/txt2img")
    assert req.body == {"prompt": "cat", "steps": 20, "override_settings": {"sd_model_checkpoint": "x"}}


def test_build_request_img2img_needs_init_images() -> None:
    req = build_request({"mode": "img2img", "init_images": ["aGk="], "denoising_strength": 0.5})
    assert req.path == "/sdapi/v1/img2img" and "mode" not in req.body
    for bad in (None, [], [""], "aGk=", [1]):
        with pytest.raises(ConnectorError) as info:
            build_request({"mode": "img2img", "init_images": bad})
        assert info.value.failure_class == "malformed"


@pytest.mark.parametrize("payload", [{"mode": "inpaint"}, {"mode": None}, []])
def test_build_request_refuses_bad_mode_or_shape(payload: object) -> None:
    with pytest.raises(ConnectorError) as info:
        build_request(payload)  # type: ignore[arg-type]
    assert info.value.failure_class == "malformed"


def _progress(progress: float, job_count: int, step: int = 0, steps: int = 20, **state: object) -> dict[str, Any]:
    return {
        "progress": progress,
        "eta_relative": 2.5,
        "state": {"job_count": job_count, "job_no": 0, "sampling_step": step, "sampling_steps": steps, **state},
        "current_image": None,
    }


def test_progress_skips_idle_and_starting_answers_and_never_decreases() -> None:
    tracker = ProgressTracker()
    assert tracker.update(_progress(0, 0)) is None  # idle: our request has not begun
    assert tracker.update(_progress(-0.04, -1, 1)) is None  # state.begin(): job_count -1, odd values
    assert tracker.update(_progress(0.51, 1, 10)) == (51.0, "step 10/20, eta 2.5 s")
    assert tracker.update(_progress(0.30, 1, 6)) == (51.0, "step 6/20, eta 2.5 s")  # never goes back
    assert tracker.update(_progress(1.0, 1, 20)) == (99.0, "step 20/20, eta 2.5 s")  # 100 only at the end
    assert tracker.update("garbage") is None and tracker.update({"state": None}) is None
    assert not tracker.interrupted


def test_progress_message_names_the_batch_and_notes_an_interrupt() -> None:
    tracker = ProgressTracker()
    update = tracker.update(_progress(0.6, 2, 4, 20, job_no=1, interrupted=True))
    assert update == (60.0, "batch 2/2, step 4/20, eta 2.5 s")
    assert tracker.interrupted


def test_stale_interrupt_flag_of_an_idle_service_is_ignored() -> None:
    tracker = ProgressTracker()
    tracker.update(_progress(0, 0, interrupted=True))  # left over from an earlier request
    assert not tracker.interrupted


def test_an_idle_answer_after_the_request_with_the_flag_set_means_interrupted() -> None:
    tracker = ProgressTracker()
    tracker.after_request(_progress(0, 1, 5, interrupted=True))  # someone else's request is running
    assert not tracker.interrupted
    tracker.after_request(_progress(0, 0, interrupted=False))
    assert not tracker.interrupted
    tracker.after_request(_progress(0, 0, interrupted=True))
    assert tracker.interrupted


OOM_BODY = {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory. Tried to allocate"}


@pytest.mark.parametrize(
    ("status", "body", "default", "expected", "needle"),
    [
        (500, OOM_BODY, "transient", "resource_exhausted", "OutOfMemoryError: CUDA out of memory"),
        (500, {"error": "RuntimeError", "errors": "CUDA error: out of memory"}, "transient", "resource_exhausted", ""),
        (
            422,
            {
                "detail": [
                    {"loc": ["body", "steps"], "msg": "value is not a valid integer", "type": "type_error.integer"}
                ]
            },
            "malformed",
            "malformed",
            "steps: value is not a valid integer",
        ),
        (422, {"error": "HTTPException", "detail": "Script 'x' not found"}, "malformed", "malformed", "Script 'x'"),
        (500, {"error": "HTTPException", "detail": "Invalid encoded image"}, "transient", "malformed", "Invalid"),
        (404, {"error": "HTTPException", "detail": "Init image not found"}, "malformed", "malformed", "Init image"),
        (500, {"error": "NansException", "errors": "A tensor with all NaNs"}, "transient", "transient", "NaNs"),
        (502, "<html>Bad Gateway</html>", "transient", "transient", "Bad Gateway"),
    ],
)
def test_classify_error(status: int, body: object, default: str, expected: str, needle: str) -> None:
    error = classify_error("txt2img", status, body, default)
    assert error.failure_class == expected
    assert f"A1111 txt2img answered {status}" in str(error) and needle in str(error)


def test_error_message_of_an_empty_body() -> None:
    assert error_message("") == "(empty body)"
    assert error_message({"detail": []}) == "validation error"


def test_parse_info_parses_the_json_string_a_second_time() -> None:
    assert parse_info(json.dumps({"seed": 5, "all_seeds": [5]})) == {"seed": 5, "all_seeds": [5]}
    assert parse_info({"seed": 1}) == {"seed": 1}
    assert parse_info("not json") == {"raw": "not json"}
    assert parse_info(None) == {}


def test_decode_images_names_by_format() -> None:
    jpeg = b"\xff\xd8\xff\xe0jpeg"
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 "
    encoded = [base64.b64encode(x).decode() for x in (PNG, jpeg, webp)]
    encoded[0] = "data:image/png;base64," + encoded[0]
    assert decode_images(encoded) == [
        ("image-0.png", PNG, "image/png"),
        ("image-1.jpg", jpeg, "image/jpeg"),
        ("image-2.webp", webp, "image/webp"),
    ]
    assert decode_images(None) == [] and image_kind(b"??") == ("png", "image/png")


@pytest.mark.parametrize("images", ["abc", [1], ["not base64!"]])
def test_decode_images_refuses_what_a1111_never_sends(images: object) -> None:
    with pytest.raises(ConnectorError) as info:
        decode_images(images)
    assert info.value.failure_class == "transient"


def test_result_lifts_the_seeds() -> None:
    info = {"seed": 3, "all_seeds": [3, 4], "sd_model_name": "m", "steps": 2}
    assert result_of("txt2img", info, 2) == {
        "mode": "txt2img",
        "images": 2,
        "seed": 3,
        "all_seeds": [3, 4],
        "sd_model_name": "m",
        "info": info,
    }
