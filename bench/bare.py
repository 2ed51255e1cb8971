"""Bare Temporal, the same shape as the project's workflows: what the review and the
clearinghouse would cost with nothing of ours on top (default converter, no codec, no
signatures, no pydantic, no SQLite, no search-attribute upserts, default sandbox).

    .venv/bin/python -m bench.bare --address 127.0.0.1:7233   # the bare worker (bench starts it)

`BareReview`: five parallel no-op checks on five queues, a briefing on a sixth, the
determination update (with a stage validator), and if covered the window timer raced
against a finding and a conclusion (updates); then vetting and a grant for each partner.
`BareClearinghouse`: one entity taking reports by update-with-start, deduplicating by
fingerprint, starting a `BareCase` per new vulnerability (abandoned child) and signalling
the case on a duplicate; continue-as-new after as many reports as the project's run holds.
`BareCase`: validation, triage and the vendor notice, then parked until its embargo ends.

    .venv/bin/python -m bench.bare --address 127.0.0.1:7233 --codec   # the bare+codec worker

With `--codec` the same workflows run with the project's payload codec (infra/codec.py: AES-GCM
and zlib) on the default payload converter, and nothing else of the project: what the codec alone
costs. That side lives under its own prefix (CODEC_PREFIX: queues, workflow ids), never on the
plain side's queues: the codec refuses the unsealed payloads the plain side writes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.worker import Worker

PREFIX = "bare-"  # the plain bare side's queues and ids
CODEC_PREFIX = "barec-"  # the bare+codec side's
BODIES = ("whitehouse", "dod", "dhs", "commerce", "treasury")
RUN_IS_FULL = "RunIsFull"
REPORTS_PER_RUN = 1000  # as policies/*.toml's reports_per_run


@dataclass(frozen=True)
class Names:
    """A bare side's task queues and workflow ids, all under one prefix. A workflow finds its side's
    from the queue it runs on (`of_queue`), so its input and history are the same whatever the side."""

    prefix: str = PREFIX

    def body_queue(self, body: str) -> str:
        return f"{self.prefix}{body}"

    @property
    def nsa_queue(self) -> str:
        return f"{self.prefix}nsa"

    @property
    def review_queue(self) -> str:
        return f"{self.prefix}review"

    @property
    def clearinghouse_queue(self) -> str:
        return f"{self.prefix}clearinghouse"

    @property
    def clearinghouse_id(self) -> str:
        return f"{self.prefix}clearinghouse"

    def review_id(self, unique: str) -> str:
        return f"{self.prefix}review-{unique}"

    def case_id(self, fingerprint: str) -> str:
        return f"{self.prefix}case-{fingerprint[:16]}"

    @classmethod
    def of_queue(cls, task_queue: str, role: str) -> Names:
        """The names of the side whose `role` queue ("review", "clearinghouse") is `task_queue`."""
        return cls(task_queue.removesuffix(role))


PLAIN = Names(PREFIX)
SEALED = Names(CODEC_PREFIX)


@dataclass
class BareInput:
    review_id: str
    partners: list[str]
    determination_deadline_s: float
    window_s: float


@dataclass
class BareCaseInput:
    case_id: str
    report: dict
    embargo_s: float


@dataclass
class BareClearinghouseInput:
    embargo_s: float
    reports: int = 0
    known: list[str] = field(default_factory=list)


@activity.defn
async def check_standard(disclosure_id: str) -> dict:
    return {"verdict": "below_threshold"}


@activity.defn
async def brief_nsa(review_id: str) -> dict:
    return {"received": True}


@activity.defn
async def vet_partner(partner: str) -> dict:
    return {"approved": True}


@activity.defn
async def grant_access(partner: str) -> dict:
    return {"grant_id": f"grant-{partner}"}


@activity.defn
async def case_step(case_id: str) -> dict:
    return {"ok": True}


@workflow.defn
class BareReview:
    @workflow.init
    def __init__(self, review: BareInput) -> None:
        self.stage = "DISCLOSED"
        self.determination: dict | None = None
        self.findings: list[dict] = []
        self.concluded: set[str] = set()
        self.participants: list[str] = []

    @workflow.run
    async def run(self, review: BareInput) -> dict:
        names = Names.of_queue(workflow.info().task_queue, "review")
        self.stage = "STANDARDS_CHECK"
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    check_standard,
                    review.review_id,
                    task_queue=names.body_queue(b),
                    start_to_close_timeout=timedelta(seconds=30),
                )
                for b in BODIES
            )
        )
        self.stage = "AWAITING_DETERMINATION"
        briefing = workflow.start_activity(
            brief_nsa, review.review_id, task_queue=names.nsa_queue, start_to_close_timeout=timedelta(seconds=30)
        )
        try:
            await workflow.wait_condition(
                lambda: self.determination is not None, timeout=timedelta(seconds=review.determination_deadline_s)
            )
        except TimeoutError:
            self.determination = {"covered": False, "agencies": []}
        if not briefing.done():
            briefing.cancel()
        if self.determination["covered"]:
            self.participants = self.determination["agencies"]
            self.stage = "UNDER_REVIEW"
            try:
                await workflow.wait_condition(
                    lambda: set(self.participants) <= self.concluded, timeout=timedelta(seconds=review.window_s)
                )
            except TimeoutError:
                pass
        self.stage = "RELEASING"
        for partner in review.partners:
            await workflow.execute_activity(vet_partner, partner, start_to_close_timeout=timedelta(seconds=30))
            await workflow.execute_activity(grant_access, partner, start_to_close_timeout=timedelta(seconds=30))
        self.stage = "RELEASED"
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    @workflow.update
    async def record_determination(self, determination: dict) -> dict:
        self.determination = determination
        return self.status()

    @record_determination.validator
    def _check_determination(self, determination: dict) -> None:
        if self.stage != "AWAITING_DETERMINATION" or self.determination is not None:
            raise ApplicationError(f"at stage {self.stage}")

    @workflow.update
    async def submit_finding(self, finding: dict) -> dict:
        self.findings.append(finding)
        return self.status()

    @submit_finding.validator
    def _check_finding(self, finding: dict) -> None:
        self._check_reviewer(finding)

    @workflow.update
    async def conclude_review(self, conclusion: dict) -> dict:
        self.concluded.add(conclusion["sender"])
        return self.status()

    @conclude_review.validator
    def _check_conclusion(self, conclusion: dict) -> None:
        self._check_reviewer(conclusion)

    def _check_reviewer(self, message: dict) -> None:
        if self.stage != "UNDER_REVIEW" or message.get("sender") not in self.participants:
            raise ApplicationError(f"not a participant at stage {self.stage}")

    @workflow.query
    def status(self) -> dict:
        return {"stage": self.stage, "findings": len(self.findings), "concluded": sorted(self.concluded)}


@workflow.defn
class BareCase:
    @workflow.init
    def __init__(self, case: BareCaseInput) -> None:
        self.status = "RECEIVED"
        self.reports = 1

    @workflow.run
    async def run(self, case: BareCaseInput) -> dict:
        for step in ("VALIDATED", "TRIAGED", "VENDOR_NOTIFIED"):
            await workflow.execute_activity(case_step, case.case_id, start_to_close_timeout=timedelta(seconds=30))
            self.status = step
        try:
            await workflow.wait_condition(lambda: False, timeout=timedelta(seconds=case.embargo_s))
        except TimeoutError:
            pass
        self.status = "CLOSED"
        return self.view()

    @workflow.signal
    def link_report(self, report: dict) -> None:
        self.reports += 1

    @workflow.query
    def view(self) -> dict:
        return {"status": self.status, "reports": self.reports}


@workflow.defn
class BareClearinghouse:
    @workflow.init
    def __init__(self, state: BareClearinghouseInput) -> None:
        self.state = state
        self.this_run = 0
        self.known = set(state.known)

    @workflow.run
    async def run(self, state: BareClearinghouseInput) -> None:
        await workflow.wait_condition(lambda: self.this_run >= REPORTS_PER_RUN)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(BareClearinghouseInput(embargo_s=state.embargo_s, reports=self.state.reports))

    @workflow.update
    async def report_vulnerability(self, report: dict) -> dict:
        self.this_run += 1
        self.state.reports += 1
        case_id = Names.of_queue(workflow.info().task_queue, "clearinghouse").case_id(report["fingerprint"])
        opened = False
        if case_id not in self.known:
            try:
                await workflow.start_child_workflow(
                    BareCase.run,
                    BareCaseInput(case_id=case_id, report=report, embargo_s=self.state.embargo_s),
                    id=case_id,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                )
                opened = True
            except WorkflowAlreadyStartedError:
                pass
        self.known.add(case_id)
        if not opened:
            await workflow.get_external_workflow_handle(case_id).signal(BareCase.link_report, report)
        return {"case_id": case_id, "duplicate": not opened}

    @report_vulnerability.validator
    def _check_report(self, report: dict) -> None:
        if self.this_run >= REPORTS_PER_RUN:
            raise ApplicationError("continuing as new; send again", type=RUN_IS_FULL)


def bare_workers(client: Client, max_cached_workflows: int = 1000, names: Names = PLAIN) -> list[Worker]:
    """One worker per queue, as the project's worker.py runs them (cache: the SDK's default)."""
    workers = [Worker(client, task_queue=names.body_queue(b), activities=[check_standard]) for b in BODIES]
    workers.append(Worker(client, task_queue=names.nsa_queue, activities=[brief_nsa]))
    workers.append(
        Worker(
            client,
            task_queue=names.review_queue,
            workflows=[BareReview],
            activities=[vet_partner, grant_access],
            max_cached_workflows=max_cached_workflows,
        )
    )
    workers.append(
        Worker(
            client,
            task_queue=names.clearinghouse_queue,
            workflows=[BareClearinghouse, BareCase],
            activities=[case_step],
            max_cached_workflows=max_cached_workflows,
        )
    )
    return workers


def sealed_converter(keyring=None) -> DataConverter:
    """The SDK's default converter with the project's payload codec, and nothing else of the
    project (no pydantic, failures as the SDK encodes them). Without a keyring, the installation's
    (FRONTIER_REVIEW_KEYS_DIR): the benchmark points every process at one development set.
    Imported here, not at the top: the plain bare worker must not load the project."""
    from infra.codec import EncryptionCodec
    from infra.keys import KeyDirectory

    return DataConverter(payload_codec=EncryptionCodec(keyring or KeyDirectory().payload_keyring()))


async def main() -> None:
    parser = argparse.ArgumentParser(description="Run the bare workers (the benchmark starts this).")
    parser.add_argument("--address", required=True)
    parser.add_argument("--max-cached-workflows", type=int, default=1000)
    parser.add_argument("--codec", action="store_true", help=f"the project's payload codec, under {CODEC_PREFIX!r}")
    args = parser.parse_args()
    if args.codec:
        names, converter = SEALED, sealed_converter()
    else:
        names, converter = PLAIN, DataConverter.default
    client = await Client.connect(args.address, data_converter=converter)
    workers = bare_workers(client, args.max_cached_workflows, names)
    await asyncio.gather(*(w.run() for w in workers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    os._exit(0)
