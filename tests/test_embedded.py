"""`demo` and `up`: the embedded default, run as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

from temporalio.client import Client

from infra.connection import data_converter
from infra.keys import KeyDirectory
from tests.test_cli import CLI
from tests.up_process import running_up

ENV = {"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "TEMPORAL_CONFIG_FILE": "/nonexistent"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_demo_drives_a_review_to_release(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    proc = await asyncio.create_subprocess_exec(
        CLI, "demo", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**ENV, "FRONTIER_REVIEW_KEYS_DIR": str(keys)},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "demo finished: RELEASED" in text
    assert "CONCLUDED_EARLY" in text
    assert f"created development keys in {keys}" in text.replace("\n", "")
    assert (keys / "payload-keys.json").is_file()
    # DoD's vulnerability finding becomes a Treasury clearinghouse case, fixed, deployed, disclosed.
    assert "becomes a Treasury clearinghouse case" in text
    assert "case      case-" in text
    assert "severity  critical (CVSS 3.1 9.8)" in text
    assert "priority  P2: affects critical infrastructure" in text
    assert "CLOSED" in text and "disclosed before the embargo ends" in text


async def test_up_serves_a_persistent_server_with_workers_until_interrupted(tmp_path: Path) -> None:
    port, ui_port, codec_port, metrics_port, watcher_port = (free_port() for _ in range(5))
    db = tmp_path / "temporal.db"
    env = {
        **ENV,
        "FRONTIER_REVIEW_DATA_DIR": str(tmp_path / "records"),
        "FRONTIER_REVIEW_KEYS_DIR": str(tmp_path / "k"),
    }
    async with running_up(
        "--db", str(db), "--port", str(port), "--ui-port", str(ui_port), "--codec-port", str(codec_port),
        "--metrics-port", str(metrics_port), "--watcher-port", str(watcher_port), env=env, cwd=tmp_path,
    ) as up:  # fmt: skip
        seen = up.seen
        assert f"http://localhost:{ui_port}" in seen
        keyring = KeyDirectory(tmp_path / "k").payload_keyring()
        client = await Client.connect(f"localhost:{port}", data_converter=data_converter(keyring))
        disclose = await asyncio.create_subprocess_exec(
            CLI, "disclose", str(Path(__file__).parent.parent / "examples" / "small-assistant.json"),
            "--address", f"localhost:{port}", stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        rid = (await disclose.communicate())[0].decode().strip()
        assert disclose.returncode == 0
        # The workers started by `up` run the standards check.
        handle = client.get_workflow_handle(rid)
        for _ in range(100):
            if "AWAITING_DETERMINATION" in str((await handle.describe()).typed_search_attributes):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("up's workers never ran the standards check")
        # The watcher page lists it (read-only), and the Web UI links carry their queries.
        assert f"http://localhost:{watcher_port}/" in seen
        under_review = "workflows?query=ReviewStage%20%3D%20%22UNDER_REVIEW%22"
        assert f"http://localhost:{ui_port}/namespaces/default/{under_review}" in seen
        with urllib.request.urlopen(f"http://127.0.0.1:{watcher_port}/reviews.json", timeout=5) as response:
            listed = json.loads(response.read())
        assert [r["review_id"] for r in listed["reviews"]] == [rid]
        # The workers' metrics: the runtime's own and ours.
        assert f":{metrics_port}/metrics" in seen
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "frontier_review_reviews_started{" in metrics and "temporal_" in metrics
        code = await up.interrupt()
    assert code == 0
    assert db.is_file() and db.stat().st_size > 0, "the dev server's database persists"
    assert os.path.exists(tmp_path / "records" / "review.db")
