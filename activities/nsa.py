"""The NSA's side: receiving the briefing it decides on.

The decision itself comes back into the review as the `record_determination` update,
sent by the NSA through the agencies' API (`api/agency.py`) or the CLI.
"""

from __future__ import annotations

from temporalio import activity

from activities.store import RecordStore
from domain.attestation import Attested, ResultSigner
from domain.messages import Briefing, BriefingReceipt
from domain.review import BRIEF_NSA


class NsaBriefingDesk:
    def __init__(self, store: RecordStore, signer: ResultSigner) -> None:
        self.store = store
        self.signer = signer  # the NSA's key: the receipt is the NSA's word that it was briefed

    @activity.defn(name=BRIEF_NSA)
    def brief_nsa(self, briefing: Briefing) -> Attested:
        delivered = self.store.deliver_briefing(briefing.review_id, briefing.model_dump_json())
        activity.logger.info("NSA briefed", extra={"review_id": briefing.review_id})
        return self.signer.attest(BriefingReceipt(briefing_id=briefing.review_id, delivered_at=delivered))
