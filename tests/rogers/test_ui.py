"""Rogers' live view in headless Chromium (Debian's ``chromium``, driven by Playwright):
the connection table shows grace and fiedler HEALTHY; grace killed with SIGKILL turns STALE
on the page without a reload; a fiedler_converse appears and reaches COMPLETED. Secrets in
payloads are hidden and payloads cut short. Screenshots go to test-output/ (kept by CI).
Real processes; heartbeats every second so STALE comes within seconds."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from mads.core.mcp_client import call_tool
from tests.support.group import ProcessGroup, process_group

OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
SMOKE = {"prompt": "System check, please respond with OK.", "requester_id": "ui-test"}
FAST = {"MAD_HEARTBEAT_S": "1"}
SECRET = "hunter2-do-not-show-0123456789"


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ProcessGroup]:
    with process_group(tmp_path) as group:
        for name in ("sequential_thinking", "grace", "rogers", "fiedler"):
            group.start(name, env={**FAST, "FIEDLER_DB_PATH": str(tmp_path / "f.db")})
        yield group


@pytest.fixture
def page() -> Iterator[Page]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed (Debian: apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def tool(url: str, name: str, arguments: dict[str, Any]) -> Any:
    """An MCP tool call from a thread of its own (Playwright's sync API holds this one's
    event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call_tool(f"{url}/mcp", name, arguments)).result(60)


def row(page: Page, key: str, value: str, status: str, timeout_s: float = 30) -> None:
    page.wait_for_selector(
        f'tr[data-{key}="{value}"][data-status="{status}"]', timeout=timeout_s * 1000
    )


def test_the_live_view(running: ProcessGroup, page: Page) -> None:
    rogers, fiedler = running.mads["rogers"], running.mads["fiedler"]
    page.goto(f"{rogers.url}/ui")
    row(page, "mad", "grace", "HEALTHY")
    row(page, "mad", "fiedler", "HEALTHY")
    page.evaluate("window.loadedOnce = true")  # gone if the page ever reloads
    OUTPUT.mkdir(exist_ok=True)

    running.mads["grace"].kill()
    row(page, "mad", "grace", "STALE")
    assert page.evaluate("window.loadedOnce") is True
    assert page.get_attribute('tr[data-mad="fiedler"]', "data-status") == "HEALTHY"

    created = tool(fiedler.url, "fiedler_converse", SMOKE)
    row(page, "task", created["task_id"], "COMPLETED")
    assert page.evaluate("window.loadedOnce") is True
    page.screenshot(path=str(OUTPUT / "rogers-ui.png"), full_page=True)
    text = page.inner_text("body")
    assert "mad.fiedler.task.status" in text and "Traffic" in text
    print(f"screenshot: {OUTPUT / 'rogers-ui.png'}")


def test_payloads_are_cut_short_and_secrets_hidden(running: ProcessGroup) -> None:
    grace, rogers = running.mads["grace"], running.mads["rogers"]
    payload = {"api_key": SECRET, "nested": {"password": SECRET}, "note": "x" * 5000}
    message = {"channel": "mad.topic.ui-test", "payload": payload}
    tool(grace.url, "grace_send_message", message)
    page = httpx.get(f"{rogers.url}/ui", timeout=10)
    assert (
        page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    )
    assert '<script src="/ui/app.js"' in page.text and "http" not in page.text.split("<body>")[1]

    with httpx.stream("GET", f"{rogers.url}/ui/events", timeout=30) as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        for line in events.iter_lines():
            if not line.startswith("data: "):
                continue
            snapshot = json.loads(line.removeprefix("data: "))
            mine = [e for e in snapshot["envelopes"] if e["channel"] == "mad.topic.ui-test"]
            if mine:
                break
    assert SECRET not in json.dumps(snapshot)
    assert "<hidden>" in mine[0]["payload"] and len(mine[0]["payload"]) <= 240
