"""`frontier-review vuln ...` as vendors and operators run it: the real console script in a
subprocess, against the session's dev server and workers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

from infra.keys import KeyDirectory
from tests.conftest import EXAMPLES, vulnerability
from tests.test_clearinghouse import wait_case
from tests.test_cli import CLI, Run

VULNS = EXAMPLES / "vulnerabilities"


@pytest.fixture
def vuln(client: Client):
    address = client.service_client.config.target_host

    async def run(*args: str) -> Run:
        proc = await asyncio.create_subprocess_exec(
            CLI, *args, "--address", address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "TEMPORAL_CONFIG_FILE": "/nonexistent",
                 **{k: v for k, v in os.environ.items() if k.startswith("FRONTIER_REVIEW_")}},  # e.g. the keys
        )  # fmt: skip
        out, err = await proc.communicate()
        return Run(proc.returncode, out.decode(), err.decode())

    return run


def report_file(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "report.json"
    path.write_text(vulnerability(**changes).model_dump_json())
    return path


async def listed(vuln, *filters: str, case_id: str, present: bool = True) -> list[dict]:
    """`vuln list` (visibility is eventually consistent: poll briefly)."""
    for _ in range(100):
        r = await vuln("vuln", "list", *filters, "--json")
        assert r.code == 0, r.err
        rows = json.loads(r.out)
        if (case_id in [row["case_id"] for row in rows]) == present:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{case_id} {'never' if present else 'still'} listed with {filters}")


async def test_a_case_from_the_command_line(vuln, client: Client, tmp_path: Path) -> None:
    file = report_file(tmp_path, sectors=["water", "research"])
    r = await vuln("vuln", "report", str(file), "--as", "partner:shieldsec")
    assert r.code == 0, r.err
    case_id = r.out.strip()
    assert case_id.startswith("case-")
    r = await vuln("vuln", "report", str(file), "--as", "operator:water")
    assert r.code == 0 and r.out.strip() == f"{case_id} (duplicate: linked to the existing case)"
    await wait_case(client, case_id, "VENDOR_NOTIFIED")

    r = await vuln("vuln", "status", case_id, "--json")
    assert r.code == 0, r.err
    s = json.loads(r.out)
    assert (s["status"], s["severity"], s["priority"], s["vendor_party"]) == (
        "VENDOR_NOTIFIED",
        "critical",
        2,
        "vendor:tlskit-foundation",
    )
    assert len(s["reports"]) == 2
    rows = await listed(vuln, "--status", "VENDOR_NOTIFIED", "--sector", "water", case_id=case_id)
    row = next(row for row in rows if row["case_id"] == case_id)
    assert (row["severity"], row["priority"], row["sectors"]) == ("critical", 2, ["water", "research"])
    await listed(vuln, "--sector", "energy", case_id=case_id, present=False)

    r = await vuln(
        "vuln", "request-extension", case_id, "--as", "vendor:tlskit-foundation", "--days", "60", "--reason", "r"
    )
    assert r.code == 1 and "exceeds the policy's cap of 45 days" in r.err
    r = await vuln("vuln", "fix-ready", case_id, "--as", "vendor:meridian-controls", "--fixed-in", "3.2.5")
    assert r.code == 1 and "only the vendor (vendor:tlskit-foundation)" in r.err
    # The vendor's name, someone else's key (--key): refused, nothing recorded.
    other = str(KeyDirectory().signing_file("vendor:meridian-controls"))
    r = await vuln("vuln", "fix-ready", case_id, "--as", "vendor:tlskit-foundation", "--fixed-in", "1", "--key", other)
    assert r.code == 1 and "signature does not verify for vendor:tlskit-foundation" in r.err
    r = await vuln("vuln", "patch-deployed", case_id, "--as", "operator:water")
    assert r.code == 1 and "no fix is ready yet" in r.err

    r = await vuln("vuln", "fix-ready", case_id, "--as", "vendor:tlskit-foundation", "--fixed-in", "3.2.5,3.1.9")
    assert r.code == 0, r.err
    await wait_case(client, case_id, "PATCH_DISTRIBUTED")
    for sector in ("water", "research"):
        r = await vuln("vuln", "patch-deployed", case_id, "--as", f"operator:{sector}")
        assert r.code == 0, r.err
    await wait_case(client, case_id, "CLOSED")
    r = await vuln("vuln", "status", case_id)
    assert r.code == 0 and "CLOSED" in r.out and "patch deployed" in r.out
    r = await vuln("vuln", "exploitation-observed", case_id, "--as", "treasury", "--evidence", "late")
    assert r.code == 1 and "the case is closed (status CLOSED)" in r.err

    r = await vuln("vuln", "clearinghouse", "--json")
    assert r.code == 0 and json.loads(r.out)["reports"] >= 2


async def test_a_vulnerability_finding_from_the_command_line_needs_its_details(vuln) -> None:
    args = ("finding", "review-x", "--agency", "dod", "--severity", "high", "--summary", "s")
    r = await vuln(*args, "--kind", "vulnerability")
    assert r.code == 2 and "needs --details FILE.json" in r.err
    r = await vuln(*args, "--kind", "capability", "--details", str(VULNS / "tls-heap-overflow.json"))
    assert r.code == 2 and "--details applies only to --kind vulnerability" in r.err
    r = await vuln(*args, "--kind", "vulnerability", "--details", str(VULNS / "invalid" / "bad-cvss.json"))
    assert r.code == 2 and "invalid CVSS vector" in r.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("vuln", "report", str(VULNS / "invalid" / "bad-cvss.json")), 'Unknown value "Q" in field "AV:Q"'),
        (("vuln", "report", str(VULNS / "invalid" / "unknown-sector.json")), "sectors.1: Input should be"),
        (("vuln", "report", str(EXAMPLES / "invalid" / "malformed.json")), "malformed JSON"),
        (("vuln", "report", str(VULNS / "tls-heap-overflow.json"), "--as", "operator:moon"), "unknown sector 'moon'"),
        (("vuln", "report", str(VULNS / "tls-heap-overflow.json"), "--as", "mallory"), "unknown party 'mallory'"),
        (("vuln", "list", "--status", "NOWHERE"), "unknown status 'NOWHERE'"),
        (("vuln", "list", "--sector", "moon"), "unknown sector 'moon'"),
        (("vuln", "fix-ready", "case-x", "--as", "operator:energy", "--fixed-in", "1"), "must be a vendor:<id>"),
        (("vuln", "patch-deployed", "case-x", "--as", "operator:moon"), "unknown sector 'moon'"),
        (("vuln", "request-extension", "case-x", "--as", "vendor:v", "--days", "0", "--reason", "r"), "positive"),
    ],
)
async def test_bad_input_exits_2_with_one_line(vuln, args: tuple[str, ...], message: str) -> None:
    r = await vuln(*args)
    assert r.code == 2, r.err
    assert message in r.err
    assert r.err.startswith("error: ") and r.err.count("\n") == 1, "one line"


async def test_an_unknown_case(vuln) -> None:
    r = await vuln("vuln", "status", "case-0000000000000000")
    assert r.code == 1 and "no case with id 'case-0000000000000000'" in r.err
    r = await vuln("vuln", "patch-deployed", "case-0000000000000000", "--as", "treasury")
    assert r.code == 1 and "no case with id" in r.err
