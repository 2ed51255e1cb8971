"""Each party on its own host, on one machine: Linux network namespaces and veth pairs.

The Temporal dev server and the mutual-TLS proxy (deploy/nginx) run in the server's
namespace; the review office's worker and each agency's worker run in namespaces of their
own, each reaching the server over its own link, through an envconfig profile with its own
client certificate, and holding only its own standard and signing key (a directory of its
own). This test runs in the root namespace, over a link of its own, as the operators.

Skipped, with the reason logged, where the kernel or the user may not make namespaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from api.agency import AgencyClient
from domain.agencies import REVIEW_TASK_QUEUE, STANDARDS_BODIES, Agency
from domain.messages import Verdict
from domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from domain.status import Stage
from infra.connection import Target, connect
from infra.devserver import temporal_cli_path
from infra.keys import KeyDirectory, party_file_name
from tests.conftest import EXAMPLES, disclose, mythos, quick_policy, wait_stage
from tests.grpc_proxy import OPERATOR_CN, GrpcProxy
from tests.netns import Link, Topology, ensure_netns_allowed, remove_leftovers
from tests.pki import CertificateAuthority, envconfig_profile
from worker import REVIEW

PROJECT = Path(__file__).resolve().parent.parent
PROXY_PORT = 7443
FRONTEND = "127.0.0.1:7233"  # inside the server's namespace only


@dataclass
class Host:
    role: str  # `review` or an agency id
    namespace: str
    link: Link
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def identity_prefix(self) -> str:
        return f"{self.process.pid}@"  # the SDK's worker identity is pid@hostname

    def log(self) -> str:
        return (self.directory / "worker.log").read_text(errors="replace")


@dataclass
class Cluster:
    topology: Topology
    operator: Client
    hosts: dict[str, Host]


def host_directory(base: Path, role: str, keys: KeyDirectory) -> Path:
    """What this party's host holds: the payload keyring, everyone's public keys and the pinned
    trust anchors (public), its own signing key and (a standards body) its own standard. No other
    party's secret."""
    home = base / role
    (home / "keys" / "signing").mkdir(parents=True)
    shutil.copy(keys.payload_file, home / "keys" / "payload-keys.json")
    shutil.copy(keys.public_file, home / "keys" / "public-keys.json")
    shutil.copy(keys.anchors_file, home / "keys" / "trust-anchors.json")
    own_key = keys.signing_file(role)
    if own_key.is_file():
        shutil.copy(own_key, home / "keys" / "signing" / f"{party_file_name(role)}.pem")
    (home / "standards").mkdir()
    if role in {b.value for b in STANDARDS_BODIES}:
        shutil.copy(EXAMPLES / "standards" / f"{role}.toml", home / "standards" / f"{role}.toml")
    (home / "data").mkdir()
    return home


