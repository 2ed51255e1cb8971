"""Treasury's clearinghouse over the SDK: report a vulnerability, follow its case, and the
messages a vendor or an operator sends into a case.

    from api.clearinghouse import VendorClient, report
    shieldsec = KeyDirectory().signer("partner:shieldsec")
    receipt = await report(client, VulnerabilityIntake(sender="partner:shieldsec", report=...), policy, shieldsec)
    await VendorClient(client, "acme").fix_ready(receipt.case_id, fixed_versions=["2.4.1"])

Two functions send messages, `report` (signal-with-start on the clearinghouse, then a look-up of
its receipt) and `send` (an update on a case); every call below goes through one of them. Each
signs the message with the sender's key, for that workflow and that update.
"""

from __future__ import annotations

import asyncio
import random
import uuid
import weakref
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.clearinghouse_squatter import LOOK_AFTER, hand_in_again
from api.errors import Rejected, ReviewError, Unavailable
from api.idempotency import keyed
from api.sending import TRANSIENT_REFUSALS, Recipient, deliver, refresh_keys
from api.server import describe_or_none, query_running, transient
from domain import search_attributes as sa
from domain.case import CaseState, CaseStatus, ExploitationObserved, ExtensionRequest, FixReady, PatchDeployed
from domain.clearinghouse import (
    CASE_STATUS_QUERY,
    CASE_WORKFLOW,
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_INTAKE_QUEUE,
    CLEARINGHOUSE_STATUS_QUERY,
    CLEARINGHOUSE_TASK_TIMEOUT,
    CLEARINGHOUSE_WORKFLOW,
    EXPLOITATION_OBSERVED,
    FIX_READY,
    PATCH_DEPLOYED,
    RECEIPTS_QUERY,
    REPORT_VULNERABILITY,
    REQUEST_EXTENSION,
    SUBMIT_REPORT,
    ClearinghouseState,
    IntakeReceipt,
    ReceiptLookup,
    ReportOutcome,
    ReportSubmission,
    VulnerabilityIntake,
)
from domain.inputs import MAX_MESSAGE_BYTES, round_trips
from domain.messages import Message
from domain.policy import Policy
from domain.sectors import Sector
from domain.signatures import UNKNOWN_SIGNER, Signer
from domain.vulnerability import VulnerabilityReport, is_party, operator_party, parse_party, vendor_party
from infra.keys import KeyDirectory

T = TypeVar("T")
# A report: how long it is handed in again while it waits (seconds), and how long one hand-in may
# wait untaken before it is handed in again. Under a burst a report waits its turn behind the
# others handed in: it is never turned away for that.
REPORT_PATIENCE = 300.0
RESEND_AFTER = 60.0
# Receipt look-ups: first after 50 ms, then spaced out to half a second while nothing is answered.
POLL_FIRST = 0.05
POLL_MAX = 0.5
POLL_BATCH = 200


class UnknownCase(ReviewError):
    pass


# The one retry loop (api/sending.py) for a case: what it is called, where it stopped.
def _case(case_id: str) -> Recipient:
    return Recipient(case_id, CASE_WORKFLOW, "case", UnknownCase, where=sa.CASE_STATUS)


class CaseSummary(BaseModel):
    """A row of `vuln list`: the case's search attributes only."""

    case_id: str
    status: str | None
    severity: str | None
    priority: int | None
    sectors: list[str]
    embargo_deadline: datetime | None
    started_at: datetime | None
    closed_at: datetime | None


# ------------------------------------------------------------------ sending


