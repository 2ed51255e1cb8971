"""Workers: `python worker.py` runs the review queue and every agency's queue;
`python worker.py --agency dod` runs one agency's, as that agency would on its own host.
Treasury's (`--agency treasury`) also runs the vulnerability clearinghouse (`clearinghouse` queue).

Each agency's worker loads its own standard (FRONTIER_REVIEW_STANDARDS_DIR/<agency>.toml)
and keeps its own records; nothing classified is sent to the review's queue.

Every worker pins the trust anchors of its own key directory (FRONTIER_REVIEW_KEYS_DIR,
`trust-anchors.json`) before it runs a workflow: the public keys workflow code verifies activity
results against (domain/attestation.py). Each party's worker signs its own activities' results with
its own key (`signing/<party>.pem`): the review office's (`review`), each agency's, Treasury's.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.clearinghouse import CaseDirectory, ClearinghouseDesk, ClearinghouseForwarder, Outbox
from activities.nsa import NsaBriefingDesk
from activities.publication import ReportDesk
from activities.release import ReleaseDesk
from activities.standards import StandardsBody, load_standard
from activities.store import RecordStore
from domain import attestation
from domain.agencies import REVIEW_TASK_QUEUE, STANDARDS_BODIES, Agency, parse_agency
from domain.clearinghouse import CLEARINGHOUSE_INTAKE_QUEUE, CLEARINGHOUSE_TASK_QUEUE
from domain.policy import DEFAULT_POLICY, POLICY_DIR, load_policy
from infra import logs
from infra.connection import Target, Unreachable, connect
from infra.keys import KeyDirectory, KeyProblem
from infra.metrics import metrics_host_default, metrics_port_default, prometheus_runtime
from workflows.clearinghouse import Clearinghouse
from workflows.publication import PublishTransparencyReport
from workflows.review import ModelReview
from workflows.sandbox import workflow_runner
from workflows.vulnerability_case import VulnerabilityCase

log = logs.get_logger("worker")
PROJECT_DIR = Path(__file__).resolve().parent
REVIEW = "review"
# Per workflow worker (this process runs two: the review office's and the clearinghouse's). Memory
# follows the cache, not what is parked (~110 MB + ~0.3 MB per cached review, ~0.1 MB per cached
# case, README "Sizing the worker"): 500 + 500 keeps a worker under 500 MB with any number parked.
# Half the SDK's default of 1,000.
DEFAULT_CACHED_WORKFLOWS = 500
# Workflow tasks the clearinghouse queue's worker runs at once (the SDK's default is 500). Every
# activation runs on its own thread under one GIL: a burst of reports starts cases by the hundred,
# their first activations (sandbox start-up) ran together, and each one, the clearinghouse's
# included, then took seconds of wall time for milliseconds of CPU, tripping the SDK's 2 s deadlock
# detector; the clearinghouse then replayed its run under the same contention, past its 10 s task
# timeout, again and again (measured: a 10,000-report burst stalled that way at 4,578 cases). A
# few at a time, the rest wait on the server, and each activation finishes in its own CPU time.
CLEARINGHOUSE_WORKFLOW_TASKS = 8


def cache_size(text: str, source: str) -> int:
    """A workflow cache size from a flag or the environment: a whole number, at least 1."""
    try:
        size = int(text)
    except ValueError:
        raise ValueError(f"{source} must be a whole number of workflows, not {text!r}") from None
    if size < 1:
        raise ValueError(f"{source} must be at least 1, not {size}")
    return size


# Activity slots (and as many threads) per queue. Each queue has its own, so a dependency that
# stalls one queue's activities (a locked ledger, a slow standard) cannot take another's: with one
# pool for every queue, grants blocked on a locked ledger once left five healthy standards bodies
# no thread to answer with.
ACTIVITY_SLOTS = {REVIEW: 16, CLEARINGHOUSE_TASK_QUEUE: 16}
AGENCY_ACTIVITY_SLOTS = 4


@dataclass(frozen=True)
class WorkerConfig:
    """Where a worker keeps its records and finds its configuration (env or flags)."""

    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("FRONTIER_REVIEW_DATA_DIR", "var")))
    standards_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("FRONTIER_REVIEW_STANDARDS_DIR", PROJECT_DIR / "examples" / "standards")
        )
    )
    registry_file: Path = field(
        default_factory=lambda: Path(
            os.environ.get("FRONTIER_REVIEW_REGISTRY", PROJECT_DIR / "examples" / "registry.toml")
        )
    )

    # Treasury's clearinghouse policy (name or TOML file): every run of the clearinghouse applies
    # it, whoever started the workflow.
    clearinghouse_policy: str = field(
        default_factory=lambda: os.environ.get("FRONTIER_REVIEW_CLEARINGHOUSE_POLICY", DEFAULT_POLICY)
    )

    # Where the review office publishes the weekly transparency report (default: <data_dir>/reports),
    # and where it finds the standards bodies' public summaries to publish with it.
    report_dir: Path | None = field(
        default_factory=lambda: Path(d) if (d := os.environ.get("FRONTIER_REVIEW_REPORT_DIR")) else None
    )

    @property
    def reports(self) -> Path:
        return self.report_dir or self.data_dir / "reports"

    # The review office's policy library: each review runs under the policy its filing names, as held here.
    policies_dir: Path = field(default_factory=lambda: Path(os.environ.get("FRONTIER_REVIEW_POLICIES_DIR", POLICY_DIR)))

    # Workflows each workflow worker keeps in memory. A workflow not in the cache costs nothing here
    # until a message, query or timer wakes it: then it is replayed from its history (tens of
    # milliseconds) and cached again. Size it for what is active at once, within the memory the
    # worker has (README "Sizing the worker for what is parked").
    max_cached_workflows: int = field(
        default_factory=lambda: cache_size(
            os.environ.get("FRONTIER_REVIEW_MAX_CACHED_WORKFLOWS", str(DEFAULT_CACHED_WORKFLOWS)),
            "FRONTIER_REVIEW_MAX_CACHED_WORKFLOWS",
        )
    )

    # The worker's own key directory: its trust anchors and its party's signing key.
    keys_dir: Path | None = None

    def keys(self) -> KeyDirectory:
        return KeyDirectory(self.keys_dir)

    def store(self, owner: str) -> RecordStore:
        return RecordStore(self.data_dir / f"{owner}.db")


def build_workers(
    client: Client,
    roles: Iterable[str] = (REVIEW, *(a.value for a in Agency)),
    config: WorkerConfig | None = None,
    release_desk: ReleaseDesk | None = None,
) -> list[Worker]:
    """One worker per queue for the given roles (`review` and/or agency ids). `release_desk`
    replaces the review office's vetting and grants (tests use it to inject faults)."""
    config = config or WorkerConfig()
    keys = config.keys()
    # Pinned before any workflow runs: what workflow code believes comes from this file only.
    attestation.pin(keys.trust_anchors())
    workers: list[Worker] = []
    for role in roles:
        if role == REVIEW:
            desk = release_desk or ReleaseDesk(config.store(REVIEW), keys, config.policies_dir)
            desk.policies_dir = config.policies_dir  # an injected desk (tests) reads this worker's library too
            desk.store.load_registry(config.registry_file)
            workers.append(
                Worker(
                    client,
                    task_queue=REVIEW_TASK_QUEUE,
                    workflows=[ModelReview, PublishTransparencyReport],
                    workflow_runner=workflow_runner(),
                    max_cached_workflows=config.max_cached_workflows,
                    activities=[
                        desk.load_review_keys,
                        desk.admit_disclosure,
                        desk.vet_partner,
                        desk.grant_access,
                        desk.ledger_grants,
                        ReportDesk(client, config.reports, config.standards_dir).publish_transparency_report,
                    ],
                    **activity_slots(REVIEW),
                )
            )
            continue
        agency = parse_agency(role)
        if agency in STANDARDS_BODIES:
            body = StandardsBody(
                load_standard(config.standards_dir / f"{agency.value}.toml"), keys.result_signer(agency.value)
            )
            if body.standard.agency != agency:
                raise ValueError(f"standard for {agency.value} names agency {body.standard.agency.value}")
            activities = [body.check_standard]
        else:
            activities = [NsaBriefingDesk(config.store(agency.value), keys.result_signer(agency.value)).brief_nsa]
        workers.append(
            Worker(client, task_queue=agency.task_queue, activities=activities, **activity_slots(agency.value))
        )
        if agency == Agency.TREASURY:
            workers.extend(clearinghouse_workers(client, config))
    return workers


