"""The web monitor in a real headless Chromium: it loads, asks for the token, shows a job's progress
moving, opens the job's detail, and reflects a cancel; no console error, no request off this host."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.coordinator.conftest import TOKEN, Api, ApiFactory
from tests.integration.helpers import WorkerProcs, wait_for

pytestmark = pytest.mark.anyio

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
HOSTILE = '<img src="/x-injected" onerror="document.title=\'pwned\'"><script>document.title="pwned"</script>'
"""Payload text that would load an image and run script if the page ever parsed data as markup."""


class Watch:
    """What the page does: console errors, uncaught exceptions, every URL it requests."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", lambda req: self.urls.append(req.url))

    def off_host(self) -> list[str]:
        return [u for u in self.urls if urlsplit(u).hostname not in LOOPBACK]


async def _text(page: Any, selector: str) -> str:
    el = await page.query_selector(selector)
    return (await el.text_content() or "") if el is not None else ""


@pytest.mark.timeout(120)
async def test_the_page_shows_progress_moving_and_reflects_a_cancel(
    start_api: ApiFactory, workers: WorkerProcs, browser: Any
) -> None:
    api: Api = await start_api()
    page = await browser.new_page()
    watch = Watch(page)
    resp = await page.goto(api.url + "/")
    assert resp is not None and resp.status == 200
    assert "default-src 'none'" in (resp.headers.get("content-security-policy") or "")

    # The token is asked for once: the form, then the live feed.
    assert await page.is_visible("#login") and not await page.is_visible("#main")
    await page.fill("#token", TOKEN)
    await page.click("#login-submit")
    await wait_for(lambda: _is(page, "#conn", "live"), what="the page to say it is live")
    assert await page.evaluate("sessionStorage.getItem('emp.token')") == TOKEN

    workers.start("--id", "web-worker")
    body = {"id": "web-job", "service": "simulation", "payload": {"steps": 60, "step_ms": 150, "note": HOSTILE}}
    submitted = await api.http.post("/api/jobs", json=body)
    assert submitted.status_code == 201, submitted.text

    # Its progress bar moves: two different values seen, read from the page itself.
    bar = '#active tr[data-job="web-job"] progress'
    seen: set[float] = set()

    async def moved() -> bool:
        value = await page.get_attribute(bar, "value") if await page.query_selector(bar) else None
        if value is not None and 0 < float(value) < 100:
            seen.add(float(value))
        return len(seen) >= 2

    await wait_for(moved, timeout=30, what="the job's progress bar to move")
    # The worker's card shows it busy with the job.
    assert "web-job" in await _text(page, '[data-worker="web-worker"]')

    # The detail: payload (as text, never markup), attempts, events; then cancel.
    await page.click('#active button[data-open="web-job"]')
    await wait_for(lambda: _is(page, "#detail-status", "in_progress"), what="the detail to show the job running")
    await wait_for(lambda: _contains(page, "#detail-body", "job_started"), what="the detail's events")
    detail = await _text(page, "#detail-body")
    assert json.dumps(HOSTILE)[1:-1] in detail and '"step_ms": 150' in detail
    assert await page.query_selector("#detail-body img, #detail-body script") is None
    assert await page.title() != "pwned"

    await page.click("#detail-cancel")
    await wait_for(lambda: _is(page, "#detail-status", "cancelled"), what="the detail to show the job cancelled")
    await wait_for(
        lambda: _present(page, '#recent tr[data-job="web-job"][data-status="cancelled"]'),
        what="the recent panel to list the job as cancelled",
    )
    assert "cancel sent (it was in_progress)" in await _text(page, "#detail-answer")
    assert await page.query_selector('#active tr[data-job="web-job"]') is None
    job = (await api.http.get("/api/jobs/web-job")).json()
    assert job["status"] == "cancelled"
    await wait_for(lambda: _chip(page, "cancelled", 1), what="the header to count one cancelled job")

    assert watch.errors == [], watch.errors
    assert watch.urls and watch.off_host() == [], watch.off_host()
    assert not any("/x-injected" in u for u in watch.urls)
    await page.close()


