"""ComfyUI errors → failure classes and messages; payload validation; history, queue and outputs.

Bodies are the ones a real ComfyUI v0.8.0 sent (reference/comfyui-samples/transcripts), trimmed.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from emp.worker.connectors.base import ConnectorError
from emp.worker.connectors.comfyui_errors import (
    dropped_outputs,
    error_class,
    execution_error,
    interrupted_error,
    is_blocked_notice,
    partial_error,
    validation_error,
)
from emp.worker.connectors.comfyui_payload import (
    FileRef,
    execution_time_s,
    file_refs,
    history_entry,
    history_outcome,
    parse_payload,
    queue_state,
    wanted,
)

INVALID_INPUTS = {
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "Required input is missing: images",
        "extra_info": {},
    },
    "node_errors": {
        "1": {
            "errors": [
                {
                    "type": "value_smaller_than_min",
                    "message": "Value 0 smaller than min of 1",
                    "details": "width",
                    "extra_info": {"input_name": "width", "received_value": 0},
                }
            ],
            "dependent_outputs": ["3", "4"],
            "class_type": "EmptyImage",
        },
        "2": {
            "errors": [
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": "upscale_method: 'no-such-method' not in ['nearest-exact', 'bilinear']",
                    "extra_info": {},
                },
                {
                    "type": "invalid_input_type",
                    "message": "Failed to convert an input value to a INT value",
                    "details": "height, abc, invalid literal for int() with base 10: 'abc'",
                    "extra_info": {},
                },
            ],
            "dependent_outputs": ["3", "4"],
            "class_type": "ImageScale",
        },
        "4": {
            "errors": [
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": "images",
                    "extra_info": {"input_name": "images"},
                }
            ],
            "dependent_outputs": ["4"],
            "class_type": "SaveImage",
        },
    },
}
BAD_CLASS = {
    "error": {
        "type": "invalid_prompt",
        "message": "Cannot execute because node NoSuchNodeClass does not exist.",
        "details": "Node ID '#2'",
        "extra_info": {},
    },
    "node_errors": {},
}
PARTIAL_NODE_ERRORS = {
    "3": {
        "errors": [
            {
                "type": "value_not_in_list",
                "message": "Value not in list",
                "details": "upscale_method: 'bogus' not in ['nearest-exact', 'bilinear', 'area', 'bicubic', 'lanczos']",
                "extra_info": {"input_name": "upscale_method", "received_value": "bogus"},
            }
        ],
        "dependent_outputs": ["4"],
        "class_type": "ImageScale",
    }
}
OOM = {
    "prompt_id": "f8f3",
    "node_id": "2",
    "node_type": "BrokerTestRaise",
    "executed": [],
    "exception_message": "CUDA out of memory. Tried to allocate 20.00 GiB (simulated)\nThis error means you ran out "
    "of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size "
    "to a large number.",
    "exception_type": "torch.OutOfMemoryError",
    "traceback": ['File "<ComfyUI>/execution.py", line 518, in execute'],
    "current_inputs": {},
    "current_outputs": [],
}
RAISE_VALUE = {
    "prompt_id": "9c21",
    "node_id": "2",
    "node_type": "BrokerTestRaise",
    "executed": ["1"],
    "exception_message": "deliberate failure from BrokerTestRaise\n",
    "exception_type": "ValueError",
}
CPU_ALLOC = {
    "node_id": "1",
    "node_type": "EmptyImage",
    "exception_type": "RuntimeError",
    "exception_message": "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
    "you tried to allocate 4398046511104 bytes. Error code 12 (Cannot allocate memory)\n",
}


# -- validation -----------------------------------------------------------------------------


def test_a_400_lists_every_node_error_readably() -> None:
    err = validation_error(INVALID_INPUTS, 400)
    assert err.failure_class == "malformed"
    text = str(err)
    assert "prompt_outputs_failed_validation" in text
    assert "node 1 (EmptyImage): Value 0 smaller than min of 1: width" in text
    assert "node 2 (ImageScale): Value not in list: upscale_method: 'no-such-method'" in text
    assert "invalid literal for int()" in text
    assert "node 4 (SaveImage): Required input is missing: images" in text


def test_an_unknown_class_names_the_class_and_node() -> None:
    err = validation_error(BAD_CLASS, 400)
    assert err.failure_class == "malformed"
    assert "Cannot execute because node NoSuchNodeClass does not exist. (Node ID '#2')" in str(err)


def test_a_400_body_of_unexpected_shape_still_gives_a_malformed_error() -> None:
    err = validation_error("500 Internal Server Error", 400)
    assert err.failure_class == "malformed" and "HTTP 400" in str(err)


def test_partial_acceptance_names_the_dropped_outputs() -> None:
    assert dropped_outputs(PARTIAL_NODE_ERRORS) == {"4"}
    assert dropped_outputs(INVALID_INPUTS["node_errors"]) == {"3", "4"}
    err = partial_error(PARTIAL_NODE_ERRORS)
    assert err.failure_class == "malformed"
    assert "output node(s) 4" in str(err) and "node 3 (ImageScale)" in str(err)


# -- execution errors -------------------------------------------------------------------------


def test_oom_is_resource_exhausted_and_the_tips_are_cut() -> None:
    err = execution_error(OOM)
    assert err.failure_class == "resource_exhausted"
    assert "node 2 (BrokerTestRaise)" in str(err) and "torch.OutOfMemoryError" in str(err)
    assert "CUDA out of memory. Tried to allocate 20.00 GiB" in str(err)
    assert "TIPS" not in str(err)


@pytest.mark.parametrize(
    ("exception_type", "message", "expected"),
    [
        ("torch.OutOfMemoryError", "Allocation on device ", "resource_exhausted"),  # cudaMallocAsync
        ("torch.cuda.OutOfMemoryError", "CUDA out of memory.", "resource_exhausted"),  # older torch
        ("RuntimeError", "CUDA out of memory. Tried to allocate 2 GiB", "resource_exhausted"),
        ("RuntimeError", CPU_ALLOC["exception_message"], "resource_exhausted"),
        ("RuntimeError", "CUDA error: device-side assert triggered", "transient"),
        ("RuntimeError", "CUDA error: an illegal memory access was encountered", "transient"),
        ("FileNotFoundError", "[Errno 2] No such file or directory: 'models/x.safetensors'", "transient"),
        ("ModuleNotFoundError", "No module named 'onnxruntime'", "transient"),
        ("requests.exceptions.ConnectionError", "Max retries exceeded", "transient"),
        ("ValueError", "deliberate failure", "malformed"),
        ("TypeError", "unsupported operand", "malformed"),
        ("KeyError", "'model'", "malformed"),
        ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (77x768 and 1024x320)", "unknown"),
        ("AttributeError", "'NoneType' object has no attribute 'shape'", "unknown"),
        ("custom_nodes.foo.SomeError", "whatever", "unknown"),
    ],
)
def test_error_class(exception_type: str, message: str, expected: str) -> None:
    assert error_class(exception_type, message) == expected


def test_a_node_value_error_is_malformed_with_the_nodes_message() -> None:
    err = execution_error(RAISE_VALUE)
    assert err.failure_class == "malformed"
    assert str(err) == "ComfyUI node 2 (BrokerTestRaise) failed: ValueError: deliberate failure from BrokerTestRaise"


def test_a_huge_exception_message_is_clipped() -> None:
    err = execution_error({**RAISE_VALUE, "exception_message": "x" * 100_000})
    assert len(str(err)) <= 2000


def test_execution_blocked_is_not_a_failure() -> None:
    assert is_blocked_notice({"exception_type": "ExecutionBlocked", "exception_message": "blocked"})
    assert not is_blocked_notice(RAISE_VALUE)


def test_an_interrupt_we_did_not_ask_for_is_transient() -> None:
    err = interrupted_error({"node_id": "2", "node_type": "BrokerTestSlowProgress", "executed": ["1"]})
    assert err.failure_class == "transient" and "node 2 (BrokerTestSlowProgress)" in str(err)


# -- payload ------------------------------------------------------------------------------------

WORKFLOW = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def malformed(payload: Any) -> str:
    with pytest.raises(ConnectorError) as info:
        parse_payload(payload)
    assert info.value.failure_class == "malformed"
    return str(info.value)


def test_a_valid_payload() -> None:
    job = parse_payload(
        {
            "workflow": WORKFLOW,
            "images": [
                {"name": "in.png", "data": "data:image/png;base64," + PNG},
                {"name": "b.png", "url": "https://example.com/b.png", "subfolder": "emp/x"},
            ],
            "output_nodes": ["2"],
            "something_else": 1,
        }
    )
    assert job.workflow is WORKFLOW
    assert job.images[0].data == b"\x89PNG\r\n\x1a\nfake"
    assert job.images[1].url == "https://example.com/b.png" and job.images[1].reference == "emp/x/b.png"
    assert job.output_nodes == ("2",)


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ([1, 2], "must be an object"),
        ({"prompt": WORKFLOW}, "payload.workflow is required"),
        ({"workflow": "graph"}, "API format"),
        ({"workflow": {}}, "no nodes"),
        ({"workflow": {"nodes": [], "links": []}}, "UI format"),
        ({"workflow": {"1": {"inputs": {}}}}, "node '1' has no class_type"),
        ({"workflow": {"1": {"class_type": "X", "inputs": []}}}, "needs an 'inputs' object"),
        ({"workflow": {"1": "EmptyImage"}}, "node '1' must be an object"),
        ({"workflow": WORKFLOW, "images": {}}, "payload.images must be a list"),
        ({"workflow": WORKFLOW, "images": [{"name": "../x.png", "data": PNG}]}, "plain file name"),
        ({"workflow": WORKFLOW, "images": [{"name": "a.png", "data": "%%%"}]}, "not valid base64"),
        ({"workflow": WORKFLOW, "images": [{"name": "a.png"}]}, "exactly one of data"),
        ({"workflow": WORKFLOW, "images": [{"name": "a.png", "data": PNG, "url": "http://x"}]}, "exactly one"),
        ({"workflow": WORKFLOW, "images": [{"name": "a.png", "url": "file:///etc/passwd"}]}, "http(s) URL"),
        ({"workflow": WORKFLOW, "images": [{"name": "a.png", "data": PNG, "subfolder": "../up"}]}, "relative folder"),
        ({"workflow": WORKFLOW, "images": [{"name": "a.png", "data": PNG}] * 2}, "twice"),
        ({"workflow": WORKFLOW, "output_nodes": ["9"]}, "not in the workflow: 9"),
        ({"workflow": WORKFLOW, "output_nodes": "2"}, "list of node ids"),
    ],
)
def test_bad_payloads_are_malformed_with_a_clear_message(payload: Any, says: str) -> None:
    assert says in malformed(payload)


def test_several_problems_are_listed_together() -> None:
    text = malformed({"workflow": {"1": {}, "2": {"class_type": "X"}}, "images": [{"name": "a"}]})
    assert "node '1' has no class_type" in text and "node '2' needs an 'inputs' object" in text
    assert "exactly one of data" in text


# -- history, queue, outputs --------------------------------------------------------------------

PID = "fff3dcaf-326c-4fb2-a7d4-596d4c683c7e"
HISTORY_OK = {
    PID: {
        "prompt": [11, PID, WORKFLOW, {"client_id": "68d2"}, ["2"]],
        "outputs": {"2": {"images": [{"filename": "partial_00002_.png", "subfolder": "broker", "type": "output"}]}},
        "status": {
            "status_str": "success",
            "completed": True,
            "messages": [
                ["execution_start", {"prompt_id": PID, "timestamp": 1795326559679}],
                ["execution_cached", {"nodes": [], "prompt_id": PID, "timestamp": 1795326559680}],
                ["execution_success", {"prompt_id": PID, "timestamp": 1795326559681}],
            ],
        },
        "meta": {},
    }
}


def test_history_success_and_execution_time() -> None:
    entry = history_entry(HISTORY_OK, PID)
    assert entry is not None
    outcome = history_outcome(entry)
    assert outcome.kind == "success"
    assert execution_time_s(entry) == pytest.approx(0.002)
    assert history_entry({}, PID) is None  # unknown or unfinished


def test_history_error_and_interrupt_carry_the_event_payload() -> None:
    error_entry = {
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [["execution_start", {"timestamp": 1}], ["execution_error", RAISE_VALUE]],
        },
    }
    outcome = history_outcome(error_entry)
    assert outcome.kind == "error" and outcome.data["exception_type"] == "ValueError"
    interrupted = {
        "outputs": {},
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [["execution_interrupted", {"node_id": "2", "node_type": "X", "timestamp": 5}]],
        },
    }
    assert history_outcome(interrupted).kind == "interrupted"
    bare_error = {"outputs": {}, "status": {"status_str": "error", "completed": False, "messages": []}}
    assert history_outcome(bare_error).kind == "error"


def test_queue_state_finds_running_and_pending_prompts() -> None:
    body = {
        "queue_running": [[30, "A", {}, {}, ["3"]]],
        "queue_pending": [[-35, "D", {}, {}, ["3"]], [34, "C", {}, {}, ["3"]]],
    }
    assert queue_state(body, "A") == "running"
    assert queue_state(body, "C") == "pending"
    assert queue_state(body, "Z") is None
    assert queue_state({"queue_running": [], "queue_pending": []}, "A") is None


def test_file_refs_cover_every_ui_list_with_filenames_once() -> None:
    outputs = {
        "5": {
            "images": [
                {"filename": "ComfyUI_temp_jgszp_00001_.png", "subfolder": "", "type": "temp"},
                {"filename": "ComfyUI_temp_jgszp_00002_.png", "subfolder": "", "type": "temp"},
            ]
        },
        "6": {
            "images": [{"filename": "size_00003_.png", "subfolder": "broker", "type": "output"}],
            "animated": [False],
        },
        "7": {"gifs": [{"filename": "clip.mp4", "subfolder": "", "type": "output", "format": "video/h264-mp4"}]},
        "8": {"text": ["hello"]},
        "9": {"images": [{"filename": "size_00003_.png", "subfolder": "broker", "type": "output"}]},  # cached again
    }
    refs = file_refs(outputs)
    assert [(r.node_id, r.filename, r.type) for r in refs] == [
        ("5", "ComfyUI_temp_jgszp_00001_.png", "temp"),
        ("5", "ComfyUI_temp_jgszp_00002_.png", "temp"),
        ("6", "size_00003_.png", "output"),
        ("7", "clip.mp4", "output"),
    ]
    assert [r.filename for r in refs if wanted(r, include_temp=False)] == ["size_00003_.png", "clip.mp4"]
    assert len([r for r in refs if wanted(r, include_temp=True)]) == 4
    assert not wanted(FileRef("1", "in.png", "", "input"), include_temp=True)