def start_worker(topology: Topology, ns: str, role: str, home: Path, profile: Path) -> subprocess.Popen[bytes]:
    args = ["--review-only"] if role == REVIEW else ["--agency", role]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "TEMPORAL_CONFIG_FILE": str(profile),
        "FRONTIER_REVIEW_KEYS_DIR": str(home / "keys"),
        "FRONTIER_REVIEW_STANDARDS_DIR": str(home / "standards"),
        "FRONTIER_REVIEW_DATA_DIR": str(home / "data"),
        # The review office's policy library (the session's: tests file their own policies there).
        "FRONTIER_REVIEW_POLICIES_DIR": os.environ["FRONTIER_REVIEW_POLICIES_DIR"],
    }
    with open(home / "worker.log", "wb") as log:
        return subprocess.Popen(
            [*topology.exec_prefix(ns), sys.executable, str(PROJECT / "worker.py"), "--profile", role, *args],
            cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def pollers(client: Client, queue: str, kind: int) -> dict[str, datetime]:
    """Who polls `queue`, and when each last did (the server's view)."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind)
    )
    return {p.identity: p.last_access_time.ToDatetime(tzinfo=UTC) for p in described.pollers}


async def wait_polling(client: Client, queue: str, kind: int, host: Host, since: datetime, timeout: float) -> None:
    """Until the host's worker has polled `queue` after `since`."""
    deadline = time.monotonic() + timeout
    while True:
        seen = await pollers(client, queue, kind)
        if any(i.startswith(host.identity_prefix) and t > since for i, t in seen.items()):
            return
        if host.process.poll() is not None:
            raise AssertionError(f"{host.role}'s worker exited:\n{host.log()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{host.role}'s worker never polled {queue}; pollers: {seen}\n{host.log()[-2000:]}")
        await asyncio.sleep(0.3)


@pytest_asyncio.fixture(scope="module")
async def cluster(keys: KeyDirectory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    ensure_netns_allowed()
    remove_leftovers()
    base = tmp_path_factory.mktemp("hosts")
    topology = Topology()
    processes: list[subprocess.Popen[bytes]] = []
    proxy: GrpcProxy | None = None
    try:
        server_ns = topology.namespace("server")
        ca = CertificateAuthority(base / "ca", "frontier-review test CA")
        # The operators' link from the root namespace, where this test runs.
        operator_link = topology.link(None, server_ns, topology.root_subnet(), f"frmh{topology.pid}r", "eth-ops")
        sa_args = [a for k in ALL_SEARCH_ATTRIBUTES for a in ("--search-attribute", f"{k.name}={k._metadata_type}")]
        with open(base / "dev-server.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        *topology.exec_prefix(server_ns),
                        temporal_cli_path(),
                        "server",
                        "start-dev",
                        "--headless",
                        "--ip",
                        "127.0.0.1",
                        "--port",
                        FRONTEND.split(":")[1],
                        "--log-level",
                        "warn",
                        *sa_args,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            )
        proxy = GrpcProxy(
            base / "nginx", ca, listen_host="0.0.0.0", listen_port=PROXY_PORT, upstream=FRONTEND, netns=server_ns
        )
        processes.append(proxy.process)
        profiles = base / "profiles"
        operator_profile = envconfig_profile(
            profiles / "operator.toml", OPERATOR_CN, address=f"{operator_link.far_ip}:{PROXY_PORT}",
            ca=ca.cert, client=ca.issue(OPERATOR_CN), namespace="default",
        )  # fmt: skip
        hosts: dict[str, Host] = {}
        for index, role in enumerate([REVIEW, *(a.value for a in Agency)], start=1):
            ns = topology.namespace(role)
            link = topology.link(server_ns, ns, f"10.0.{index}.0/24", f"eth-{role}", "eth0")
            home = host_directory(base, role, keys)
            profile = envconfig_profile(
                home / "temporal.toml", role, address=f"{link.near_ip}:{PROXY_PORT}",
                ca=ca.cert, client=ca.issue(role), namespace="default",
            )  # fmt: skip
            hosts[role] = Host(role, ns, link, home, start_worker(topology, ns, role, home, profile))
            processes.append(hosts[role].process)

        operator = await connect_when_up(operator_profile, timeout=90)
        started = datetime.now(UTC) - timedelta(minutes=1)
        for role, host in hosts.items():
            queue = REVIEW_TASK_QUEUE if role == REVIEW else Agency(role).task_queue
            kind = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW if role == REVIEW else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
            await wait_polling(operator, queue, kind, host, started, timeout=90)
        yield Cluster(topology, operator, hosts)
    finally:
        for process in reversed(processes):
            stop(process)
        topology.close()


async def connect_when_up(profile: Path, timeout: float) -> Client:
    """The operators' client, through the proxy, once the server behind it answers."""
    os.environ["TEMPORAL_CONFIG_FILE"] = str(profile)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client = await connect(Target(profile=OPERATOR_CN))
                await client.count_workflows()
                return client
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        del os.environ["TEMPORAL_CONFIG_FILE"]


def activity_events(history, activity_id: str) -> dict[str, list]:
    """The scheduled / started / completed / timed-out events of one activity id."""
    scheduled_ids = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_id == activity_id
    }
    found: dict[str, list] = {"scheduled": [], "started": [], "completed": [], "timed_out": []}
    for e in history.events:
        if e.event_id in scheduled_ids:
            found["scheduled"].append(e)
        elif e.HasField("activity_task_started_event_attributes"):
            if e.activity_task_started_event_attributes.scheduled_event_id in scheduled_ids:
                found["started"].append(e)
        elif e.HasField("activity_task_completed_event_attributes"):
            if e.activity_task_completed_event_attributes.scheduled_event_id in scheduled_ids:
                found["completed"].append(e)
        elif e.HasField("activity_task_timed_out_event_attributes"):
            if e.activity_task_timed_out_event_attributes.scheduled_event_id in scheduled_ids:
                found["timed_out"].append(e)
    return found


async def test_a_review_runs_to_release_across_hosts(cluster: Cluster) -> None:
    # What each host holds: its own standard and its own signing key, nothing of the others'.
    for role, host in cluster.hosts.items():
        assert sorted(p.name for p in (host.directory / "standards").iterdir()) == (
            [f"{role}.toml"] if role in {b.value for b in STANDARDS_BODIES} else []
        )
        assert [p.name for p in (host.directory / "keys" / "signing").iterdir()] == [f"{role}.pem"]

    review_id = await disclose(cluster.operator, mythos(), quick_policy())
    await wait_stage(cluster.operator, review_id, Stage.AWAITING_DETERMINATION, timeout=60)
    nsa = cluster.operator  # the NSA's message is signed with its key; it travels on the operators' link
    await AgencyClient(nsa, "nsa").determine(review_id, covered=False, rationale="not covered")
    released = await wait_stage(cluster.operator, review_id, Stage.RELEASED, timeout=60)
    assert {v.agency for v in released.standards} == set(STANDARDS_BODIES)
    assert all(v.verdict != Verdict.NO_RESPONSE for v in released.standards)
    assert released.partners_granted

    # Each body's check ran on that body's host, and nowhere else.
    history = await cluster.operator.get_workflow_handle(review_id).fetch_history()
    for body in STANDARDS_BODIES:
        started = activity_events(history, f"standards-{body.value}")["started"]
        assert len(started) == 1
        identity = started[0].activity_task_started_event_attributes.identity
        assert identity.startswith(cluster.hosts[body.value].identity_prefix), (body, identity)
        assert cluster.hosts[body.value].log().count(review_id) == 1  # its worker logged the one check


async def test_an_agency_cut_off_during_the_check_is_no_response_and_nothing_runs_twice(cluster: Cluster) -> None:
    dod = cluster.hosts[Agency.DOD.value]
    timeout = timedelta(seconds=6)
    policy = quick_policy(standards_check_timeout=timeout, standards_check_attempt_timeout=timedelta(seconds=3))

    cluster.topology.set_link(dod.link, up=False)
    try:
        review_id = await disclose(cluster.operator, mythos(), policy)
        checking = await wait_stage(cluster.operator, review_id, Stage.STANDARDS_CHECK, Stage.AWAITING_DETERMINATION)
        assert checking.stage == Stage.STANDARDS_CHECK
        determining = await wait_stage(cluster.operator, review_id, Stage.AWAITING_DETERMINATION, timeout=60)
    finally:
        cluster.topology.set_link(dod.link, up=True)
    restored = datetime.now(UTC)
    verdicts = {v.agency: v for v in determining.standards}
    assert verdicts[Agency.DOD].verdict == Verdict.NO_RESPONSE
    assert "no answer within" in verdicts[Agency.DOD].rationale
    assert all(verdicts[b].verdict != Verdict.NO_RESPONSE for b in STANDARDS_BODIES if b != Agency.DOD)

    # DoD's worker comes back on its own, and polls again; whatever reached it late is not applied.
    await wait_polling(
        cluster.operator, Agency.DOD.task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, dod, restored, timeout=90
    )
    await AgencyClient(cluster.operator, "nsa").determine(review_id, covered=False, rationale="not covered")
    released = await wait_stage(cluster.operator, review_id, Stage.RELEASED, timeout=60)

    history = await cluster.operator.get_workflow_handle(review_id).fetch_history()
    for body in STANDARDS_BODIES:
        events = activity_events(history, f"standards-{body.value}")
        assert len(events["scheduled"]) == 1, body
        if body == Agency.DOD:
            assert events["completed"] == [] and len(events["timed_out"]) == 1
        else:
            assert len(events["completed"]) == 1, body
    assert [v.agency for v in released.standards].count(Agency.DOD) == 1
    assert {v.agency: v.verdict for v in released.standards}[Agency.DOD] == Verdict.NO_RESPONSE
    assert len(released.partners_granted) == len(set(released.partners_granted))
    for partner in {p.partner_id for p in mythos().partners}:
        grants = activity_events(history, f"grant-{partner}")
        assert len(grants["completed"]) <= 1, partner
    # Attempts the server handed to DoD's dead connection can still reach the worker when the
    # link returns (TCP retransmits them), and it runs them then; seen here: both attempts, run
    # once each, their results refused by the server (the activity had timed out), as the history
    # above shows. No attempt runs twice.
    attempts = [json.loads(line)["attempt"] for line in dod.log().splitlines() if review_id in line]
    assert len(attempts) == len(set(attempts)), attempts