async def test_a_wrong_token_is_refused_and_the_form_asks_again(start_api: ApiFactory, browser: Any) -> None:
    api: Api = await start_api()
    page = await browser.new_page()
    await page.goto(api.url + "/")
    await page.fill("#token", "not-the-token")
    await page.click("#login-submit")
    await wait_for(lambda: _is(page, "#login-error", "the coordinator refused this token"), what="the refusal")
    assert await page.is_visible("#login") and not await page.is_visible("#main")
    assert await page.evaluate("sessionStorage.getItem('emp.token')") is None
    # A stored token the coordinator no longer accepts (rotated away) sends the page back to the form.
    await page.evaluate("sessionStorage.setItem('emp.token', 'rotated-away')")
    await page.reload()
    await wait_for(lambda: _is(page, "#login-error", "the coordinator refused this token"), what="the form again")
    await page.close()


GPU = {"index": 0, "name": "RTX 4090", "uuid": "GPU-1", "memory_total_mb": 24564, "memory_used_mb": 20480,
       "utilization_pct": 93, "temperature_c": 71, "power_w": None, "pci_bus_id": None, "fake": False}  # fmt: skip


async def test_an_open_coordinator_asks_for_no_token_and_shows_machines_queues_and_offline(
    start_api: ApiFactory, browser: Any
) -> None:
    api: Api = await start_api(tokens=[])
    await api.client.submit_wires([{"id": "queued", "service": "simulation", "payload": json.dumps({}),
                                    "requirements": "{}", "priority": 50, "max_attempts": 3}])  # fmt: skip
    for mid in ("box-a", "box-b"):
        record = {"status": "ready", "host": {"platform": "vast"}, "gpus": {"gpus": [GPU]},
                  "processes": [{"name": "comfyui-gpu0", "state": "RUNNING"}], "started_at": 1}  # fmt: skip
        await api.calls.machine_report(mid, 60_000, record)
    page = await browser.new_page()
    watch = Watch(page)
    await page.goto(api.url + "/")
    await wait_for(lambda: _is(page, "#conn", "live"), what="the page to connect without a token")
    assert not await page.is_visible("#login")
    await wait_for(lambda: _contains(page, '#queues tr[data-service="simulation"]', "1"), what="the queue")
    await wait_for(lambda: _chip(page, "pending", 1), what="one pending job in the header")
    # The header's figures from /api/stats, as emp watch shows them: the oldest wait and the sparklines.
    await wait_for(lambda: _contains(page, "#rate", "completed/min"), what="the header's per-minute figures")
    header = await _text(page, "#rate")
    assert "oldest pending -" not in header and "oldest pending" in header, header
    assert "completed/min ▁▁▁▁▁▁▁▁▁▁ 0" in header and "failed/min ▁▁▁▁▁▁▁▁▁▁ 0" in header, header
    card = await _text(page, '[data-machine="box-a"]')
    assert "RTX 4090" in card and "93%" in card and "20.0/24 GB" in card and "71°C" in card, card
    assert "comfyui-gpu0: RUNNING" in card and "vast" in card
    # A machine that shuts down stays on the page, greyed.
    await api.calls.machine_event("box-b", "machine_shutdown", {"reason": "spot instance reclaimed"}, 60_000)
    await wait_for(lambda: _present(page, '.card.offline[data-machine="box-b"]'), what="box-b greyed")
    assert "spot instance reclaimed" in await _text(page, '[data-machine="box-b"]')
    assert not await page.query_selector('.card.offline[data-machine="box-a"]')
    # A re-snapshot (asked for) keeps it, greyed: offline machines never vanish.
    assert await page.get_attribute("#conn", "data-snapshots") == "1"
    await page.click("#refresh")
    await wait_for(lambda: _present(page, '#conn[data-snapshots="2"]'), what="the second snapshot drawn")
    assert await page.query_selector('.card.offline[data-machine="box-b"]'), "box-b vanished after a re-snapshot"
    assert watch.errors == [], watch.errors
    await page.close()


async def _is(page: Any, selector: str, text: str) -> bool:
    return (await _text(page, selector)).strip() == text


async def _contains(page: Any, selector: str, text: str) -> bool:
    return text in await _text(page, selector)


async def _present(page: Any, selector: str) -> bool:
    return await page.query_selector(selector) is not None


async def _chip(page: Any, status: str, n: int) -> bool:
    return await page.get_attribute(f'.chip[data-status="{status}"]', "data-count") == str(n)