async def report(client: Client, intake: VulnerabilityIntake, policy: Policy, signer: Signer) -> IntakeReceipt:
    """Report a vulnerability, signed by `signer` (the sender's key); starts the clearinghouse under
    `policy` if it is not running. Returns the receipt: the report's case, and whether it was a
    duplicate of a known vulnerability (then it was linked to that case).

    The report is handed in as a signal (signal-with-start): once the server has taken it, it is in
    the clearinghouse's history and will be applied or refused, in this run or the next. The
    receipt is then read with the `receipts` query. Sent again under the same message id (a retry,
    or a resend after a long wait), a report is applied once and the first receipt comes back.
    """
    # The door: refused here (domain.inputs.Refused) if the workflow could not read it back as sent.
    intake = round_trips(intake, REPORT_VULNERABILITY, max_bytes=MAX_MESSAGE_BYTES)
    intake = signer.sign(CLEARINGHOUSE_ID, REPORT_VULNERABILITY, intake)
    loop = asyncio.get_running_loop()
    patience = loop.time() + REPORT_PATIENCE
    refreshed = False
    while True:
        submission = ReportSubmission(intake=intake, attempt=uuid.uuid4().hex)
        handed_to = await _submit(client, submission, policy, patience)
        outcome = await _receipts(client).wait(submission, min(loop.time() + LOOK_AFTER, patience))
        if outcome is None:
            # Not taken yet: a run squatting the clearinghouse's id would never take it (red team F2).
            if await hand_in_again(client, handed_to, intake.sender):
                continue
            outcome = await _receipts(client).wait(submission, min(loop.time() + RESEND_AFTER - LOOK_AFTER, patience))
        if outcome is not None and outcome.receipt is not None:
            return outcome.receipt
        if outcome is None:
            # Handed in and not taken yet (a clearinghouse stopped, or very busy): hand it in again;
            # whichever copy is taken first is applied, the other finds its receipt.
            if loop.time() > patience:
                raise Unavailable(
                    f"clearinghouse: report {intake.message_id} was handed in but not taken within "
                    f"{REPORT_PATIENCE:.0f} s; send it again (same message id: applied once)"
                )
            continue
        refusal = outcome.refusal
        assert refusal is not None
        if refusal.kind == UNKNOWN_SIGNER and not refreshed and is_party(intake.sender):
            # Enrolled since the clearinghouse loaded its keys: it reloads them, and we hand it in again.
            refreshed = True
            await refresh_keys(client, CLEARINGHOUSE_ID, intake.sender, patience)
            continue
        if refusal.kind in TRANSIENT_REFUSALS and loop.time() < patience:
            await asyncio.sleep(random.uniform(0.05, 0.5))
            continue
        raise Rejected(f"{CLEARINGHOUSE_ID}: {refusal.reason}")


async def _submit(client: Client, submission: ReportSubmission, policy: Policy, patience: float) -> str | None:
    """Hand a report in (signal-with-start), until the server has taken it; the run it went to. A
    call that failed may have got through: the copy is harmless (a message is applied once)."""
    loop = asyncio.get_running_loop()
    delay = 0.1
    while True:
        try:
            handle = await client.start_workflow(
                CLEARINGHOUSE_WORKFLOW,
                ClearinghouseState(policy_version=policy.version, policy=policy.clearinghouse),
                id=CLEARINGHOUSE_ID,
                task_queue=CLEARINGHOUSE_INTAKE_QUEUE,
                task_timeout=CLEARINGHOUSE_TASK_TIMEOUT,
                start_signal=SUBMIT_REPORT,
                start_signal_args=[submission],
                static_summary="Treasury vulnerability clearinghouse",
            )
            return handle.result_run_id
        except RPCError as e:
            if not transient(e):
                raise
            if loop.time() > patience:  # as every other message gives up: one line, what to do
                raise Unavailable(
                    f"clearinghouse: the Temporal server did not take report {submission.intake.message_id} within "
                    f"{REPORT_PATIENCE:.0f} s ({e.message}); send it again (same message id: applied once)"
                ) from None
        await asyncio.sleep(random.uniform(0, delay))
        delay = min(delay * 2, 2.0)


