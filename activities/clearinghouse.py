"""Treasury's clearinghouse desk: validate and triage a report, notify the vendor and the
operators, distribute the patch, publish the advisory; load the parties' public keys from
Treasury's key directory; and relay a review's vulnerability finding into the clearinghouse.

Every notice is written to Treasury's outbox (SQLite) keyed by case, kind and recipient before
it is reported, so a retried activity sends nothing twice. Delivering the outbox (mail, the
sector ISACs' feeds) is the delivery service's job, outside this process.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError

from activities.keyring import published_keyring
from activities.store import RecordStore
from api.clearinghouse import report
from api.errors import ReviewError, Unavailable
from api.server import describe_or_none
from domain.agencies import Agency
from domain.attestation import Attested, ResultSigner
from domain.case import Notice, NoticeReceipt, Triage, Validation, triage_of, validation_of
from domain.clearinghouse import (
    CASE_WORKFLOW,
    CLEARINGHOUSE_ID,
    CLEARINGHOUSE_TASK_QUEUE,
    DISTRIBUTE_PATCH,
    FIND_CASE,
    FORWARD_VULNERABILITY,
    LOAD_POLICY,
    LOAD_PUBLIC_KEYS,
    NOTIFY_OPERATORS,
    NOTIFY_VENDOR,
    PUBLISH_ADVISORY,
    TRIAGE_CASE,
    VALIDATE_REPORT,
    CaseLocation,
    CaseLookup,
    ForwardRequest,
    TreasuryPolicy,
    VulnerabilityIntake,
)
from domain.policy import Policy
from domain.review import SUBMIT_FINDING
from domain.sectors import CRITICAL_INFRASTRUCTURE, Sector
from domain.signatures import Signer, signature_problem
from domain.vulnerability import TREASURY, VulnerabilityReport
from infra.keys import KeyDirectory, KeyProblem

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS notices (
    case_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    sent_at    TEXT NOT NULL,
    PRIMARY KEY (case_id, kind, recipient)
);
CREATE TABLE IF NOT EXISTS case_ids (
    fingerprint TEXT PRIMARY KEY,
    case_id     TEXT NOT NULL
);
"""


class Outbox(RecordStore):
    """Treasury's records: the trusted-party registry (who operates in which sector) and the notices sent."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with closing(self._connect()) as db:
            db.executescript(OUTBOX_SCHEMA)

    def approved_in(self, sector: Sector) -> list[str]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT partner_id FROM trusted_parties WHERE sector = ? AND status = 'approved' ORDER BY partner_id",
                (sector.value,),
            ).fetchall()
        return [r[0] for r in rows]

    def record(self, notice: Notice, recipient: str) -> tuple[datetime, bool]:
        """Record one notice; a second call for the same case, kind and recipient returns the first."""
        now = datetime.now(UTC).isoformat()
        with closing(self._connect()) as db:
            cur = db.execute(
                "INSERT INTO notices VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(case_id, kind, recipient) DO NOTHING",
                (
                    notice.case_id,
                    notice.kind.value,
                    recipient,
                    # The embargoed details of the case: sealed, bound to this row.
                    self.seal.seal(notice.subject, "notices.subject", notice.case_id, notice.kind.value, recipient),
                    self.seal.seal(notice.body, "notices.body", notice.case_id, notice.kind.value, recipient),
                    now,
                ),
            )
            row = db.execute(
                "SELECT sent_at FROM notices WHERE case_id = ? AND kind = ? AND recipient = ?",
                (notice.case_id, notice.kind.value, recipient),
            ).fetchone()
        return datetime.fromisoformat(row[0]), cur.rowcount != 1

    def case_id(self, fingerprint: str, proposed: str | None = None) -> str | None:
        """The id a vulnerability's case was opened under when its derived id was squatted; with
        `proposed`, record that one unless another is recorded already (the first one stays)."""
        with closing(self._connect()) as db:
            if proposed is not None:
                db.execute(
                    "INSERT INTO case_ids VALUES (?, ?) ON CONFLICT(fingerprint) DO NOTHING", (fingerprint, proposed)
                )
            row = db.execute("SELECT case_id FROM case_ids WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return row[0] if row else None

    def notice_text(self, case_id: str, kind: str, recipient: str) -> tuple[str, str] | None:
        """A recorded notice's subject and body, unsealed."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT subject, body FROM notices WHERE case_id = ? AND kind = ? AND recipient = ?",
                (case_id, kind, recipient),
            ).fetchone()
        if row is None:
            return None
        return (
            self.seal.open(row[0], "notices.subject", case_id, kind, recipient),
            self.seal.open(row[1], "notices.body", case_id, kind, recipient),
        )

    def notices(self, case_id: str) -> list[tuple[str, str, datetime]]:
        """(kind, recipient, sent_at) of every notice of a case, in the order they were sent."""
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT kind, recipient, sent_at FROM notices WHERE case_id = ? ORDER BY sent_at, rowid", (case_id,)
            ).fetchall()
        return [(r[0], r[1], datetime.fromisoformat(r[2])) for r in rows]


