"""Release to the lab's trusted partners: vet each against the registry, then grant access.

A grant is recorded in the ledger before it is reported, keyed by (review, partner): a
retry after a crash finds the first grant and returns it, so no partner is granted twice.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.store import RecordStore
from domain import metrics
from domain.attestation import Attested, ResultSigner
from domain.messages import AccessGrant, VettingResult
from domain.review import GRANT_ACCESS, LOAD_REVIEW_KEYS, VET_PARTNER, PartnerRequest
from domain.signatures import PublicKeyring
from domain.vulnerability import REVIEW_OFFICE
from infra.keys import KeyDirectory, KeyProblem, public_key_b64


class ReleaseDesk:
    """The review office's desk. Every result is signed with the review office's key (`review`):
    the review believes only results that verify against its worker's trust anchors."""

    def __init__(self, store: RecordStore, keys: KeyDirectory | None = None) -> None:
        self.store = store
        self.keys = keys or KeyDirectory()
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
        try:
            published = self.keys.public_keys()
        except KeyProblem as e:
            raise ApplicationError(str(e), type="KeyProblem") from None  # retried until the directory is fixed
        keyring: PublicKeyring = {}
        for party, key in sorted(published.items()):
            try:
                keyring[party] = public_key_b64(key)
            except KeyProblem as e:
                activity.logger.warning("public key skipped", extra={"party": party, "reason": str(e)})
        return self.attest(keyring)

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
