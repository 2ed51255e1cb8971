"""Records the clearinghouse histories of the current version, in the directory named for its newest
`workflow.patched` id beside this file (NEWEST below); the first version's, in this directory
itself, are never recorded again (every recorded version must keep replaying: a change to the
workflow ships behind `workflow.patched`, with a newly recorded version beside the old ones):

    .venv/bin/python tests/histories/clearinghouse/record.py

On a dev server of its own, with throwaway development keys and no payload encryption (so that no
key of any kind lands in the repository), Treasury's worker under a policy of four messages per
run. Run 1: a report (opens a case), a duplicate of it by another party, a forged submission
(refused, and not counted toward the run's four), a report sent as the `report_vulnerability` update,
a third report, then continue-as-new. Run 2: the first report sent again (applied once: its first
receipt comes back). Written, in NEWEST's directory:
`run-1.json.gz`, `run-2.json.gz`, and `anchors.json`, the recording workers' trust anchors (public
keys only), which a replay pins to believe the attested activity results in them.

Versions: this directory (the first); `attested-treasury-keyring/` (Treasury's keyring signed and
verified, each run's keyring load an attested result).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from temporalio.client import Client  # noqa: E402

from api.clearinghouse import report  # noqa: E402
from domain.clearinghouse import (  # noqa: E402
    ATTESTED_KEYRING,
    CLEARINGHOUSE_ID,
    REPORT_VULNERABILITY,
    SUBMIT_REPORT,
    IntakeReceipt,
    ReportSubmission,
    VulnerabilityIntake,
)
from domain.policy import POLICY_DIR, load_policy  # noqa: E402
from domain.signatures import Signer  # noqa: E402
from domain.vulnerability import VulnerabilityReport  # noqa: E402
from infra.connection import plain_data_converter  # noqa: E402
from infra.devserver import start_dev_server  # noqa: E402
from infra.keys import KeyDirectory  # noqa: E402

SAMPLE = HERE.parents[2] / "examples" / "vulnerabilities" / "tls-heap-overflow.json"
# Where this recorder writes: the newest version's directory (never HERE, the first version's).
NEWEST = HERE / ATTESTED_KEYRING


def sample(product: str) -> VulnerabilityReport:
    base = VulnerabilityReport.model_validate_json(SAMPLE.read_text())
    return base.model_copy(update={"product": product, "sectors": []})


async def record() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="record-clearinghouse-"))
    keys = KeyDirectory(tmp / "keys")
    keys.init_development()
    os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(keys.path)
    library = tmp / "policies"
    library.mkdir()
    for file in POLICY_DIR.glob("*.toml"):
        shutil.copy(file, library / file.name)
    os.environ["FRONTIER_REVIEW_POLICIES_DIR"] = str(library)
    runs = tmp / "runs.toml"
    runs.write_text((POLICY_DIR / "eo-2026.toml").read_text().replace("reports_per_run = 1000", "reports_per_run = 4"))
    from worker import WorkerConfig, build_workers, run_workers  # after the environment is set

    server = await start_dev_server(log_file=tmp / "server.log")
    try:
        client = await Client.connect(
            server.client.service_client.config.target_host, data_converter=plain_data_converter()
        )
        config = WorkerConfig(data_dir=tmp / "records", policies_dir=library, clearinghouse_policy=str(runs))
        (tmp / "records").mkdir()
        stop = asyncio.Event()
        workers = asyncio.create_task(run_workers(build_workers(client, ["treasury"], config), stop))
        policy = load_policy("eo-2026")
        shieldsec, energy = keys.signer("partner:shieldsec"), keys.signer("operator:energy")
        first = VulnerabilityIntake(sender="partner:shieldsec", report=sample("TLSKit-recorded-1"))
        opened = await report(client, first, policy, shieldsec)
        duplicate = VulnerabilityIntake(sender="operator:energy", report=sample("TLSKit-recorded-1"))
        assert (await report(client, duplicate, policy, energy)).duplicate
        impostor = Signer("partner:shieldsec", Ed25519PrivateKey.generate())
        forged = impostor.sign(
            CLEARINGHOUSE_ID, REPORT_VULNERABILITY, first.model_copy(update={"message_id": "forged"})
        )
        handle = client.get_workflow_handle(CLEARINGHOUSE_ID)
        run_1 = (await handle.describe()).run_id
        await handle.signal(SUBMIT_REPORT, ReportSubmission(intake=forged, attempt=uuid.uuid4().hex))
        by_update = shieldsec.sign(
            CLEARINGHOUSE_ID,
            REPORT_VULNERABILITY,
            VulnerabilityIntake(sender="partner:shieldsec", report=sample("TLSKit-recorded-2")),
        )
        await handle.execute_update(REPORT_VULNERABILITY, by_update, id=by_update.message_id, result_type=IntakeReceipt)
        third = VulnerabilityIntake(sender="operator:energy", report=sample("TLSKit-recorded-3"))
        await report(client, third, policy, energy)
        assert await report(client, first, policy, shieldsec) == opened
        run_2 = (await handle.describe()).run_id
        assert run_2 != run_1
        assert NEWEST != HERE, "the first version's histories are never recorded again"
        NEWEST.mkdir(exist_ok=True)
        for name, run_id in (("run-1", run_1), ("run-2", run_2)):
            history = await client.get_workflow_handle(CLEARINGHOUSE_ID, run_id=run_id).fetch_history()
            (NEWEST / f"{name}.json.gz").write_bytes(gzip.compress(history.to_json().encode(), mtime=0))
        (NEWEST / "anchors.json").write_text(json.dumps(keys.trust_anchors(), indent=2, sort_keys=True) + "\n")
        await handle.terminate("recorded")
        stop.set()
        await workers
    finally:
        await server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(record())