class ClearinghouseDesk:
    def __init__(self, outbox: Outbox, keys: KeyDirectory | None = None, attester: ResultSigner | None = None) -> None:
        self.outbox = outbox
        self.keys = keys or KeyDirectory()
        self._attester = attester  # Treasury's key; read from the key directory when first needed

    @activity.defn(name=LOAD_PUBLIC_KEYS)
    def load_public_keys(self) -> Attested:
        """Every enrolled party's public key, from Treasury's own key directory: the only place the
        clearinghouse and its cases take keys from (no workflow input or message can add one).
        Signed with Treasury's key: anyone can complete this activity by id, and a keyring of their
        own would let them sign as any party. Recorded in the workflow's history, so replay needs
        no key directory."""
        keyring = published_keyring(self.keys)
        if self._attester is None:
            self._attester = self.keys.result_signer(TREASURY)
        activity.logger.info("public keys loaded", extra={"parties": len(keyring)})
        return self._attester.attest(keyring)

    @activity.defn(name=VALIDATE_REPORT)
    def validate_report(self, report: VulnerabilityReport) -> Validation:
        result = validation_of(report)
        # No reason or score in the log: they describe an embargoed vulnerability.
        activity.logger.info("report validated")
        return result

    @activity.defn(name=TRIAGE_CASE)
    def triage_case(self, report: VulnerabilityReport) -> Triage:
        result = triage_of(report)
        activity.logger.info("case triaged")
        return result

    @activity.defn(name=NOTIFY_VENDOR)
    def notify_vendor(self, notice: Notice) -> NoticeReceipt:
        return self._send(notice, [])

    @activity.defn(name=NOTIFY_OPERATORS)
    def notify_operators(self, notice: Notice) -> NoticeReceipt:
        """An embargoed advisory to one critical-infrastructure sector: its coordinator and its registered operators."""
        if notice.sector not in CRITICAL_INFRASTRUCTURE:
            raise ApplicationError(f"{notice.sector} is not a critical-infrastructure sector", non_retryable=True)
        return self._send(notice, self.outbox.approved_in(notice.sector))

    @activity.defn(name=DISTRIBUTE_PATCH)
    def distribute_patch(self, notice: Notice) -> NoticeReceipt:
        assert notice.sector is not None
        return self._send(notice, self.outbox.approved_in(notice.sector))

    @activity.defn(name=PUBLISH_ADVISORY)
    def publish_advisory(self, notice: Notice) -> NoticeReceipt:
        return self._send(notice, [])

    def _send(self, notice: Notice, organisations: list[str]) -> NoticeReceipt:
        sent_at, already = self.outbox.record(notice, notice.recipient)
        for org in organisations:
            self.outbox.record(notice, f"partner:{org}")
        activity.logger.info(
            "notice recorded",
            # Not the recipient: a vendor's id says which product is vulnerable.
            extra={"case_id": notice.case_id, "kind": notice.kind.value},
        )
        return NoticeReceipt(
            case_id=notice.case_id,
            kind=notice.kind,
            recipient=notice.recipient,
            recipients=[f"partner:{o}" for o in organisations],
            sent_at=sent_at,
            already_sent=already,
        )