class _ReceiptDesk:
    """Every report this client waits for, looked up together: one `receipts` query per round for
    all of them (a burst of 50 reporters in one process asks a few times a second, not 50)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.waiting: dict[str, tuple[ReceiptLookup, asyncio.Future[ReportOutcome]]] = {}
        self.task: asyncio.Task[None] | None = None

    async def wait(self, submission: ReportSubmission, until: float) -> ReportOutcome | None:
        """The submission's outcome, or None if it is still pending at `until` (loop time)."""
        intake = submission.intake
        lookup = ReceiptLookup(sender=intake.sender, message_id=intake.message_id, attempt=submission.attempt)
        future: asyncio.Future[ReportOutcome] = self.loop.create_future()
        self.waiting[submission.attempt] = (lookup, future)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._ask())
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, until - self.loop.time()))
        except TimeoutError:
            return None
        finally:
            self.waiting.pop(submission.attempt, None)

    async def _ask(self) -> None:
        pause = POLL_FIRST
        while self.waiting:
            await asyncio.sleep(pause)
            batch = list(self.waiting.items())[:POLL_BATCH]
            try:
                outcomes = await self.client.get_workflow_handle(CLEARINGHOUSE_ID).query(
                    RECEIPTS_QUERY,
                    [lookup for _, (lookup, _) in batch],
                    result_type=list[ReportOutcome],
                    rpc_timeout=timedelta(seconds=10),
                )
            except (RPCError, WorkflowQueryFailedError):
                # Server or worker busy or away (each report has its own patience): ask again.
                pause = min(pause * 2, POLL_MAX)
                continue
            answered = False
            for (_, (_, future)), outcome in zip(batch, outcomes, strict=True):
                if not outcome.pending and not future.done():
                    future.set_result(outcome)
                    answered = True
            pause = POLL_FIRST if answered else min(pause * 1.5, POLL_MAX)


_desks: weakref.WeakKeyDictionary[Client, _ReceiptDesk] = weakref.WeakKeyDictionary()


def _receipts(client: Client) -> _ReceiptDesk:
    desk = _desks.get(client)
    if desk is None or desk.loop is not asyncio.get_running_loop():
        desk = _desks[client] = _ReceiptDesk(client)
    return desk


async def send(client: Client, case_id: str, update: str, message: Message, signer: Signer) -> CaseState:
    """Sign one message for this case, update and run, and send it as an update. The message id is
    the update id: a retry applies once. The run is the case's current one, named by the server; a
    case that continued as new meanwhile gets the message signed again for its new run."""
    message = round_trips(message, update, max_bytes=MAX_MESSAGE_BYTES)

    async def attempt() -> CaseState:
        current = await describe_or_none(client, case_id)
        run_id = current.run_id if current is not None else None
        signed = signer.sign(case_id, update, message, run_id=run_id)
        handle = client.get_workflow_handle(case_id, run_id=run_id)
        return await handle.execute_update(update, signed, id=signed.message_id, result_type=CaseState)

    return await deliver(client, _case(case_id), message, attempt)


# ------------------------------------------------------------------ reading


async def case_status(client: Client, case_id: str) -> CaseState:
    """A case's status: from the query while it runs, from its result once closed."""
    description = await describe_or_none(client, case_id)
    if description is None or description.workflow_type != CASE_WORKFLOW:
        raise UnknownCase(f"no case with id {case_id!r}")
    handle = client.get_workflow_handle(case_id, result_type=CaseState)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise UnknownCase(f"case {case_id} ended abnormally: {description.status.name}")
    return await query_running(
        client, description, CASE_STATUS_QUERY, CaseState, "case", f"frontier-review audit {case_id}"
    )


async def clearinghouse_status(client: Client) -> ClearinghouseState:
    handle = client.get_workflow_handle(CLEARINGHOUSE_ID)
    try:
        return await handle.query(CLEARINGHOUSE_STATUS_QUERY, result_type=ClearinghouseState)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise UnknownCase("the clearinghouse is not running (it starts with the first report)") from None
        raise