def activity_slots(role: str) -> dict[str, Any]:
    """A queue's own activity slots and threads (as many threads as slots, so an accepted task
    never waits for a thread while its timeout runs)."""
    slots = ACTIVITY_SLOTS.get(role, AGENCY_ACTIVITY_SLOTS)
    executor = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"activity-{role}")
    return {"activity_executor": executor, "max_concurrent_activities": slots}


def clearinghouse_workers(client: Client, config: WorkerConfig) -> list[Worker]:
    """Treasury's clearinghouse: the cases, their desk and the relay of review findings on the
    `clearinghouse` queue; the clearinghouse workflow itself on its own queue and slots (it also
    runs on `clearinghouse`, where anyone may have started it)."""
    outbox = Outbox(config.data_dir / "clearinghouse.db")
    outbox.load_registry(config.registry_file)
    forwarder = ClearinghouseForwarder(client, load_policy(config.clearinghouse_policy))
    desk = ClearinghouseDesk(outbox, attester=forwarder.attester)
    directory = CaseDirectory(client, outbox, forwarder.attester)
    intake = Worker(
        client,
        task_queue=CLEARINGHOUSE_INTAKE_QUEUE,
        workflows=[Clearinghouse],
        workflow_runner=workflow_runner(),
        max_cached_workflows=config.max_cached_workflows,
        max_concurrent_workflow_tasks=2,
        # Its keyring load runs on its own queue (the policy and case look-ups name `clearinghouse`).
        activities=[desk.load_public_keys],
        **activity_slots(CLEARINGHOUSE_INTAKE_QUEUE),
    )
    cases = Worker(
        client,
        task_queue=CLEARINGHOUSE_TASK_QUEUE,
        workflows=[Clearinghouse, VulnerabilityCase],
        workflow_runner=workflow_runner(),
        max_cached_workflows=config.max_cached_workflows,
        max_concurrent_workflow_tasks=CLEARINGHOUSE_WORKFLOW_TASKS,
        activities=[
            desk.validate_report,
            desk.triage_case,
            desk.notify_vendor,
            desk.notify_operators,
            desk.distribute_patch,
            desk.publish_advisory,
            desk.load_public_keys,
            forwarder.forward_vulnerability,
            forwarder.load_clearinghouse_policy,
            directory.find_case,
        ],
        **activity_slots(CLEARINGHOUSE_TASK_QUEUE),
    )
    return [intake, cases]


