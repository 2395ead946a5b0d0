"""emp.model.matching: the shared case table, the single-key rules, per-job rules and explain()."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emp.model.matching import JobView, can_run, explain, job_rules_match, requirements_match, value_matches, walk
from emp.model.requirements import canonicalize

CASES_PATH = Path(__file__).resolve().parents[1] / "cases" / "matching_cases.json"
CASES: list[dict[str, Any]] = json.loads(CASES_PATH.read_text(encoding="utf-8"))
NOW = 1_760_000_000_000

CAPS: dict[str, Any] = {
    "services": ["comfyui", "a1111"],
    "hardware": {"gpu_model": "NVIDIA GeForce RTX 4090", "gpu_memory_gb": 24, "ram_gb": 64, "cpu_cores": 16},
    "models": {"comfyui": ["sdxl", "sd15"], "a1111": ["sd15"]},
    "customer_access": {"isolation": "loose", "allowed_customers": [], "denied_customers": []},
    "workflow_id": None,
    "pool": "standard",
}


def view_of(case: dict[str, Any]) -> JobView:
    return JobView(
        service=case["service"],
        requirements=canonicalize(case["requirements"]),
        customer_id=case["job"].get("customer_id"),
        workflow_id=case["job"].get("workflow_id"),
    )


# -- the shared table ---------------------------------------------------------------------------


def test_table_shape() -> None:
    assert len(CASES) >= 48
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    for c in CASES:
        assert set(c) == {"name", "service", "requirements", "job", "worker", "expect"}, c["name"]
        assert set(c["job"]) <= {"customer_id", "workflow_id"}, c["name"]
        assert set(c["worker"]) == {"id", "caps"}, c["name"]
        assert isinstance(c["expect"], bool), c["name"]
    # both outcomes are well represented
    assert sum(c["expect"] for c in CASES) >= 20
    assert sum(not c["expect"] for c in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_table(case: dict[str, Any]) -> None:
    job = view_of(case)
    worker = case["worker"]
    assert can_run(job, worker["caps"], worker["id"], NOW) is case["expect"]
    reason = explain(job, worker["caps"], worker["id"], NOW)
    if case["expect"]:
        assert reason is None
    else:
        assert isinstance(reason, str) and reason


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case_table_after_text_round_trip(case: dict[str, Any]) -> None:
    """The claim Function sees the canonical text, not the raw object: same answer from it."""
    from emp.model.requirements import canonical_from_text

    job = view_of(case)
    again = JobView(job.service, canonical_from_text(job.requirements.text), job.customer_id, job.workflow_id)
    assert can_run(again, case["worker"]["caps"], case["worker"]["id"], NOW) is case["expect"]


# -- walk and value_matches -----------------------------------------------------------------------


def test_walk() -> None:
    caps = {"a": {"b": {"c": 1}}, "l": [{"x": 1}], "n": None}
    assert walk(caps, "a.b.c") == 1
    assert walk(caps, "a.b") == {"c": 1}
    assert walk(caps, "a.x") is None
    assert walk(caps, "a.b.c.d") is None
    assert walk(caps, "l.0") is None
    assert walk(caps, "l") == [{"x": 1}]
    assert walk(caps, "n") is None
    assert walk([], "a") is None


@pytest.mark.parametrize(
    ("required", "worker", "expected"),
    [
        ("all", None, True),  # rule 1
        ("all", "x", True),
        ("x", None, False),  # rule 2
        (1, None, False),
        (["a", "b"], ["b", "a", "c"], True),  # rule 3
        (["a", "d"], ["a", "b"], False),
        (["a"], "a", False),
        ([], [], True),
        ([1], [1.0], True),
        ([True], [1], False),
        ("a", ["a", "b"], True),  # rule 4
        ("z", ["a", "b"], False),
        (2, [1, 2], True),
        (2, [3], False),  # membership, not a minimum
        ("x", [], False),
        (16, 24, True),  # rule 5
        (24, 24, True),
        (24, 16, False),
        (23.5, 24, True),
        (16, "24", False),
        (1, True, False),  # booleans are not numbers
        (0, False, False),
        ("standard", "standard", True),  # rule 6
        ("standard", "premium", False),
        ("3", 3, False),
        (True, True, True),
        (False, False, True),
        (True, False, False),
        (True, 1, False),
        ("x", {"x": 1}, False),
        (1, {"a": 1}, False),
    ],
)
def test_value_matches(required: Any, worker: Any, expected: bool) -> None:
    assert value_matches(required, worker) is expected


def test_requirements_match_special_keys() -> None:
    c = canonicalize({"models": ["sdxl", "sd15"]})
    assert requirements_match(c, CAPS, "comfyui")
    assert not requirements_match(c, CAPS, "a1111")  # only sd15 there
    assert requirements_match(canonicalize({"models": "sd15"}), CAPS, "a1111")
    assert not requirements_match(c, {**CAPS, "models": "sdxl"}, "comfyui")  # not a list: no models
    strict = canonicalize({"customer_isolation": "strict"})
    assert not requirements_match(strict, CAPS, "comfyui")
    assert requirements_match(strict, {**CAPS, "customer_access": {"isolation": "strict"}}, "comfyui")
    assert requirements_match(canonicalize({"customer_isolation": "none"}), {}, "comfyui")


def test_requirements_match_tolerates_odd_caps() -> None:
    c = canonicalize({"hardware.gpu_memory_gb": 16})
    for caps in (None, [], "x", {"hardware": None}, {"hardware": [24]}, {"hardware": {"gpu_memory_gb": "24"}}):
        assert requirements_match(c, caps, "comfyui") is False
    assert requirements_match(canonicalize({"negative_requirements": {"pool": "spot"}}), None, "comfyui") is True


# -- per-job rules ---------------------------------------------------------------------------------


def test_a_job_that_ran_out_of_memory_avoids_those_workers_for_good() -> None:
    job = JobView("comfyui", avoid_workers=("w1", "w3"))
    for later in (NOW, NOW + 10**9):
        assert not can_run(job, CAPS, "w1", later), "no deadline: the avoid lasts as long as the job"
        assert not can_run(job, CAPS, "w3", later)
    assert can_run(job, CAPS, "w2", NOW)
    assert job_rules_match(job, CAPS, "w2", NOW)
    assert job_rules_match(job, CAPS)  # no worker id: nothing to avoid
    reason = explain(job, CAPS, "w1", NOW)
    assert reason is not None and "ran out of memory on worker 'w1'" in reason


def test_a_job_that_ran_out_of_memory_needs_more_gpu_memory() -> None:
    job = JobView("comfyui", avoid_workers=("w0",), gpu_gb_over=24)
    assert not can_run(job, CAPS, "w1", NOW), "24 GB is not more than 24 GB"
    bigger = {**CAPS, "hardware": {**CAPS["hardware"], "gpu_memory_gb": 48}}
    assert can_run(job, bigger, "w1", NOW)
    for hw in ({}, {"gpu_memory_gb": "48"}, {"gpu_memory_gb": True}):
        assert not can_run(job, {**CAPS, "hardware": hw}, "w1", NOW), hw
    reason = explain(job, CAPS, "w1", NOW)
    assert reason == "job needs more than 24 GB of GPU memory (it ran out of memory with that much), worker has 24"
    # The floor comes only with an out-of-memory history (the fail Function writes both).
    assert can_run(JobView("comfyui", gpu_gb_over=24), CAPS, "w1", NOW)


def test_customer_rules_ignore_non_list_values() -> None:
    caps = {**CAPS, "customer_access": {"isolation": "loose", "allowed_customers": "acme", "denied_customers": None}}
    assert job_rules_match(JobView("comfyui", customer_id="globex"), caps)
    assert job_rules_match(JobView("comfyui", customer_id=""), {**CAPS, "customer_access": {"denied_customers": [""]}})


def test_workflow_restriction_needs_string() -> None:
    assert job_rules_match(JobView("comfyui"), {**CAPS, "workflow_id": 42})


# -- explain -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job", "caps", "expected"),
    [
        (JobView("ollama"), CAPS, "service 'ollama' not in worker services ['comfyui', 'a1111']"),
        (
            JobView("comfyui", canonicalize({"hardware": {"gpu_memory_gb": 48}})),
            CAPS,
            "requires hardware.gpu_memory_gb >= 48, worker has 24",
        ),
        (
            JobView("comfyui", canonicalize({"hardware.cpu_cores": 8})),
            {**CAPS, "hardware": {"gpu_memory_gb": 24}},
            "requires hardware.cpu_cores >= 8, worker has none",
        ),
        (JobView("comfyui", canonicalize({"pool": "gold"})), CAPS, "requires pool = 'gold', worker has 'standard'"),
        (
            JobView("comfyui", canonicalize({"tags": ["a", "b"]})),
            {**CAPS, "tags": ["a"]},
            "requires tags to contain all of ['a', 'b'], worker has ['a']",
        ),
        (
            JobView("comfyui", canonicalize({"models": ["flux"]})),
            CAPS,
            "requires models ['flux'] for service 'comfyui', worker has ['sdxl', 'sd15']",
        ),
        (
            JobView("comfyui", canonicalize({"customer_isolation": "strict"})),
            CAPS,
            "requires a worker with strict customer isolation, worker has isolation 'loose'",
        ),
        (
            JobView("comfyui", canonicalize({"negative_requirements": {"pool": "standard"}})),
            CAPS,
            "excluded by negative requirement pool = 'standard'; worker has 'standard'",
        ),
        (
            JobView("comfyui", customer_id="acme"),
            {**CAPS, "customer_access": {"denied_customers": ["acme"]}},
            "customer 'acme' is denied",
        ),
        (
            JobView("comfyui", customer_id="initech"),
            {**CAPS, "customer_access": {"allowed_customers": ["acme"]}},
            "customer 'initech' is not in the worker's allowed customers ['acme']",
        ),
        (
            JobView("comfyui"),
            {**CAPS, "customer_access": {"allowed_customers": ["acme"]}},
            "job has no customer, worker takes only customers ['acme']",
        ),
        (
            JobView("comfyui", customer_id="acme"),
            {**CAPS, "customer_access": {"isolation": "strict"}},
            "worker has strict customer isolation and no allowed customers",
        ),
        (
            JobView("comfyui", workflow_id="wf-2"),
            {**CAPS, "workflow_id": "wf-1"},
            "worker is restricted to workflow 'wf-1', job has workflow 'wf-2'",
        ),
        (
            JobView("comfyui"),
            {**CAPS, "workflow_id": "wf-1"},
            "worker is restricted to workflow 'wf-1', job has no workflow",
        ),
    ],
)
def test_explain_messages(job: JobView, caps: dict[str, Any], expected: str) -> None:
    assert explain(job, caps, "w1", NOW) == expected
    assert not can_run(job, caps, "w1", NOW)


def test_explain_names_first_failing_requirement() -> None:
    job = JobView("comfyui", canonicalize({"hardware": {"gpu_memory_gb": 48, "ram_gb": 512}}))
    assert explain(job, CAPS, "w1", NOW) == "requires hardware.gpu_memory_gb >= 48, worker has 24"


def test_explain_none_when_runnable() -> None:
    job = JobView("comfyui", canonicalize({"hardware.gpu_memory_gb": 16, "models": "sdxl"}), customer_id="acme")
    assert explain(job, CAPS, "w1", NOW) is None
    assert can_run(job, CAPS, "w1", NOW)
