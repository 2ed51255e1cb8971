"""Chaos, seeded: reviews and clearinghouse reports run while worker processes are SIGKILLed, the
dev server (the test's own, on its own file) is killed and started again, Treasury's worker stays
away past its timeouts and the grant ledger is locked. Then the invariants: the right outcome for
every review, each grant once, every vulnerability finding delivered to exactly one case, every
notice once, the clearinghouse's totals exact; and every history replays.

The default run is small (a few reviews, well under a minute); `-m long` runs the full size.
FRONTIER_REVIEW_CHAOS_SEED picks another seed. The figures are printed (`-s`) and written to
test-output/chaos-<size>.json.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import signal
import sqlite3
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.worker import Replayer

from activities.clearinghouse import Outbox
from activities.store import RecordStore
from api.agency import AgencyClient, LabClient
from api.clearinghouse import CaseParty, case_status, clearinghouse_status
from api.errors import DuplicateDisclosure, Unavailable
from api.reviews import status
from api.server import transient
from domain import attestation
from domain.case import CaseStatus, NoticeKind
from domain.clearinghouse import CASE_WORKFLOW
from domain.policy import ClearinghousePolicy, Policy, load_policy
from domain.status import Outcome, ReviewStatus, Stage
from infra.connection import data_converter
from infra.keys import KeyDirectory
from tests.conftest import EXAMPLES, disclose, mythos, vulnerability
from tests.restartable import RestartableServer
from workflows.clearinghouse import Clearinghouse
from workflows.review import ModelReview
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase

T = TypeVar("T")
PROJECT = Path(__file__).resolve().parent.parent
TEST_OUTPUT = PROJECT / "test-output"
SEED = int(os.environ.get("FRONTIER_REVIEW_CHAOS_SEED", "11"))

# Worker processes, as agencies would host them (the four standards bodies share one here).
GROUPS = {"review": "review", "standards": "whitehouse,dod,dhs,commerce", "nsa": "nsa", "treasury": "treasury"}
EXPECTED = {
    "not_covered": Outcome.NOT_COVERED,
    "concluded": Outcome.CONCLUDED_EARLY,
    "elapsed": Outcome.WINDOW_ELAPSED,
    "withdrawn": Outcome.WITHDRAWN,
    "silent": Outcome.NOT_COVERED,
}


@dataclass(frozen=True)
class Size:
    name: str
    reviews: int
    reports: int
    kills: int
    span: float  # seconds over which reviews and reports start and faults strike
    outages: tuple[float, ...]  # the dev server's outages, seconds each (the last longer than the API's patience)


SMALL = Size("small", reviews=5, reports=3, kills=3, span=10, outages=(2,))
FULL = Size("full", reviews=60, reports=60, kills=30, span=150, outages=(20, 20, 75))


@dataclass
class Figures:
    seed: int
    size: str
    reviews: int = 0
    reports: int = 0
    findings_forwarded: int = 0
    duplicates: int = 0
    worker_kills: int = 0
    worker_restarts: int = 0
    server_restarts: int = 0
    agency_outages: int = 0
    ledger_locks: int = 0
    histories_replayed: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)


def seconds_policy(scenario: str) -> Policy:
    """Seconds-scale clocks; each scenario's own: a window that elapses only where it should."""
    return load_policy("demo").model_copy(
        update=dict(
            version=f"chaos-{scenario}.1",
            standards_check_timeout=timedelta(seconds=4),
            standards_check_attempt_timeout=timedelta(seconds=2),
            # Deadlines that should not pass are far off: a party's message may wait out an outage.
            determination_deadline=timedelta(seconds=5 if scenario == "silent" else 600),
            review_window=timedelta(seconds=4 if scenario == "elapsed" else 600),
            release_activity_timeout=timedelta(seconds=2),
            clearinghouse=ClearinghousePolicy(
                forward_timeout=timedelta(seconds=3),
                activity_timeout=timedelta(seconds=3),
                notice_timeout=timedelta(seconds=30),
            ),
        )
    )


async def steady(what: Callable[[], Awaitable[T]], patience: float = 240) -> T:
    """The driver's own patience with a server that is away (status polls, starts, results), and a
    party running its command again when the API gave up (`Unavailable`): same message, same id."""
    give_up = time.monotonic() + patience
    while True:
        try:
            return await what()
        except Unavailable:
            if time.monotonic() > give_up:
                raise
        except RPCError as e:
            if not transient(e) or time.monotonic() > give_up:
                raise
        except (ConnectionError, RuntimeError):  # a client whose server is restarting
            if time.monotonic() > give_up:
                raise
        await asyncio.sleep(0.3)


