"""One review, one report, one parked workflow: driven the same way on the project and on bare
Temporal, so the only difference measured is what runs on the worker and the server.

Both sides wait for the determination stage by polling their status query every POLL seconds,
send each message as an update and time it as the caller sees it, then wait for the result.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api import waiting
from bench import bare

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
POLL = 0.05
T = TypeVar("T")


@dataclass
class Outcome:
    """What one review (or report) cost, as its caller saw it."""

    workflow_id: str
    seconds: float
    updates: list[float] = field(default_factory=list)


async def until(probe: Callable[[], Awaitable[T]], ready: Callable[[T], bool], timeout: float = 120) -> T:
    return await waiting.until(probe, ready, timeout=timeout, interval=POLL)


async def timed(updates: list[float], call: Awaitable[T]) -> T:
    start = time.perf_counter()
    result = await call
    updates.append(time.perf_counter() - start)
    return result


async def history(client: Client, workflow_id: str) -> tuple[int, int]:
    """Events and bytes of a workflow's history (as the server stores it: encoded payloads)."""
    h = await client.get_workflow_handle(workflow_id).fetch_history()
    return len(h.events), sum(e.ByteSize() for e in h.events)


class ProjectSide:
    """The project as its users run it: api/ calls, signed messages, the encrypted converter."""

    name = "project"

    def __init__(self, client: Client, policy_name: str = "demo") -> None:
        # Imported here: `bench.bare` (the bare worker) must not load the project.
        from api.agency import AgencyClient
        from domain.disclosure import Disclosure
        from domain.policy import load_policy
        from infra.keys import KeyDirectory

        self.client = client
        self.policy = load_policy(policy_name)
        self.keys = KeyDirectory()
        self.public = self.keys.public_keys()
        self.base = Disclosure.model_validate_json((EXAMPLES / "small-assistant.json").read_text())
        self.nsa = AgencyClient(client, "nsa", self.keys.signer("nsa"))
        self.dod = AgencyClient(client, "dod", self.keys.signer("dod"))
        self.reporter = self.keys.signer("dod")
        self._reports: dict[int, object] = {}

    async def park(self) -> Outcome:
        """Disclose one review and wait until it awaits the NSA's determination."""
        from api.reviews import disclose
        from domain.review import STATUS_QUERY
        from domain.status import ReviewStatus, Stage

        start = time.perf_counter()
        disclosure = self.base.model_copy(update={"model_version": f"bench-{uuid.uuid4().hex[:12]}"})
        rid = await disclose(self.client, disclosure, self.policy, self.public)
        handle = self.client.get_workflow_handle(rid)
        await until(
            lambda: handle.query(STATUS_QUERY, result_type=ReviewStatus),
            lambda s: s.stage == Stage.AWAITING_DETERMINATION,
        )
        return Outcome(rid, time.perf_counter() - start)

    async def determine(self, parked: Outcome, covered: bool) -> Outcome:
        from domain.status import ReviewStatus, Stage

        rid = parked.workflow_id
        await timed(
            parked.updates,
            self.nsa.determine(
                rid, covered=covered, agencies=["dod"] if covered else [], rationale="benchmark determination"
            ),
        )
        if covered:
            await timed(
                parked.updates,
                self.dod.submit_finding(rid, kind="capability", severity="low", summary="benchmark finding"),
            )
            await timed(parked.updates, self.dod.conclude(rid, "benchmark conclusion"))
        final = await self.client.get_workflow_handle(rid, result_type=ReviewStatus).result()
        if final.stage != Stage.RELEASED or len(final.partners_granted) != 1:
            raise AssertionError(f"{rid} ended at {final.stage} with grants {final.partners_granted}")
        return parked

    async def review(self, covered: bool) -> Outcome:
        start = time.perf_counter()
        parked = await self.park()
        await self.determine(parked, covered)
        parked.seconds = time.perf_counter() - start
        return parked

    async def report(self, index: int, duplicate_of: int | None = None) -> Outcome:
        """One vulnerability report into the clearinghouse (signed, update-with-start)."""
        from api.clearinghouse import report
        from domain.clearinghouse import VulnerabilityIntake
        from domain.vulnerability import VulnerabilityReport

        if duplicate_of is None:
            base = VulnerabilityReport.model_validate_json(
                (EXAMPLES / "vulnerabilities" / "tls-heap-overflow.json").read_text()
            )
            vuln = base.model_copy(update={"product": f"Bench-{uuid.uuid4().hex[:12]}"})
            self._reports[index] = vuln
        else:
            vuln = self._reports[duplicate_of]
        start = time.perf_counter()
        intake = VulnerabilityIntake(sender="dod", report=vuln)
        receipt = await report(self.client, intake, self.policy, self.reporter)
        if receipt.duplicate != (duplicate_of is not None):
            raise AssertionError(f"report {index}: duplicate={receipt.duplicate}")
        return Outcome(receipt.case_id, time.perf_counter() - start)

    async def case_parked(self, case_id: str) -> None:
        from domain.case import EMBARGO_STATUSES, CaseState
        from domain.clearinghouse import CASE_STATUS_QUERY

        handle = self.client.get_workflow_handle(case_id)
        await until(
            lambda: handle.query(CASE_STATUS_QUERY, result_type=CaseState), lambda v: v.status in EMBARGO_STATUSES
        )