async def list_cases(
    client: Client, status: CaseStatus | None = None, sector: Sector | None = None, limit: int | None = None
) -> AsyncIterator[CaseSummary]:
    """Cases, newest first, from the search attributes (no classified or embargoed detail)."""
    query = f'WorkflowType = "{CASE_WORKFLOW}"'
    if status:
        query += f' AND CaseStatus = "{CaseStatus(status).value}"'
    if sector:
        query += f' AND Sectors = "{Sector(sector).value}"'
    async for wf in client.list_workflows(query, limit=limit):
        attrs = wf.typed_search_attributes
        yield CaseSummary(
            case_id=wf.id,
            status=attrs.get(sa.CASE_STATUS),
            severity=attrs.get(sa.SEVERITY),
            priority=attrs.get(sa.CASE_PRIORITY),
            sectors=list(attrs.get(sa.SECTORS) or []),
            embargo_deadline=attrs.get(sa.EMBARGO_DEADLINE),
            started_at=wf.start_time,
            closed_at=wf.close_time,
        )


# ------------------------------------------------------------------ the parties


class CaseParty:
    """One party speaking to the clearinghouse and into cases: `vendor:<id>`, `operator:<sector>`,
    `partner:<id>`, `treasury`. It signs with the party's key: by default `signing/<party>.pem` in
    the key directory (infra/keys.py), or `signer=`."""

    def __init__(self, client: Client, party: str, signer: Signer | None = None) -> None:
        self.client = client
        self.party = parse_party(party)
        self.signer = signer or KeyDirectory().signer(self.party)

    async def report(
        self, vulnerability: VulnerabilityReport, policy: Policy, reference: str = "", *, message_id: str | None = None
    ) -> IntakeReceipt:
        intake = VulnerabilityIntake(sender=self.party, report=vulnerability, reference=reference)
        intake = keyed(CLEARINGHOUSE_ID, REPORT_VULNERABILITY, intake, message_id)
        return await report(self.client, intake, policy, self.signer)

    async def patch_deployed(self, case_id: str, note: str = "", *, message_id: str | None = None) -> CaseState:
        message = PatchDeployed(sender=self.party, note=note)
        return await self._send(case_id, PATCH_DEPLOYED, message, message_id)

    async def exploitation_observed(self, case_id: str, evidence: str, *, message_id: str | None = None) -> CaseState:
        message = ExploitationObserved(sender=self.party, evidence=evidence)
        return await self._send(case_id, EXPLOITATION_OBSERVED, message, message_id)

    async def _send(self, case_id: str, update: str, message: Message, message_id: str | None) -> CaseState:
        """Every message with its idempotency key: `message_id`, else derived from its content
        (api/idempotency.py), so the same call made again is applied once."""
        return await send(self.client, case_id, update, keyed(case_id, update, message, message_id), self.signer)


class VendorClient(CaseParty):
    """The affected vendor, by name (`Acme Corp`) or id (`acme-corp`)."""

    def __init__(self, client: Client, vendor: str, signer: Signer | None = None) -> None:
        super().__init__(client, vendor if vendor.startswith("vendor:") else vendor_party(vendor), signer)

    async def fix_ready(
        self, case_id: str, fixed_versions: list[str], advisory: str = "", *, message_id: str | None = None
    ) -> CaseState:
        message = FixReady(sender=self.party, fixed_versions=fixed_versions, advisory=advisory)
        return await self._send(case_id, FIX_READY, message, message_id)

    async def request_extension(
        self, case_id: str, extension: timedelta, reason: str, *, message_id: str | None = None
    ) -> CaseState:
        message = ExtensionRequest(sender=self.party, extension=extension, reason=reason)
        return await self._send(case_id, REQUEST_EXTENSION, message, message_id)


class OperatorClient(CaseParty):
    """The operators of one sector (their sector coordinator speaks for them)."""

    def __init__(self, client: Client, sector: Sector | str, signer: Signer | None = None) -> None:
        super().__init__(client, operator_party(sector), signer)
