"""What a watcher sees in the Temporal Web UI, in a real (headless) Chromium.

Runs its own dev server with the Web UI (the session's has none), installs Debian's
`chromium` when it is missing (as root; otherwise the test is skipped, and says so), and
drives it with Playwright from PyPI: no browser is downloaded. Screenshots go to
test-output/.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio
from temporalio.client import Client

from api.agency import AgencyClient
from cli.keys import serve_codec
from cli.reviews import load_disclosure
from domain.policy import load_policy
from domain.status import Stage
from infra.codec_server import LOCAL_UI
from infra.devserver import start_dev_server
from infra.keys import KeyDirectory
from tests.conftest import EXAMPLES, disclose, mythos, wait_stage
from tests.test_audit import TEST_OUTPUT
from tests.test_embedded import free_port
from worker import WorkerConfig, build_workers, run_workers

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
README = Path(__file__).resolve().parent.parent / "README.md"
# The saved list queries the README gives watchers; each must be one the server accepts.
README_QUERIES = [
    'ReviewStage = "UNDER_REVIEW"',
    'ReviewStage = "UNDER_REVIEW" AND WindowDeadline < "2026-12-31T00:00:00Z"',
    'ReviewStage = "AWAITING_DETERMINATION" AND StartTime < "2026-12-01T00:00:00Z"',
    'Covered = true AND Lab = "Anthropic"',
    'WorkflowType = "VulnerabilityCase" AND CasePriority <= 2 AND CaseStatus != "CLOSED"',
    'WorkflowType = "VulnerabilityCase" AND Sectors = "water" AND EmbargoDeadline < "2027-01-31T00:00:00Z"',
    'Outcome = "WINDOW_ELAPSED"',
    'ExecutionStatus = "Running" AND ReviewStage IN ("STANDARDS_CHECK", "AWAITING_DETERMINATION", "UNDER_REVIEW")',
    "SecondsToRelease > 2592000",
    'DeterminedBy = "policy-default"',
    'PendingAgencies = "dod"',
]


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt when missing (root only)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("SKIPPED, NOT PASSED: /usr/bin/chromium is missing and apt-get cannot install it without root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600, capture_output=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env, timeout=900, capture_output=True
    )
    assert CHROMIUM.exists(), "apt-get installed chromium, but not at /usr/bin/chromium"
    return CHROMIUM


async def frames_text(page, *expected: str, timeout: float = 30) -> str:
    """The text of the page's frames, once it holds everything expected."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        texts = []
        for frame in page.frames:
            if frame != page.main_frame:
                try:
                    texts.append(await frame.inner_text("body", timeout=1000))
                except Exception:  # a frame that is being replaced; the next round reads it
                    pass
        text = "\n".join(texts)
        missing = [e for e in expected if e not in text]
        if not missing:
            return text
        if loop.time() > deadline:
            raise AssertionError(f"the Web UI never showed {missing}; it showed: {text!r}")
        await asyncio.sleep(0.25)


@pytest_asyncio.fixture
async def ui_server(tmp_path: Path, keys: KeyDirectory) -> AsyncIterator[tuple[Client, int]]:
    """A dev server with its Web UI, the codec server, and every worker, as `frontier-review up` runs them:
    payloads are encrypted, and the UI reads them decoded through the codec server."""
    ui_port, codec_port = free_port(), free_port()
    codec = await serve_codec(keys, "127.0.0.1", codec_port, [f"http://127.0.0.1:{ui_port}"], local_ui=True)
    env = await start_dev_server(
        ui=True,
        ui_port=ui_port,
        keyring=keys.payload_keyring(),
        extra_args=["--ui-codec-endpoint", f"http://127.0.0.1:{codec_port}{LOCAL_UI}"],
    )
    stop = asyncio.Event()
    workers = asyncio.create_task(run_workers(build_workers(env.client, config=WorkerConfig(data_dir=tmp_path)), stop))
    try:
        yield env.client, ui_port
    finally:
        stop.set()
        await workers
        await env.shutdown()
        await codec.cleanup()


@pytest.mark.browser
async def test_a_watcher_filters_by_stage_and_reads_a_review(ui_server: tuple[Client, int]) -> None:
    chromium = await asyncio.to_thread(ensure_chromium)
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=30_000)

    client, ui_port = ui_server
    policy = load_policy("eo-2026")
    disclosure = mythos()
    under_review = await disclose(client, disclosure, policy)
    waiting = await disclose(client, load_disclosure(str(EXAMPLES / "small-assistant.json")), policy)
    await wait_stage(client, waiting, Stage.AWAITING_DETERMINATION)
    await wait_stage(client, under_review, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(under_review, covered=True, agencies=["dod", "dhs"], rationale="r")
    await wait_stage(client, under_review, Stage.UNDER_REVIEW)

    TEST_OUTPUT.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{ui_port}/namespaces/default"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1600, "height": 900})
            page.set_default_timeout(30_000)

            # The list, filtered by stage: the review under review is there, the other is not.
            await page.goto(f"{base}/workflows?query=" + quote('ReviewStage = "UNDER_REVIEW"'))
            link = page.get_by_role("link", name=under_review)
            await expect(link).to_be_visible()
            await expect(page.get_by_text('ReviewStage = "UNDER_REVIEW"').first).to_be_visible()
            await expect(page.get_by_role("link", name=waiting)).to_have_count(0)
            await page.screenshot(path=TEST_OUTPUT / "web-ui-list-under-review.png")

            # The review: its summary, and current details a watcher reads (stage, deadline, who is pending).
            await link.click()
            await page.wait_for_url(f"**/workflows/{under_review}/**")
            await page.get_by_role("tab", name="User Metadata").click()
            # The UI renders summary and details (Markdown) in frames of their own.
            metadata = await frames_text(
                page,
                f"{disclosure.lab} {disclosure.model_name} {disclosure.model_version}",
                "policy: eo-2026.1 (review window 30 days)",
                "UNDER_REVIEW",
                "window closes:",
                "pending: dod, dhs",
            )
            assert "AWAITING_DETERMINATION" not in metadata
            await page.screenshot(path=TEST_OUTPUT / "web-ui-review-details.png")

            # The timeline reads as the review: named checks, the NSA's deadline, the 30-day window.
            await page.get_by_role("tab", name="Timeline").click()
            main = page.get_by_role("main")
            for label in (
                "DoD standards check",
                "NSA briefing",
                "NSA determination deadline",
                "review window (30 days)",
            ):
                await expect(main.get_by_text(label).first).to_be_visible()
            await page.screenshot(path=TEST_OUTPUT / "web-ui-review-timeline.png")
        finally:
            await browser.close()


async def test_the_readme_list_queries_are_accepted(client: Client) -> None:
    readme = README.read_text()
    for query in README_QUERIES:
        assert query in readme, f"README lacks {query!r}"
        [w async for w in client.list_workflows(query, limit=1)]
    soon = (datetime.now(UTC) + timedelta(days=31)).isoformat().replace("+00:00", "Z")
    await client.count_workflows(f'ReviewStage = "UNDER_REVIEW" AND WindowDeadline < "{soon}"')