class Workers:
    """The worker processes; a dead one is started again unless it is held away on purpose."""

    def __init__(self, address: str, data_dir: Path, figures: Figures) -> None:
        self.address, self.data_dir, self.figures = address, data_dir, figures
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.away: set[str] = set()
        self.log = data_dir / "workers.log"

    async def start(self, group: str) -> None:
        env = {**os.environ, "TEMPORAL_CONFIG_FILE": "/nonexistent", "FRONTIER_REVIEW_LOG_LEVEL": "WARNING"}
        with open(self.log, "ab") as log:
            self.procs[group] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.chaos_worker", self.address, str(self.data_dir), GROUPS[group],
                cwd=PROJECT, env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

    async def kill(self, group: str) -> None:
        proc = self.procs.get(group)
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            self.figures.worker_kills += 1

    async def supervise(self) -> None:
        """Start a dead process again, at most every 2 s (one that cannot connect exits at once)."""
        started: dict[str, float] = {}
        while True:
            for group, proc in list(self.procs.items()):
                due = started.get(group, 0.0) + 2.0 <= time.monotonic()
                if proc.returncode is not None and group not in self.away and due:
                    started[group] = time.monotonic()
                    await self.start(group)
                    self.figures.worker_restarts += 1
            await asyncio.sleep(0.3)

    async def stop(self) -> None:
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
                await proc.wait()


@dataclass
class Review:
    scenario: str
    review_id: str = ""
    finding_id: str | None = None
    product: str | None = None


async def drive(client: Client, review: Review, delay: float) -> None:
    """One review, as its parties would take it, each step sent through whatever is failing."""
    await asyncio.sleep(delay)
    policy = seconds_policy(review.scenario)
    disclosure = mythos()

    async def start() -> str:
        try:
            return await disclose(client, disclosure, policy)
        except DuplicateDisclosure:  # our own earlier attempt got through before the reply was lost
            return f"review-anthropic-mythos-{disclosure.model_version}"

    review.review_id = rid = await steady(start)
    await at_stage(client, rid, Stage.AWAITING_DETERMINATION, Stage.RELEASED)
    nsa = AgencyClient(client, "nsa")
    if review.scenario == "not_covered":
        await steady(lambda: nsa.determine(rid, covered=False, rationale="chaos: not covered"))
    elif review.scenario == "withdrawn":
        await steady(lambda: LabClient(client).withdraw(rid, "chaos: the lab withdraws"))
    elif review.scenario in ("concluded", "elapsed"):
        agency = "dod" if review.scenario == "concluded" else "dhs"
        await steady(lambda: nsa.determine(rid, covered=True, agencies=[agency], rationale="chaos: covered"))
        await at_stage(client, rid, Stage.UNDER_REVIEW, Stage.RELEASING, Stage.RELEASED)
        if review.scenario == "concluded":
            details = vulnerability()
            finder = AgencyClient(client, agency)
            s = await steady(
                lambda: finder.submit_finding(
                    rid, kind="vulnerability", severity="critical", summary="chaos finding", vulnerability=details
                )
            )
            review.finding_id, review.product = s.message_id, details.product
            await steady(lambda: finder.conclude(rid))


async def at_stage(client: Client, rid: str, *stages: Stage) -> None:
    while (await steady(lambda: status(client, rid))).stage not in stages:
        await asyncio.sleep(0.2)


async def closed(client: Client, rid: str, timeout: float) -> ReviewStatus:
    give_up = time.monotonic() + timeout
    while True:
        description = await steady(lambda: client.get_workflow_handle(rid).describe())
        if description.status == WorkflowExecutionStatus.COMPLETED:
            return await steady(lambda: status(client, rid))
        if description.status != WorkflowExecutionStatus.RUNNING or time.monotonic() > give_up:
            s = await steady(lambda: status(client, rid))
            raise AssertionError(f"{rid}: {description.status.name} at {s.stage}, pending {s.clearinghouse_pending}")
        await asyncio.sleep(0.5)


