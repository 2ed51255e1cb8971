"""What someone who can read the workers' files, their logs or the local machine's process list
learns (issue 8, item 8): no verdict, rationale or embargoed detail in the SQLite files (sealed,
and 0600), no verdict count, CVSS reason or vendor id in the logs, and never the codec token (not
on a command line, not served by the Web UI's unauthenticated /api/v1/settings)."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import stat
import sys
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from activities.clearinghouse import Outbox
from activities.store import RecordStore
from api.agency import AgencyClient
from api.reviews import status
from domain.case import NoticeKind
from domain.clearinghouse import VulnerabilityIntake
from domain.policy import Policy
from domain.status import Stage
from infra.codec import EncryptionCodec
from infra.devserver import free_port
from infra.keys import KeyDirectory
from infra.sealing import SealError
from tests.conftest import disclose, mythos, report_signed, vulnerability, wait_stage
from tests.test_clearinghouse import settled
from tests.up_process import running_up
from worker import WorkerConfig

CLI = str(Path(sys.executable).parent / "frontier-review")


def raw_bytes(db: Path) -> bytes:
    """Everything on disk for one SQLite database: the file and its journal companions."""
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists())


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {json.dumps(r.__dict__, default=str)}" for r in self.records)


async def test_classified_fields_are_sealed_at_rest_and_the_files_are_private(
    client: Client, policy: Policy, worker_config: WorkerConfig
) -> None:
    """Issue 8: nsa.db (every verdict and rationale) and clearinghouse.db (embargoed details) were
    plaintext and 0644."""
    logs = Records()
    watched = [logging.getLogger(n) for n in ("temporalio.activity", "temporalio.workflow")]
    levels = [w.level for w in watched]
    for w in watched:
        w.addHandler(logs)
        w.setLevel(logging.INFO)
    try:
        rid = await disclose(client, mythos(), policy)
        briefed = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
        report = vulnerability(sectors=["energy"])
        receipt = await report_signed(client, VulnerabilityIntake(sender="partner:shieldsec", report=report), policy)
        case = await settled(client, receipt.case_id)
        await AgencyClient(client, "nsa").determine(rid, covered=False, rationale="not covered")
        await wait_stage(client, rid, Stage.RELEASED)
    finally:
        for w, level in zip(watched, levels, strict=True):
            w.removeHandler(logs)
            w.setLevel(level)

    # The NSA's inbox: the briefing is there, and opens with the key, but its words are not on disk.
    nsa = worker_config.data_dir / "nsa.db"
    briefing = RecordStore(nsa).briefing(rid)
    assert briefing is not None
    rationales = [v.rationale for v in briefed.standards if v.rationale]
    assert rationales and all(r in briefing for r in rationales)
    on_disk = raw_bytes(nsa)
    assert rid.encode() in on_disk  # the row is there (ids stay plain) ...
    for secret in [*rationales, '"verdict"', "no_concern"]:
        assert secret.encode() not in on_disk, f"{secret!r} in nsa.db"  # ... its content is not

    # Treasury's outbox: the vendor notice names the product; on disk it does not.
    outbox = Outbox(worker_config.data_dir / "clearinghouse.db")
    subject, body = outbox.notice_text(case.case_id, NoticeKind.VENDOR_NOTICE.value, case.vendor_party)
    assert report.product in subject
    on_disk = raw_bytes(outbox.path)
    assert case.case_id.encode() in on_disk
    for secret in (report.product, report.location, "embargoed:"):
        assert secret.encode() not in on_disk, f"{secret!r} in clearinghouse.db"

    # A sealed value moved to another row does not open (bound to its table, column and row).
    with sqlite3.connect(outbox.path) as db:
        db.execute(
            "UPDATE notices SET subject = (SELECT body FROM notices WHERE case_id = ? AND kind = ?) "
            "WHERE case_id = ? AND kind = ?",
            (case.case_id, "vendor-notice", case.case_id, "vendor-notice"),
        )
    with pytest.raises(SealError):
        outbox.notice_text(case.case_id, NoticeKind.VENDOR_NOTICE.value, case.vendor_party)

    for name in ("nsa.db", "clearinghouse.db", "review.db", "treasury.db"):
        for path in worker_config.data_dir.glob(f"{name}*"):
            assert private(path), f"{path.name} is {oct(stat.S_IMODE(path.stat().st_mode))}"

    # Nor in the logs: no count of concerns, no CVSS score or reason, no vendor id.
    text = logs.text()
    assert "standards check" in text and "notice recorded" in text  # the lines are there
    assert '"concerns"' not in text
    assert case.vendor_party not in text and report.vendor not in text
    assert report.cvss_vector not in text and "CVSS" not in text
    assert all(r not in text for r in rationales)
    final = await status(client, rid)
    assert final.stage == Stage.RELEASED


async def test_the_codec_token_is_on_no_command_line_and_not_served_by_the_web_ui(tmp_path: Path) -> None:
    """Issue 8: the codec token was on the dev server's command line (`ps`) and served, unauthenticated,
    by the Web UI's /api/v1/settings. `up` now gives the local UI a loopback endpoint with no secret."""
    port, ui_port, codec_port = free_port(), free_port(), free_port()
    keys = KeyDirectory(tmp_path / "k")
    env = {
        **os.environ,
        "FRONTIER_REVIEW_DATA_DIR": str(tmp_path / "records"),
        "FRONTIER_REVIEW_KEYS_DIR": str(keys.path),
    }
    env.pop("FRONTIER_REVIEW_CODEC_TOKEN", None)
    async with running_up(
        "--db", str(tmp_path / "t.db"), "--port", str(port), "--ui-port", str(ui_port),
        "--codec-port", str(codec_port), "--watcher-port", str(free_port()), env=env, cwd=tmp_path,
    ) as up:  # fmt: skip
        seen = up.seen
        token = keys.codec_token()
        assert token not in seen
        # Every process on this machine, `up` and its dev server included.
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert token.encode() not in cmdline.read_bytes(), f"the token is on {cmdline.parent}'s command line"
            except OSError:
                continue  # a process that has just exited
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/api/v1/settings", timeout=10) as response:
            settings = response.read().decode()
        assert token not in settings
        endpoint = json.loads(settings)["Codec"]["Endpoint"]
        assert endpoint == f"http://localhost:{codec_port}/local-ui"
        # The local UI still decodes, from its own origin; nobody else gets anything without the token.
        codec = EncryptionCodec(keys.payload_keyring())
        sealed = codec.encrypt(Payload(metadata={"encoding": b"json/plain"}, data=b'"classified"'))
        body = json.dumps(
            {"payloads": [{"metadata": {k: _b64(v) for k, v in sealed.metadata.items()}, "data": _b64(sealed.data)}]}
        )
        async with aiohttp.ClientSession() as http:
            origin = {"Origin": f"http://localhost:{ui_port}", "Content-Type": "application/json"}
            async with http.post(f"{endpoint}/decode", data=body, headers=origin) as r:
                assert r.status == 200
            async with http.post(f"{endpoint}/decode", data=body) as r:
                assert r.status == 401
        # The workers' records are private (0600).
        for path in (tmp_path / "records").glob("*.db*"):
            assert private(path), path.name
        assert await up.interrupt() == 0


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
