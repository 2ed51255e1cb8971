"""The real console script, in a subprocess, against the session's dev server and workers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import Client

from api.reviews import status
from domain.status import Stage
from tests.conftest import EXAMPLES, wait_stage

CLI = shutil.which("frontier-review", path=str(Path(sys.executable).parent)) or "frontier-review"
REQUIRED_STATUS_KEYS = {
    "review_id", "stage", "outcome", "covered", "policy_version", "determination_deadline",
    "window_deadline", "pending_agencies", "findings", "partners_granted",
}  # fmt: skip


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(client: Client):
    address = client.service_client.config.target_host

    async def run(*args: str, at: str | None = None) -> Run:
        proc = await asyncio.create_subprocess_exec(
            CLI, *args, "--address", at or address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={
                "PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "TEMPORAL_CONFIG_FILE": "/nonexistent",
                "FRONTIER_REVIEW_KEYS_DIR": os.environ["FRONTIER_REVIEW_KEYS_DIR"],
            },
        )  # fmt: skip
        out, err = await proc.communicate()
        return Run(proc.returncode, out.decode(), err.decode())

    return run


def disclosure_file(tmp_path: Path, **changes: object) -> Path:
    data = json.loads((EXAMPLES / "mythos-2.json").read_text())
    data.update({"model_version": f"cli-{uuid.uuid4().hex[:8]}", **changes})
    path = tmp_path / "disclosure.json"
    path.write_text(json.dumps(data))
    return path


async def test_a_review_from_the_command_line(cli, client: Client, tmp_path: Path) -> None:
    r = await cli("disclose", str(disclosure_file(tmp_path)), "--policy", "eo-2026")
    assert r.code == 0, r.err
    rid = r.out.strip()
    assert rid.startswith("review-anthropic-mythos-cli-")
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)

    r = await cli("status", rid, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert REQUIRED_STATUS_KEYS <= s.keys()
    assert s["stage"] == "AWAITING_DETERMINATION"
    assert s["pending_agencies"] == ["nsa"]

    r = await cli("determine", rid, "--covered", "--agencies", "dod,dhs", "--rationale", "cyber capability")
    assert r.code == 0, r.err
    # The receipt: the stage the determination moved the review to, from the one it was sent at.
    assert "AWAITING_DETERMINATION -> UNDER_REVIEW" in r.out and "dod, dhs" in r.out, r.out
    await wait_stage(client, rid, Stage.UNDER_REVIEW)

    r = await cli("list", "--stage", "UNDER_REVIEW", "--json")
    assert r.code == 0, r.err
    assert rid in [row["review_id"] for row in json.loads(r.out)]

    r = await cli(
        "finding", rid, "--agency", "dod", "--kind", "vulnerability", "--severity", "high", "--summary", "RCE in X",
        "--details", str(EXAMPLES / "vulnerabilities" / "tls-heap-overflow.json"),
    )  # fmt: skip
    assert r.code == 0, r.err
    assert (await cli("conclude", rid, "--agency", "dod")).code == 0
    assert (await cli("conclude", rid, "--agency", "dhs")).code == 0
    final = await wait_stage(client, rid, Stage.RELEASED)
    assert [f.summary for f in final.findings] == ["RCE in X"]

    r = await cli("status", rid)
    assert r.code == 0 and "RELEASED" in r.out and "CONCLUDED_EARLY" in r.out


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("malformed.json", "malformed JSON at line 2"),
        ("missing-field.json", "checkpoint_sha256: Field required"),
        ("unknown-sector.json", "partners.0.sector: Input should be"),
        ("bad-checksum.json", "evaluations.cyber_offense: Input should be less than or equal to 1"),
    ],
)
async def test_bad_disclosures_exit_2_with_the_reason(cli, file: str, message: str) -> None:
    r = await cli("disclose", str(EXAMPLES / "invalid" / file))
    assert r.code == 2
    assert message in r.err
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, "one line"


async def test_bad_input_and_rejections(cli, client: Client, tmp_path: Path) -> None:
    assert "no such file" in (await cli("disclose", str(tmp_path / "nope.json"))).err
    r = await cli("disclose", str(disclosure_file(tmp_path)), "--policy", "nonexistent")
    assert r.code == 2 and "policy 'nonexistent' not found" in r.err

    file = disclosure_file(tmp_path)
    rid = (await cli("disclose", str(file))).out.strip()
    r = await cli("disclose", str(file))
    assert r.code == 1 and f"review {rid} is already open" in r.err
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)

    r = await cli("determine", rid, "--covered", "--agencies", "dod,cia", "--rationale", "r")
    assert r.code == 2 and "unknown agency 'cia'" in r.err
    r = await cli("finding", rid, "--agency", "dod", "--kind", "capability", "--severity", "low", "--summary", "s")
    assert r.code == 1 and "at stage AWAITING_DETERMINATION" in r.err
    r = await cli("conclude", rid, "--agency", "mi6")
    assert r.code == 2 and "unknown agency 'mi6'" in r.err
    r = await cli("list", "--stage", "NOWHERE")
    assert r.code == 2 and "unknown stage" in r.err
    r = await cli("status", "review-no-such-thing-1")
    assert r.code == 1 and "no review with id" in r.err
    r = await cli("list", at="127.0.0.1:1")
    assert r.code == 1 and r.err.startswith("error: cannot reach Temporal at 127.0.0.1:1 (start one with")
    assert r.err.count("\n") == 1
    assert (await status(client, rid)).stage == Stage.AWAITING_DETERMINATION, "nothing recorded changed"

    r = await cli("withdraw", rid, "--reason", "")
    assert r.code == 2 and "reason: String should have at least 1 character" in r.err and r.err.count("\n") == 1
    r = await cli("list", "--profile", "no-such-profile")
    assert r.code == 2 and "Temporal client configuration" in r.err and r.err.count("\n") == 1
    r = await cli("withdraw", rid, "--reason", "leaving the program")
    assert r.code == 0, r.err
    final = await wait_stage(client, rid, Stage.WITHDRAWN)
    assert final.withdrawal_reason == "leaving the program"
