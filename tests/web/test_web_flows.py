"""The web monitor shows flows: a flow of 3 steps run by a real worker appears in the Flows section,
its steps advance, a step opens its job's detail with its flow, parents and children, and it ends."""

from __future__ import annotations

from typing import Any

import pytest

from tests.coordinator.conftest import TOKEN, Api, ApiFactory
from tests.integration.helpers import WorkerProcs, wait_for
from tests.web.test_web_monitor import Watch, _contains, _present, _text

pytestmark = pytest.mark.anyio


def _step(name: str, *after: str) -> dict[str, Any]:
    return {"name": name, "service": "simulation", "depends_on": list(after), "payload": {"steps": 20, "step_ms": 100}}


async def _step_status(page: Any, step: str) -> str:
    return await page.get_attribute(f'#flows [data-flow="chain"] tr[data-step="{step}"]', "data-status") or ""


@pytest.mark.timeout(120)
async def test_a_flow_of_three_appears_advances_and_ends(
    start_api: ApiFactory, workers: WorkerProcs, browser: Any
) -> None:
    api: Api = await start_api()
    page = await browser.new_page()
    watch = Watch(page)
    await page.goto(api.url + "/")
    await page.fill("#token", TOKEN)
    await page.click("#login-submit")
    await wait_for(lambda: _contains(page, "#conn", "live"), what="the page to say it is live")

    doc = {"id": "chain", "steps": [_step("gen"), _step("up", "gen"), _step("note", "up")]}
    resp = await api.http.post("/api/flows", json=doc)
    assert resp.status_code == 201, resp.text
    workers.start("--id", "flow-worker")

    # It appears with its steps, the first running while the others wait.
    await wait_for(lambda: _present(page, '#flows [data-flow="chain"][data-state="running"]'), what="the flow")
    await wait_for(lambda: _is_status(page, "gen", "in_progress"), timeout=30, what="gen running")
    assert await _step_status(page, "note") == "waiting"

    # Steps advance: gen completes, up runs.
    await wait_for(lambda: _is_status(page, "up", "in_progress"), timeout=30, what="up running after gen")
    assert await _step_status(page, "gen") == "completed"

    # A step opens its job's detail, which names its flow, its parent and its child.
    await page.click('#flows button[data-open="chain.up"]')
    await wait_for(lambda: _present(page, '#detail-flow [data-flow="chain"]'), what="the detail's flow part")
    parents, children = await _text(page, "#detail-flow .parents"), await _text(page, "#detail-flow .children")
    assert "chain.gen" in parents and "chain.note" not in parents, parents
    assert "chain.note" in children and "chain.gen" not in children, children

    # It ends: every step completed, the flow marked completed.
    await wait_for(
        lambda: _present(page, '#flows [data-flow="chain"][data-state="completed"]'), timeout=30, what="the flow to end"
    )
    for step in ("gen", "up", "note"):
        assert await _step_status(page, step) == "completed"
    assert "0 running" in await _text(page, "#flows-count")
    assert watch.errors == [], watch.errors
    await page.close()


async def _is_status(page: Any, step: str, status: str) -> bool:
    return await _step_status(page, step) == status


async def test_a_quiet_flow_submitted_before_the_page_opened_is_listed(start_api: ApiFactory, browser: Any) -> None:
    """No worker runs, so the feed never names the flow: the page finds it through GET /api/flows."""
    api: Api = await start_api()
    resp = await api.http.post("/api/flows", json={"id": "early", "steps": [_step("a"), _step("b", "a")]})
    assert resp.status_code == 201, resp.text
    page = await browser.new_page()
    watch = Watch(page)
    await page.goto(api.url + "/")
    await page.fill("#token", TOKEN)
    await page.click("#login-submit")
    await wait_for(lambda: _present(page, '#flows [data-flow="early"][data-state="running"]'), what="the flow")
    steps = await page.eval_on_selector_all(
        '#flows [data-flow="early"] tr[data-step]', "rows => rows.map(r => [r.dataset.step, r.dataset.status])"
    )
    assert steps == [["a", "pending"], ["b", "waiting"]], steps
    assert watch.errors == [], watch.errors
    await page.close()