# How long a stop waits for the workers (activities are cancelled at once: graceful_shutdown_timeout
# is 0, so a stop normally takes about a second). An idle worker's shutdown was seen never to end
# (3 in ~95 `up` stops under load, CI included; SDK 1.35 / server 1.32: every worker had begun
# shutting down, one never finished); past this, the stop goes on without it. Nothing is lost:
# a task the server handed to that worker is retried elsewhere when its timeout passes.
STOP_PATIENCE_SECONDS = 15.0


async def run_workers(workers: list[Worker], stop: asyncio.Event, patience: float = STOP_PATIENCE_SECONDS) -> None:
    """Run until `stop` is set or a worker fails, then shut down: in-flight workflow tasks finish,
    activities are cancelled, and a worker that has not stopped after `patience` seconds is left."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        stopping = [asyncio.create_task(w.shutdown()) for w in workers if w.is_running]  # each ends its run()
        _, stuck = await asyncio.wait(tasks, timeout=patience)
        if stuck:
            queues = [w.task_queue for w, t in zip(workers, tasks, strict=True) if t in stuck]
            log.warning("workers did not stop; leaving them", queues=queues, waited_seconds=patience)
            for t in [*stuck, *stopping]:
                t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
    if failures:
        raise failures[0]


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run frontier-review workers.")
    parser.add_argument("--agency", help="run only this agency's queue (whitehouse, dod, dhs, commerce, treasury, nsa)")
    parser.add_argument("--review-only", action="store_true", help="run only the `review` queue")
    parser.add_argument("--address", help="Temporal address (default: envconfig, then localhost:7233)")
    parser.add_argument("--namespace", help="Temporal namespace (default: envconfig, then default)")
    parser.add_argument("--profile", help="envconfig profile")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=metrics_port_default(),
        help="serve Prometheus metrics on http://HOST:PORT/metrics (default: $FRONTIER_REVIEW_METRICS_PORT, else off)",
    )
    parser.add_argument("--metrics-host", default=metrics_host_default(), help="address to bind metrics (0.0.0.0)")
    parser.add_argument(
        "--max-cached-workflows",
        help="workflows kept in memory per workflow worker (default: $FRONTIER_REVIEW_MAX_CACHED_WORKFLOWS, else "
        f"{DEFAULT_CACHED_WORKFLOWS}); what is active at once, within memory (~0.3 MB per cached review)",
    )
    args = parser.parse_args(argv)
    logs.configure()
    if args.agency:
        try:
            roles = [parse_agency(args.agency).value]
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.review_only:
        roles = [REVIEW]
    else:
        roles = [REVIEW, *(a.value for a in Agency)]
    try:
        config = WorkerConfig()
        if args.max_cached_workflows is not None:
            size = cache_size(args.max_cached_workflows, "--max-cached-workflows")
            config = dataclasses.replace(config, max_cached_workflows=size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    runtime = prometheus_runtime(args.metrics_port, args.metrics_host) if args.metrics_port else None
    try:
        client = await connect(Target.from_args(args), runtime=runtime)
        workers = build_workers(client, roles, config)
    except (ValueError, KeyProblem, Unreachable) as e:  # ClientConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics_url = f"http://{args.metrics_host}:{args.metrics_port}/metrics" if args.metrics_port else None
    log.info("workers started", queues=[w.task_queue for w in workers], metrics=metrics_url)
    await run_workers(workers, stop_on_signals())
    log.info("workers stopped")
    return 0


if __name__ == "__main__":
    try:
        code = asyncio.run(main())
    except ValueError as e:  # a bad FRONTIER_REVIEW_* setting read while building the parser
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    # As in starter.py: skip CPython's finalisation, which the SDK's Rust threads can abort
    # (temporalio/sdk-python#300) after all the work is done.
    os._exit(code)
