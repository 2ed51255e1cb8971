"""Prometheus metrics from `python worker.py --metrics-port`: the Temporal runtime's and ours."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import urllib.request
from pathlib import Path

from temporalio.client import Client

from api.agency import AgencyClient
from domain import metrics
from domain.agencies import Agency
from domain.policy import Policy
from domain.status import ReviewStatus, Stage
from tests.conftest import ISOLATED_NAMESPACE, disclose, mythos, wait_stage
from tests.test_audit import cli_env
from tests.test_embedded import free_port

WORKER = str(Path(__file__).resolve().parent.parent / "worker.py")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? ([0-9.e+-]+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


async def test_the_worker_serves_runtime_and_review_metrics(
    isolated: Client, policy: Policy, worker_config, tmp_path: Path
) -> None:
    port = free_port()
    address = isolated.service_client.config.target_host
    proc = await asyncio.create_subprocess_exec(
        sys.executable, WORKER, "--address", address, "--namespace", ISOLATED_NAMESPACE, "--metrics-port", str(port),
        "--metrics-host", "127.0.0.1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**cli_env(), "FRONTIER_REVIEW_DATA_DIR": str(tmp_path / "records")},
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                await asyncio.to_thread(scrape, port)
                break
            except OSError:
                await asyncio.sleep(0.1)
        rid = await disclose(isolated, mythos(), policy)
        await wait_stage(isolated, rid, Stage.AWAITING_DETERMINATION)
        await AgencyClient(isolated, Agency.NSA).determine(rid, covered=True, agencies=["dod"], rationale="r")
        await wait_stage(isolated, rid, Stage.UNDER_REVIEW)
        await AgencyClient(isolated, Agency.DOD).conclude(rid)
        await isolated.get_workflow_handle(rid, result_type=ReviewStatus).result()
        text = ""
        for _ in range(50):  # the exporter may lag the workflow by a moment
            text = await asyncio.to_thread(scrape, port)
            if (
                value(text, metrics.REVIEWS_CLOSED.name) >= 1
                and value(text, metrics.GRANTS.name) >= 2
                and value(text, "temporal_workflow_completed") >= 1
            ):
                break
            await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]

    assert value(text, metrics.REVIEWS_STARTED.name, policy_version=policy.version) >= 1
    assert value(text, metrics.DETERMINATIONS.name, covered="true", by_default="false") >= 1
    assert value(text, metrics.WINDOWS_CLOSED_EARLY.name) >= 1
    assert value(text, metrics.REVIEWS_CLOSED.name, outcome="CONCLUDED_EARLY") >= 1
    assert value(text, metrics.GRANTS.name, sector="energy") >= 1
    assert value(text, metrics.WINDOWS_ELAPSED.name) == 0
    # The Temporal runtime's own metrics are on the same endpoint.
    assert value(text, "temporal_workflow_completed", workflow_type="ModelReview") >= 1
    assert re.search(r"^temporal_activity_execution_latency", text, re.M)

    # The worker's log lines are JSON (no terminal) and carry review id, stage and agency.
    lines = [json.loads(line) for line in err.decode().splitlines() if rid in line]
    assert lines and all({"review_id", "stage", "agency"} <= line.keys() for line in lines)
    assert all(line["review_id"] == rid for line in lines)
    determination = next(line for line in lines if line["event"] == "determination recorded")
    assert (determination["stage"], determination["agency"]) == ("AWAITING_DETERMINATION", "nsa")
    dod = next(line for line in lines if line.get("agency") == "dod" and line["event"] == "standards check")
    assert dod["stage"] == "STANDARDS_CHECK" and dod["activity"] == "check_standard"