async def faults(server: RestartableServer, workers: Workers, ledger: Path, size: Size, rng: random.Random) -> None:
    """The bad day, on a seeded schedule: kills, a server restart, Treasury away, a locked ledger."""
    figures = workers.figures
    schedule: list[tuple[float, str]] = [(rng.uniform(0.5, size.span), "kill") for _ in range(size.kills)]
    schedule += [(rng.uniform(0.2, 0.8) * size.span, f"server:{seconds}") for seconds in size.outages]
    schedule += [(rng.uniform(0.1, 0.4) * size.span, "treasury")]
    schedule += [(rng.uniform(0.5, 0.9) * size.span, "ledger")]
    began = time.monotonic()
    for at, fault in sorted(schedule):
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        if fault == "kill":
            await workers.kill(rng.choice(sorted(set(GROUPS) - workers.away)))
        elif fault.startswith("server:"):
            await server.kill()
            await asyncio.sleep(float(fault.split(":")[1]))
            await server.start()
            figures.server_restarts += 1
        elif fault == "treasury":
            asyncio.create_task(agency_away(workers, "treasury", 7.0))  # past forward_timeout and its check's
        elif fault == "ledger":
            asyncio.create_task(lock_ledger(ledger, 4.0, figures))


async def agency_away(workers: Workers, group: str, seconds: float) -> None:
    workers.away.add(group)
    await workers.kill(group)
    workers.figures.agency_outages += 1
    await asyncio.sleep(seconds)
    workers.away.discard(group)


async def lock_ledger(path: Path, seconds: float, figures: Figures) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=10)
    db.execute("BEGIN EXCLUSIVE")
    figures.ledger_locks += 1
    try:
        await asyncio.sleep(seconds)
    finally:
        db.rollback()
        db.close()


def approved_partners() -> set[str]:
    registry = tomllib.loads((EXAMPLES / "registry.toml").read_text())
    return {p["partner_id"] for p in registry["party"] if p.get("status", "approved") == "approved"}


async def check(
    client: Client, data_dir: Path, reviews: list[Review], reports: dict[str, str], figures: Figures
) -> None:
    """Every invariant, each violation written down (not stopping at the first)."""
    bad = figures.violations.append
    ledger = RecordStore(data_dir / "review.db")
    approved = approved_partners()
    for r in reviews:
        if not r.review_id:
            continue  # never disclosed: already a violation
        try:
            s = await closed(client, r.review_id, timeout=90)
        except AssertionError as e:
            bad(str(e))
            continue
        if s.outcome != EXPECTED[r.scenario]:
            bad(f"{r.review_id} ({r.scenario}): outcome {s.outcome}, expected {EXPECTED[r.scenario].value}")
        if r.scenario == "silent" and not s.determination_by_default:
            bad(f"{r.review_id}: silent NSA but no default determination")
        granted = sorted(g.partner_id for g in ledger.grants(r.review_id))
        if granted != sorted(s.partners_granted) or len(set(granted)) != len(granted):
            bad(f"{r.review_id}: ledger {granted} vs status {s.partners_granted}")
        partners = {p.partner_id for p in mythos().partners}
        if s.stage == Stage.RELEASED and set(s.partners_granted) != partners & approved:
            bad(f"{r.review_id}: granted {s.partners_granted}, expected {sorted(partners & approved)}")
        if r.finding_id is not None:
            if s.clearinghouse_pending or s.clearinghouse_refused or r.finding_id not in s.clearinghouse_cases:
                bad(f"{r.review_id}: finding not delivered ({s.clearinghouse_pending or s.clearinghouse_refused})")
            else:
                reports[r.product or ""] = s.clearinghouse_cases[r.finding_id]
                figures.findings_forwarded += 1
    # One case per vulnerability, each vendor notified once, totals exact.
    cases: dict[str, list[str]] = {}
    async for wf in client.list_workflows(f'WorkflowType = "{CASE_WORKFLOW}"'):
        view = await steady(lambda wf=wf: case_status(client, wf.id))
        cases.setdefault(view.report.product, []).append(view.case_id)
    for product, case_id in reports.items():
        if cases.get(product) != [case_id]:
            bad(f"{product}: cases {cases.get(product)}, reported as {case_id}")
    outbox = Outbox(data_dir / "clearinghouse.db")
    for case_ids in cases.values():
        for case_id in case_ids:
            view = await notified(client, case_id)
            sent = Counter((kind, recipient) for kind, recipient, _ in outbox.notices(case_id))
            vendor = sent[(NoticeKind.VENDOR_NOTICE.value, view.vendor_party)]
            if vendor != 1 or any(n != 1 for n in sent.values()):
                bad(f"{case_id}: notices {dict(sent)}")
    totals = await steady(lambda: clearinghouse_status(client))
    if totals.reports != len(reports) + figures.duplicates or totals.cases_opened != len(cases):
        bad(f"clearinghouse totals {totals.reports} reports / {totals.cases_opened} cases, sent {len(reports)} + "
            f"{figures.duplicates} duplicates for {len(reports)} vulnerabilities")  # fmt: skip


