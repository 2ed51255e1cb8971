"""Release to the lab's trusted partners: vet each against the registry, then grant access.

A grant is recorded in the ledger before it is reported, keyed by (review, partner): a
retry after a crash finds the first grant and returns it, so no partner is granted twice.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.keyring import published_keyring
from activities.store import RecordStore
from domain import metrics
from domain.attestation import Attested, ResultSigner
from domain.disclosure import MAX_PARTNERS
from domain.ids import review_id_for
from domain.inputs import MAX_FILE_BYTES
from domain.messages import AccessGrant, VettingResult
from domain.policy import POLICY_DIR, load_policy
from domain.review import (
    ADMIT_DISCLOSURE,
    DISCLOSE,
    FILING_FRESHNESS,
    GRANT_ACCESS,
    LEDGER_GRANTS,
    LOAD_REVIEW_KEYS,
    VET_PARTNER,
    Admission,
    AdmissionRequest,
    LedgerGrant,
    PartnerRequest,
    disclosure_digest,
)
from domain.signatures import signature_problem
from domain.vulnerability import REVIEW_OFFICE, lab_party
from infra.keys import KeyDirectory, KeyProblem


class ReleaseDesk:
    """The review office's desk. Every result is signed with the review office's key (`review`):
    the review believes only results that verify against its worker's trust anchors."""

    def __init__(self, store: RecordStore, keys: KeyDirectory | None = None, policies_dir: Path = POLICY_DIR) -> None:
        self.store = store
        self.keys = keys or KeyDirectory()
        # The review office's policy library: a review runs under the policy named in the lab's
        # filing, as the office holds it (`<name>.toml`, its version checked), never one it is sent.
        self.policies_dir = Path(policies_dir)
        self._signer: ResultSigner | None = None

    def attest(self, result: object) -> Attested:
        if self._signer is None:
            self._signer = self.keys.result_signer(REVIEW_OFFICE)
        return self._signer.attest(result)

    @activity.defn(name=LOAD_REVIEW_KEYS)
    def load_review_keys(self) -> Attested:
        """The parties' public keys, from the review office's own key directory: the only place a
        review takes the keys it verifies messages with (neither its start input nor a message
        can add one). Recorded in the review's history, so replay needs no key directory."""
        return self.attest(published_keyring(self.keys))

    @activity.defn(name=ADMIT_DISCLOSURE)
    def admit_disclosure(self, request: AdmissionRequest) -> Attested:
        """Admit a review: the lab's signature on its filing (with the office's own public keys), for
        this review, fresh, and the policy it names from the office's library. A refusal is an
        answer too (signed): the review then does nothing and shows as not genuine."""
        info = activity.info()
        admission = self._admit(request, info.scheduled_time)
        if admission.admitted:
            assert self._signer is not None
            admission = admission.model_copy(
                update={"seal": self._signer.seal(info.workflow_id or "", info.workflow_run_id or "")}
            )
        activity.logger.info("review admission", extra={"admitted": admission.admitted})
        return self.attest(admission)

    def _admit(self, request: AdmissionRequest, first_seen: datetime) -> Admission:
        if self._signer is None:
            self._signer = self.keys.result_signer(REVIEW_OFFICE)
        filing, disclosure = request.filing, request.disclosure
        lab = lab_party(disclosure.lab)
        if filing is None:
            return Admission(admitted=False, reason="no filing signed by the lab", lab_party=lab)
        try:
            keyring = self.keys.public_keys()
        except KeyProblem as e:
            raise ApplicationError(str(e), type="KeyProblem") from None  # retried until the directory is fixed
        size = len(disclosure.model_dump_json().encode())
        refusals = [
            # The door's caps, held here too: a start input made without the door is no bigger.
            (size > MAX_FILE_BYTES, f"the disclosure is {size} bytes, over the cap of {MAX_FILE_BYTES}"),
            (len(disclosure.partners) > MAX_PARTNERS, f"more than {MAX_PARTNERS} partners"),
            (filing.sender != lab, f"filed by {filing.sender!r}, not by the lab's party {lab!r}"),
            (filing.disclosure_sha256 != disclosure_digest(disclosure), "the disclosure is not the one the lab signed"),
            (request.review_id != review_id_for(disclosure), "the review id is not this disclosure's"),
            (first_seen - filing.signed_at > FILING_FRESHNESS, "the filing is stale (signed long before this run)"),
            (filing.signed_at - first_seen > FILING_FRESHNESS, "the filing is dated in the future"),
            # A run started under the id of a review whose model reached partners (outside `disclose`,
            # which refuses it): it could be withdrawn, or grant again. Refiling follows a withdrawal only.
            (
                bool(self.store.grants(request.review_id)),
                "this review's model was already released to trusted partners (the ledger holds its grants)",
            ),
        ]
        problem = signature_problem(keyring, request.review_id, DISCLOSE, filing, target="review")
        for failed, reason in [(problem is not None, problem or ""), *refusals]:
            if failed:
                return Admission(admitted=False, reason=reason, lab_party=lab)
        name, version = filing.policy_name, filing.policy_version
        path = self.policies_dir / f"{name}.toml"
        if not name.replace("-", "").replace(".", "").replace("_", "").isalnum() or not path.is_file():
            return Admission(admitted=False, reason=f"the review office has no policy {name!r}", lab_party=lab)
        try:
            policy = load_policy(path)
        except ValueError as e:
            raise ApplicationError(str(e), type="PolicyProblem") from None  # retried until the file is fixed
        if (policy.name, policy.version) != (name, version):
            return Admission(
                admitted=False,
                reason=f"the review office holds policy {policy.name} {policy.version}, not {name} {version}",
                lab_party=lab,
            )
        return Admission(admitted=True, reason=f"filed by {lab} under {name} {version}", lab_party=lab, policy=policy)

    @activity.defn(name=VET_PARTNER)
    def vet_partner(self, request: PartnerRequest) -> Attested:
        return self.attest(self._vet(request))

    def _vet(self, request: PartnerRequest) -> VettingResult:
        partner = request.partner
        registered = self.store.registered_party(partner.partner_id)
        if registered is None:
            return self._refuse(partner.partner_id, "not in the trusted-party registry")
        if registered.status != "approved":
            note = f" ({registered.note})" if registered.note else ""
            return self._refuse(partner.partner_id, f"registry status is {registered.status}{note}")
        if registered.sector != partner.sector:
            return self._refuse(
                partner.partner_id,
                f"registered in sector {registered.sector.value}, disclosed as {partner.sector.value}",
            )
        return VettingResult(
            partner_id=partner.partner_id, approved=True, reason="approved in the trusted-party registry"
        )

    def _refuse(self, partner_id: str, reason: str) -> VettingResult:
        activity.logger.info("partner failed vetting", extra={"partner_id": partner_id, "reason": reason})
        return VettingResult(partner_id=partner_id, approved=False, reason=reason)

    @activity.defn(name=LEDGER_GRANTS)
    def ledger_grants(self, review_id: str) -> Attested:
        """Every grant the ledger holds for this review, whatever run made it: a run whose history was
        reset takes its grants from here (the events that recorded them may be gone)."""
        grants = [
            LedgerGrant(partner_id=g.partner_id, grant_id=g.grant_id, granted_at=g.granted_at, run_id=g.run_id)
            for g in self.store.grants(review_id)
        ]
        return self.attest([g.model_dump(mode="json") for g in grants])

    @activity.defn(name=GRANT_ACCESS)
    def grant_access(self, request: PartnerRequest) -> Attested:
        grant = self.store.grant(request.review_id, request.partner.partner_id, request.run_id)
        if not grant.already_granted:
            counter = activity.metric_meter().create_counter(metrics.GRANTS.name, metrics.GRANTS.description)
            counter.add(1, {"sector": request.partner.sector.value})
        activity.logger.info(
            "access granted",
            extra={
                "review_id": request.review_id,
                "partner_id": grant.partner_id,
                "already_granted": grant.already_granted,
            },
        )
        return self.attest(AccessGrant(**grant.model_dump(exclude={"run_id"})))
