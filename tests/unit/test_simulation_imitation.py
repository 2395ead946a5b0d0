"""The simulation connector imitating a service (`<service>-sim`): its payloads, its result shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emp.storage import FileStorage, OutputSink
from emp.worker.connectors.base import ConnectorError, JobContext
from emp.worker.connectors.simulation import SimulationConnector, SimulationSettings

pytestmark = pytest.mark.anyio


async def run(imitate: str, payload: dict[str, Any], tmp_path: Path) -> tuple[Any, OutputSink, list[float]]:
    seen: list[float] = []

    async def progress(pct: float, msg: str) -> None:
        seen.append(pct)

    sink = OutputSink(FileStorage(tmp_path), "j1", 1)
    conn = SimulationConnector(SimulationSettings(imitate=imitate))
    result = await conn.run(JobContext("j1", 1, {"step_ms": 0, **payload}, progress, sink, f"{imitate}-sim"))
    return result, sink, seen


async def test_comfyui_imitation_answers_like_the_comfyui_connector(tmp_path: Path) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "emp/out"}},
        "12": {"class_type": "SaveImage", "inputs": {}},
    }
    result, sink, seen = await run("comfyui", {"workflow": workflow}, tmp_path)
    assert seen == sorted(seen) and seen[-1] == 100.0 and len(seen) == 3, "one step per node"
    assert [o.name for o in sink.stored] == ["out_00001_.png", "ComfyUI_00002_.png"]
    assert result["outputs_by_node"] == {
        "9": [{"filename": "out_00001_.png", "subfolder": "", "type": "output", "stored_as": "out_00001_.png"}],
        "12": [
            {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output", "stored_as": "ComfyUI_00002_.png"}
        ],
    }
    assert result["simulated"] is True and result["prompt_id"] == "sim-j1-1"
    assert sink.stored[0].content_type == "image/png" and sink.stored[0].size > 50


async def test_a1111_and_ollama_imitations(tmp_path: Path) -> None:
    a1111, sink, _ = await run("a1111", {"prompt": "a cat", "steps": 3, "batch_size": 2, "seed": 7}, tmp_path)
    assert (a1111["mode"], a1111["images"], a1111["seed"], a1111["all_seeds"]) == ("txt2img", 2, 7, [7, 8])
    assert [o.name for o in sink.stored] == ["image-0.png", "image-1.png"]
    chat, _, _ = await run("ollama", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, tmp_path)
    assert chat["message"]["role"] == "assistant" and chat["message"]["content"] and "response" not in chat
    gen, _, _ = await run("ollama", {"model": "m", "prompt": "hi"}, tmp_path)
    assert gen["response"] and gen["done_reason"] == "stop"


@pytest.mark.parametrize(
    ("imitate", "payload", "message"),
    [
        ("comfyui", {}, "payload.workflow"),
        ("comfyui", {"workflow": []}, "payload.workflow"),
        ("a1111", {"steps": 2}, "payload.prompt"),
        ("ollama", {"prompt": "hi"}, "model"),
    ],
)
async def test_payloads_the_service_would_refuse_are_malformed(
    imitate: str, payload: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConnectorError, match=message) as err:
        await run(imitate, payload, tmp_path)
    assert err.value.failure_class == "malformed"
