"""What a watcher reads without the Temporal UI: `list` (piped, filtered by pending agency) and the
read-only watcher page in Debian's chromium, on reviews at three places, one of them terminated."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import unquote

import aiohttp
from temporalio.client import Client

from api.agency import AgencyClient, LabClient
from api.reviews import list_reviews
from domain.policy import Policy
from domain.status import Stage
from infra import watcher_page
from infra.codec_server import start
from tests.conftest import disclose, mythos, wait_stage
from tests.test_audit import TEST_OUTPUT, run_cli
from tests.test_embedded import free_port
from tests.test_web_ui import CHROMIUM_ARGS, ensure_chromium


async def three_reviews(client: Client, policy: Policy, lab: str) -> tuple[str, str, str]:
    """One waiting for the NSA, one under review by DoD and DHS, one terminated while under review."""
    waiting, under, cut = [await disclose(client, mythos(lab=lab, model_version=v), policy) for v in ("1", "2", "3")]
    for rid in (waiting, under, cut):
        await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    nsa = AgencyClient(client, "nsa")
    for rid in (under, cut):
        await nsa.determine(rid, covered=True, agencies=["dod", "dhs"], rationale="r")
        await wait_stage(client, rid, Stage.UNDER_REVIEW)
    await client.get_workflow_handle(cut).terminate("pulled by an operator")
    for _ in range(100):  # visibility is eventually consistent
        rows = {r.review_id: r for r in [r async for r in list_reviews(client, lab=lab)]}
        if rows.get(cut) and rows[cut].status == "TERMINATED" and rows.get(under) and rows[under].pending_agencies:
            return waiting, under, cut
        await asyncio.sleep(0.1)
    raise AssertionError(f"visibility never caught up: {rows}")


async def test_list_and_the_watcher_page_tell_where_each_review_stands(client: Client, policy: Policy) -> None:
    lab = f"WatchedLab-{uuid.uuid4().hex[:8]}"
    waiting, under, cut = await three_reviews(client, policy, lab)
    address = client.service_client.config.target_host

    # `list` into a pipe: whole ids, the model's version, the run's execution status; a terminated run
    # is never shown as the stage it was cut at.
    r = await asyncio.to_thread(run_cli, "list", "--address", address)
    assert r.returncode == 0, r.stderr
    lines = {rid: line for line in r.stdout.splitlines() for rid in (waiting, under, cut) if f" {rid} " in line}
    assert set(lines) == {waiting, under, cut}, r.stdout
    assert "AWAITING_DETERMINATION" in lines[waiting] and "RUNNING" in lines[waiting]
    assert "UNDER_REVIEW" not in lines[cut] and "TERMINATED" in lines[cut]
    # Who waits for DoD: the review under review, not the one waiting for the NSA, not the terminated one.
    r = await asyncio.to_thread(run_cli, "list", "--pending-agency", "dod", "--json", "--address", address)
    assert r.returncode == 0, r.stderr
    listed = {row["review_id"]: row for row in json.loads(r.stdout)}
    assert under in listed and waiting not in listed and cut not in listed
    assert listed[under]["pending_agencies"] == ["dod", "dhs"] and listed[under]["model_version"] == "2"
    r = await asyncio.to_thread(run_cli, "list", "--pending-agency", "nobody", "--address", address)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown agency" in r.stderr

    async def reviews():
        return [r async for r in list_reviews(client, lab=lab)]

    port = free_port()
    runner = await start(watcher_page.make_app(reviews), "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as http:  # read-only: nothing but GET
            for method in ("POST", "PUT", "DELETE"):
                async with http.request(method, f"http://127.0.0.1:{port}/") as response:
                    assert response.status == 405
            async with http.get(f"http://127.0.0.1:{port}/reviews.json") as response:
                figures = await response.json()
        assert figures["counts"]["AWAITING_DETERMINATION"] == 1 and figures["counts"]["UNDER_REVIEW"] == 1
        assert figures["counts"]["TERMINATED"] == 1

        chromium = await asyncio.to_thread(ensure_chromium)
        from playwright.async_api import async_playwright, expect

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 700})
                await page.goto(f"http://127.0.0.1:{port}/")
                row = page.locator(f'tr[data-review="{under}"]')
                await expect(row).to_contain_text("UNDER_REVIEW")
                await expect(row).to_contain_text("dod, dhs")
                await expect(row).to_contain_text("NSA")
                await expect(page.locator(f'tr[data-review="{cut}"] td.where')).to_have_text("TERMINATED")
                await expect(page.locator(f'tr[data-review="{waiting}"]')).to_contain_text("nsa")
                await expect(page.locator('li[data-stage="UNDER_REVIEW"] b')).to_have_text("1")
                await expect(page.locator('li[data-stage="TERMINATED"] b')).to_have_text("1")
                # Nothing to act with: no form, button, input or script.
                assert await page.locator("form, button, input, script").count() == 0
                TEST_OUTPUT.mkdir(exist_ok=True)
                await page.screenshot(path=TEST_OUTPUT / "watcher-page.png")
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    # A conclusion that leaves the window open updates who is awaited.
    await AgencyClient(client, "dod").conclude(under)
    for _ in range(100):
        if [r.pending_agencies async for r in list_reviews(client, lab=lab, pending_agency="dhs")] == [["dhs"]]:
            break
        await asyncio.sleep(0.1)
    assert [r.review_id async for r in list_reviews(client, lab=lab, pending_agency="dhs")] == [under]
    assert [r async for r in list_reviews(client, lab=lab, pending_agency="dod")] == []
    await AgencyClient(client, "dhs").conclude(under)
    await client.get_workflow_handle(waiting).terminate("test finished")


async def test_a_refiled_review_shows_its_earlier_runs(client: Client, policy: Policy) -> None:
    """Withdrawn, refiled, closed by an operator, refiled: status, audit and list show every earlier run."""
    disclosure = mythos()
    rid = await disclose(client, disclosure, policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await LabClient(client).withdraw(rid, "fixing the model card")
    await client.get_workflow_handle(rid).result()
    withdrawn = (await client.get_workflow_handle(rid).describe()).run_id
    assert await disclose(client, disclosure, policy) == rid
    cut = (await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)).run_id
    await client.get_workflow_handle(rid).terminate("stuck")
    assert await disclose(client, disclosure, policy) == rid
    latest = (await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)).run_id
    address = client.service_client.config.target_host
    for _ in range(100):  # visibility catches up with the closed runs
        if len([r async for r in list_reviews(client, review_id=rid) if r.closed_at]) == 2:
            break
        await asyncio.sleep(0.1)

    r = await asyncio.to_thread(run_cli, "status", rid, "--json", "--address", address)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert shown["run_id"] == latest
    ended = {e["run_id"]: (e["status"], e["stage"], e["outcome"]) for e in shown["earlier_runs"]}
    assert ended == {
        cut: ("TERMINATED", "AWAITING_DETERMINATION", None),
        withdrawn: ("COMPLETED", "WITHDRAWN", "WITHDRAWN"),
    }
    r = await asyncio.to_thread(run_cli, "audit", rid, "--json", "--address", address)
    assert r.returncode == 0, r.stderr
    assert {e["run_id"]: e["status"] for e in json.loads(r.stdout)["earlier_runs"]} == {
        cut: "TERMINATED", withdrawn: "COMPLETED"
    }  # fmt: skip
    # The withdrawn run's own audit has no earlier run.
    r = await asyncio.to_thread(run_cli, "audit", rid, "--run-id", withdrawn, "--json", "--address", address)
    assert r.returncode == 0 and json.loads(r.stdout)["earlier_runs"] == [], r.stderr
    r = await asyncio.to_thread(run_cli, "list", "--json", "--address", address)
    runs = {row["run_id"]: row["status"] for row in json.loads(r.stdout) if row["review_id"] == rid}
    assert runs == {latest: "RUNNING", cut: "TERMINATED", withdrawn: "COMPLETED"}
    await LabClient(client).withdraw(rid, "test finished")


async def test_the_saved_query_links_up_prints_are_queries_the_server_accepts(client: Client) -> None:
    links = watcher_page.ui_links("http://localhost:8233")
    for name, query in watcher_page.SAVED_QUERIES.items():
        await client.count_workflows(query)
        assert unquote(links[name].split("?query=", 1)[1]) == query