class BareSide:
    """The same calls on bare Temporal: plain dicts, the client's converter (the default one; the
    bare+codec side's client adds the project's codec), under `names`' queues and ids."""

    name = "bare"

    def __init__(
        self,
        client: Client,
        determination_deadline_s: float = 30,
        window_s: float = 30,
        names: bare.Names = bare.PLAIN,
    ) -> None:
        self.client = client
        self.names = names
        self.deadline_s = determination_deadline_s
        self.window_s = window_s
        self._reports: dict[int, dict] = {}

    async def park(self) -> Outcome:
        start = time.perf_counter()
        rid = self.names.review_id(uuid.uuid4().hex)
        handle = await self.client.start_workflow(
            bare.BareReview.run,
            bare.BareInput(rid, ["openpatch"], self.deadline_s, self.window_s),
            id=rid,
            task_queue=self.names.review_queue,
        )
        await until(lambda: handle.query(bare.BareReview.status), lambda s: s["stage"] == "AWAITING_DETERMINATION")
        return Outcome(rid, time.perf_counter() - start)

    async def determine(self, parked: Outcome, covered: bool) -> Outcome:
        handle = self.client.get_workflow_handle(parked.workflow_id)
        determination = {"sender": "nsa", "covered": covered, "agencies": ["dod"] if covered else []}
        await timed(parked.updates, handle.execute_update(bare.BareReview.record_determination, determination))
        if covered:
            finding = {"sender": "dod", "kind": "capability", "severity": "low", "summary": "benchmark finding"}
            await timed(parked.updates, handle.execute_update(bare.BareReview.submit_finding, finding))
            await timed(parked.updates, handle.execute_update(bare.BareReview.conclude_review, {"sender": "dod"}))
        final = await handle.result()
        if final["stage"] != "RELEASED":
            raise AssertionError(f"{parked.workflow_id} ended at {final['stage']}")
        return parked

    async def review(self, covered: bool) -> Outcome:
        start = time.perf_counter()
        parked = await self.park()
        await self.determine(parked, covered)
        parked.seconds = time.perf_counter() - start
        return parked

    async def report(self, index: int, duplicate_of: int | None = None, embargo_s: float = 45 * 86400) -> Outcome:
        if duplicate_of is None:
            fingerprint = uuid.uuid4().hex
            self._reports[index] = {"fingerprint": fingerprint, "product": f"Bench-{fingerprint[:12]}"}
        body = {**self._reports[duplicate_of if duplicate_of is not None else index], "sender": "dod"}
        start = time.perf_counter()
        while True:
            operation = WithStartWorkflowOperation(
                bare.BareClearinghouse.run,
                bare.BareClearinghouseInput(embargo_s=embargo_s),
                id=self.names.clearinghouse_id,
                task_queue=self.names.clearinghouse_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            try:
                receipt = await self.client.execute_update_with_start_workflow(
                    bare.BareClearinghouse.report_vulnerability,
                    body,
                    start_workflow_operation=operation,
                    id=uuid.uuid4().hex,
                )
                break
            except WorkflowUpdateFailedError as e:  # the run is full: it continues as new
                if not (isinstance(e.cause, ApplicationError) and e.cause.type == bare.RUN_IS_FULL):
                    raise
            except RPCError as e:  # the server's cap on updates in flight
                if e.status != RPCStatusCode.RESOURCE_EXHAUSTED:
                    raise
            await asyncio.sleep(POLL)
        if receipt["duplicate"] != (duplicate_of is not None):
            raise AssertionError(f"bare report {index}: duplicate={receipt['duplicate']}")
        return Outcome(receipt["case_id"], time.perf_counter() - start)

    async def case_parked(self, case_id: str) -> None:
        handle = self.client.get_workflow_handle(case_id)
        await until(lambda: handle.query(bare.BareCase.view), lambda v: v["status"] == "VENDOR_NOTIFIED")