class ClearinghouseForwarder:
    """Relays a review's vulnerability finding into the clearinghouse (the review workflow cannot
    call a client). Idempotent: the report's message id is derived from the finding's.

    It runs on Treasury's worker, with Treasury's key: the report is Treasury's (`sender`
    `treasury`), naming the agency that found it (`found_by`) and the review (`reference`).
    Treasury signs only what it has verified itself: the agency's signature on the finding,
    against Treasury's own public keyring, so a review started with someone's own keys cannot
    launder a forged finding into the clearinghouse."""

    def __init__(
        self, client: Client, policy: Policy, signer: Signer | None = None, keys: KeyDirectory | None = None
    ) -> None:
        self.client = client
        self.policy = policy
        self.keys = keys or KeyDirectory()
        self.signer = signer or self.keys.signer(TREASURY)
        # Treasury's signature on what this desk answers: the receipts a review records, the policy
        # the clearinghouse applies (domain/attestation.py).
        self.attester = ResultSigner(self.signer.party, self.signer._key)

    @activity.defn(name=LOAD_POLICY)
    def load_clearinghouse_policy(self) -> Attested:
        """Treasury's clearinghouse policy: what each run of the clearinghouse applies, whoever started it."""
        return self.attester.attest(TreasuryPolicy(version=self.policy.version, policy=self.policy.clearinghouse))

    @activity.defn(name=FORWARD_VULNERABILITY)
    async def forward_vulnerability(self, request: ForwardRequest) -> Attested:
        finding = request.finding
        if finding.vulnerability is None:
            raise ApplicationError("the finding carries no vulnerability details", non_retryable=True)
        if finding.sender not in {a.value for a in Agency}:
            raise ApplicationError(f"{finding.sender!r} is not an agency", type="Rejected", non_retryable=True)
        try:
            keyring = self.keys.public_keys()
        except KeyProblem as e:
            raise ApplicationError(str(e), type="KeyProblem") from None  # retried: fix the directory
        problem = signature_problem(keyring, request.review_id, SUBMIT_FINDING, finding)
        if problem:
            raise ApplicationError(f"not relayed: {problem}", type="Rejected", non_retryable=True)
        details = finding.vulnerability
        if not details.summary:
            details = details.model_copy(update={"summary": finding.summary})
        intake = VulnerabilityIntake(
            sender=TREASURY,
            message_id=f"finding-{finding.message_id}",
            report=details,
            reference=request.review_id,
            found_by=finding.sender,
        )
        try:
            receipt = await report(self.client, intake, self.policy, self.signer)
        except Unavailable as e:
            # Handed in but not taken (the clearinghouse stopped or overloaded): not a refusal. The
            # activity is retried; the same message id is applied once.
            raise ApplicationError(str(e), type="Unavailable") from None
        except ReviewError as e:
            raise ApplicationError(str(e), type="Rejected", non_retryable=True) from None
        activity.logger.info("finding forwarded", extra={"review_id": request.review_id, "case_id": receipt.case_id})
        return self.attester.attest(receipt)


# A case that ended like this never took its report: its id may be opened again.
ENDED_ABNORMALLY = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TIMED_OUT,
}


def is_genuine_case(d: WorkflowExecutionDescription) -> bool:
    """Started by the clearinghouse (a client cannot set a parent), as a case, on Treasury's queue."""
    return (
        d.workflow_type == CASE_WORKFLOW
        and d.task_queue == CLEARINGHOUSE_TASK_QUEUE
        and d.parent_id == CLEARINGHOUSE_ID
    )


class CaseDirectory:
    """Where a vulnerability's case lives, when the id derived from its fingerprint is taken."""

    def __init__(self, client: Client, outbox: Outbox, attester: ResultSigner) -> None:
        self.client = client
        self.outbox = outbox
        self.attester = attester  # Treasury's key: the clearinghouse believes only a signed answer

    @activity.defn(name=FIND_CASE)
    async def find_case(self, lookup: CaseLookup) -> Attested:
        return self.attester.attest(await self._find(lookup))

    async def _find(self, lookup: CaseLookup) -> CaseLocation:
        recorded = self.outbox.case_id(lookup.fingerprint)
        if recorded is not None:
            # Opened elsewhere before, because a stranger held the derived id.
            d = await describe_or_none(self.client, recorded)
            exists = d is not None and is_genuine_case(d) and d.status not in ENDED_ABNORMALLY
            return CaseLocation(case_id=recorded, exists=exists, foreign=None)
        d = await describe_or_none(self.client, lookup.case_id)
        if d is None or (is_genuine_case(d) and d.status not in ENDED_ABNORMALLY):
            return CaseLocation(case_id=lookup.case_id, exists=d is not None)
        if is_genuine_case(d):
            # A case that failed or was ended: the start was refused only by a race; open it again.
            return CaseLocation(case_id=lookup.case_id, exists=False)
        foreign = (
            f"{d.workflow_type} on queue {d.task_queue}, {d.status.name if d.status else 'unknown'}, "
            f"started {d.start_time:%Y-%m-%d %H:%M:%S} UTC" + (f" by {d.parent_id}" if d.parent_id else " by a client")
        )
        activity.logger.warning("foreign workflow holds a case id", extra={"case_id": lookup.case_id})
        case_id = self.outbox.case_id(lookup.fingerprint, lookup.alternate)
        assert case_id is not None
        return CaseLocation(case_id=case_id, exists=False, foreign=foreign)