async def notified(client: Client, case_id: str):
    for _ in range(150):
        view = await steady(lambda: case_status(client, case_id))
        if view.status not in (CaseStatus.RECEIVED, CaseStatus.VALIDATED, CaseStatus.TRIAGED):
            return view
        await asyncio.sleep(0.2)
    return view


async def replay_all(client: Client, figures: Figures) -> None:
    # Replay believes what the workers believed: the trust anchors of the same key directory.
    attestation.pin(KeyDirectory().trust_anchors())
    replayer = Replayer(
        workflows=[ModelReview, Clearinghouse, VulnerabilityCase],
        data_converter=data_converter(KeyDirectory().payload_keyring()),
        workflow_runner=workflow_runner(),
    )

    async def histories():
        async for history in client.list_workflows("").map_histories():
            figures.histories_replayed += 1
            yield history

    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)
    for run_id, failure in results.replay_failures.items():
        figures.violations.append(f"replay of run {run_id}: {failure}")


async def chaos(tmp_path: Path, size: Size) -> Figures:
    rng = random.Random(SEED)
    figures = Figures(seed=SEED, size=size.name)
    began = time.monotonic()
    server = RestartableServer(tmp_path)
    await server.start()
    client = await server.client()
    # The parties' own client gives up on an unreachable server after a second (the SDK's own
    # retries): every outage longer than that is the API's to ride out, or the party's to resend.
    parties = await server.client(impatient=True)
    data_dir = tmp_path / "records"
    data_dir.mkdir()
    workers = Workers(server.address, data_dir, figures)
    for group in GROUPS:
        await workers.start(group)
    supervisor = asyncio.create_task(workers.supervise())
    scenarios = list(EXPECTED)
    reviews = [Review(scenarios[i % len(scenarios)]) for i in range(size.reviews)]
    rng.shuffle(reviews)
    reports: dict[str, str] = {}
    try:
        bad_day = asyncio.create_task(faults(server, workers, data_dir / "review.db", size, rng))
        drivers = [drive(parties, r, rng.uniform(0, size.span * 0.6)) for r in reviews]
        reporters = [report(parties, reports, rng.uniform(0, size.span), figures) for _ in range(size.reports)]
        # A party's call that fails outright (not merely slowly) is a violation too.
        for outcome in await asyncio.gather(*drivers, *reporters, return_exceptions=True):
            if isinstance(outcome, BaseException):
                figures.violations.append(f"a party's call failed: {type(outcome).__name__}: {outcome}")
        await bad_day
        figures.reviews, figures.reports = len(reviews), size.reports
        await check(client, data_dir, reviews, reports, figures)
        await replay_all(client, figures)
    finally:
        supervisor.cancel()
        await workers.stop()
        await server.stop()
    figures.seconds = round(time.monotonic() - began, 1)
    return figures


async def report(client: Client, reports: dict[str, str], delay: float, figures: Figures) -> None:
    """A partner's report; every other one also reported by an operator (a duplicate, one case)."""
    await asyncio.sleep(delay)
    policy = load_policy("demo")
    details = vulnerability(sectors=["energy"])
    receipt = await steady(lambda: CaseParty(client, "partner:shieldsec").report(details, policy))
    reports[details.product] = receipt.case_id
    if len(reports) % 2 == 0:
        again = await steady(lambda: CaseParty(client, "operator:energy").report(details, policy))
        figures.duplicates += 1
        if again.case_id != receipt.case_id or not again.duplicate:
            figures.violations.append(f"{details.product}: duplicate went to {again.case_id}, not {receipt.case_id}")


def record(figures: Figures) -> None:
    TEST_OUTPUT.mkdir(exist_ok=True)
    text = json.dumps(asdict(figures), indent=2)
    (TEST_OUTPUT / f"chaos-{figures.size}.json").write_text(text + "\n")
    print(f"\nchaos {figures.size}: {text}")


async def run(tmp_path: Path, size: Size, caplog: pytest.LogCaptureFixture) -> None:
    figures = await chaos(tmp_path, size)
    gc.collect()
    await asyncio.sleep(0)
    # A reporter's stderr stays clean: no "Future exception was never retrieved" per failed attempt.
    stray = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    figures.violations += [line.splitlines()[0] for line in stray]
    record(figures)
    assert not figures.violations, figures.violations


async def test_chaos_small(tmp_path: Path, keys: KeyDirectory, caplog: pytest.LogCaptureFixture) -> None:
    await run(tmp_path, SMALL, caplog)


@pytest.mark.long
async def test_chaos_full(tmp_path: Path, keys: KeyDirectory, caplog: pytest.LogCaptureFixture) -> None:
    await run(tmp_path, FULL, caplog)
