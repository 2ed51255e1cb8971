"""`frontier-review vuln ...`: Treasury's clearinghouse for operators, vendors and partners.

vuln report FILE.json [--as PARTY]        a vulnerability report (prints the case id)
vuln list [--status S] [--sector S]        cases, most urgent first
vuln status ID                              one case
vuln fix-ready ID --as vendor:<id> --fixed-in 2.4.1
vuln patch-deployed ID --as operator:<sector>
vuln exploitation-observed ID --as PARTY --evidence TEXT
vuln request-extension ID --as vendor:<id> --days 14 --reason TEXT
vuln clearinghouse                          the intake's totals

Every message is signed with the sending party's key: `signing/<party>.pem` in the key directory
(FRONTIER_REVIEW_KEYS_DIR), or `--key FILE`.
"""

from __future__ import annotations

import argparse
from datetime import timedelta

from pydantic import BaseModel
from rich.table import Table

from api.clearinghouse import (
    CaseParty,
    CaseSummary,
    VendorClient,
    case_status,
    clearinghouse_status,
    list_cases,
    report,
)
from cli import args as arg
from cli.door import BadInput, load_vulnerability, signer_for
from cli.render import as_json, console
from domain.case import MAX_EXTENSION_REQUEST, CaseState, CaseStatus
from domain.clearinghouse import ClearinghouseState, VulnerabilityIntake
from domain.policy import DEFAULT_POLICY, load_policy
from domain.sectors import Sector
from domain.vulnerability import TREASURY, parse_party
from infra.connection import Target, connect


def _party(text: str, *, kind: str | None = None) -> str:
    try:
        party = parse_party(text)
    except ValueError as e:
        raise BadInput(str(e)) from None
    if kind and not party.startswith(f"{kind}:"):
        raise BadInput(f"--as must be a {kind}:<id> party, not {text!r}")
    return party


def _print(args: argparse.Namespace, value: BaseModel) -> None:
    if args.json:
        print(as_json(value))
    elif isinstance(value, CaseState):
        case_view(value)
    elif isinstance(value, ClearinghouseState):
        clearinghouse_view(value)
    else:
        console.print(value.model_dump_json(indent=2))


def clearinghouse_view(v: ClearinghouseState) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("policy", v.policy_version)
    table.add_row("reports", str(v.reports))
    table.add_row("cases opened", str(v.cases_opened))
    table.add_row("duplicates", str(v.duplicates))
    table.add_row("refused", str(v.refused))
    table.add_row("runs", f"{v.runs} ({v.reports_this_run} reports in this run)")
    console.print(table)


def case_view(c: CaseState) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("case", c.case_id)
    table.add_row("status", f"[bold]{c.status.value}[/bold]")
    r = c.report
    table.add_row("product", f"{r.product} {', '.join(r.affected_versions)} ({r.vendor}, {r.vendor_party})")
    table.add_row("weakness", f"{r.cwe} at {r.location}")
    if r.summary:
        table.add_row("summary", r.summary)
    if c.reviews:
        table.add_row("from review", ", ".join(c.reviews))
    table.add_row("cvss", c.triage.cvss_vector if c.triage else r.cvss_vector)
    if c.triage:
        table.add_row("severity", f"{c.triage.severity.value} ({c.triage.base_score})")
    if c.priority:
        table.add_row("priority", f"{c.priority.name}: {c.priority_reason}")
    table.add_row("sectors", ", ".join(s.value for s in c.sectors) or "none named")
    if c.exploited:
        table.add_row("exploited", "yes, in the wild")
    if c.invalid_reason:
        table.add_row("invalid", c.invalid_reason)
    if c.embargo_deadline:
        extra = f" (extended by {c.extended_by})" if c.extended_by else ""
        table.add_row("embargo until", c.embargo_deadline.isoformat(timespec="seconds") + extra)
    if c.fix:
        table.add_row("fixed in", ", ".join(c.fix.fixed_versions))
    if c.deployed_by:
        table.add_row("deployed", ", ".join(c.deployed_by))
    if c.disclosure_reason:
        table.add_row("disclosed", c.disclosure_reason)
    table.add_row("reports", str(len(c.reports)))
    for n in c.notices:
        table.add_row(f"notice: {n.kind.value}", f"{n.recipient} {'' if n.delivered else 'UNDELIVERED '}{n.detail}")
    console.print(table)


def list_view(rows: list[CaseSummary]) -> None:
    table = Table()
    table.add_column("case", no_wrap=True, overflow="fold")  # on a narrow terminal a long id folds, never cut
    for heading in ("priority", "severity", "status", "sectors", "embargo until"):
        table.add_column(heading)
    for r in rows:
        table.add_row(
            r.case_id,
            f"P{r.priority}" if r.priority else "",
            r.severity or "",
            r.status or "",
            ", ".join(r.sectors),
            r.embargo_deadline.isoformat(timespec="seconds") if r.embargo_deadline else "",
        )
    console.print(table)
    console.print(f"{len(rows)} case(s)")


# ------------------------------------------------------------------ commands


async def cmd_report(args: argparse.Namespace) -> int:
    details = load_vulnerability(args.file)
    sender = _party(args.sender)
    try:
        policy = load_policy(args.policy or DEFAULT_POLICY)
    except ValueError as e:
        raise BadInput(str(e)) from None
    signer = signer_for(args, sender)
    client = await connect(Target.from_args(args))
    intake = VulnerabilityIntake(sender=sender, report=details, reference=args.reference)
    receipt = await report(client, intake, policy, signer)
    if args.json:
        print(as_json(receipt))
    elif receipt.duplicate:
        closed = " (closed)" if receipt.case_closed else ""
        print(f"{receipt.case_id} (duplicate: linked to the existing case{closed})")
    else:
        print(receipt.case_id)
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    try:
        status = CaseStatus(args.status.upper()) if args.status else None
    except ValueError:
        raise BadInput(f"unknown status {args.status!r} (known: {', '.join(s.value for s in CaseStatus)})") from None
    try:
        sector = Sector(args.sector.lower()) if args.sector else None
    except ValueError:
        raise BadInput(f"unknown sector {args.sector!r} (known: {', '.join(s.value for s in Sector)})") from None
    client = await connect(Target.from_args(args))
    rows = [r async for r in list_cases(client, status, sector, limit=args.limit)]
    rows.sort(key=lambda r: (r.priority or 9, -(r.started_at.timestamp() if r.started_at else 0)))
    if args.json:
        print(as_json(rows))
    else:
        list_view(rows)
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    client = await connect(Target.from_args(args))
    _print(args, await case_status(client, args.case_id))
    return 0


async def cmd_clearinghouse(args: argparse.Namespace) -> int:
    client = await connect(Target.from_args(args))
    _print(args, await clearinghouse_status(client))
    return 0


async def cmd_fix_ready(args: argparse.Namespace) -> int:
    vendor = _party(args.sender, kind="vendor")
    versions = [v.strip() for v in args.fixed_in.split(",") if v.strip()]
    if not versions:
        raise BadInput("--fixed-in needs at least one version")
    signer = signer_for(args, vendor)
    client = await connect(Target.from_args(args))
    _print(args, await VendorClient(client, vendor, signer).fix_ready(args.case_id, versions, args.advisory or ""))
    return 0


async def cmd_patch_deployed(args: argparse.Namespace) -> int:
    party = _party(args.sender)
    signer = signer_for(args, party)
    client = await connect(Target.from_args(args))
    _print(args, await CaseParty(client, party, signer).patch_deployed(args.case_id, args.note or ""))
    return 0


async def cmd_exploitation(args: argparse.Namespace) -> int:
    party = _party(args.sender)
    signer = signer_for(args, party)
    client = await connect(Target.from_args(args))
    _print(args, await CaseParty(client, party, signer).exploitation_observed(args.case_id, args.evidence))
    return 0


async def cmd_extension(args: argparse.Namespace) -> int:
    vendor = _party(args.sender, kind="vendor")
    signer = signer_for(args, vendor)
    client = await connect(Target.from_args(args))
    extension = timedelta(days=args.days)
    case = await VendorClient(client, vendor, signer).request_extension(args.case_id, extension, args.reason)
    _print(args, case)
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    vuln = sub.add_parser("vuln", help="Treasury's vulnerability clearinghouse: report, list, status, vendor updates")
    cmds = vuln.add_subparsers(dest="vuln_command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func, case: bool = True, signed: bool = True) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, parents=[common], help=help)
        if case:
            p.add_argument("case_id", type=arg.case_id)
        p.add_argument("--json", action="store_true")
        if signed:
            p.add_argument(
                "--key", type=arg.text, help="sign with this Ed25519 private key (PEM) instead of the key directory's"
            )
        p.set_defaults(func=func)
        return p

    p = command("report", "report a vulnerability (JSON, see examples/vulnerabilities/)", cmd_report, case=False)
    p.add_argument("file", type=arg.text, help="`frontier-review schema report` describes it")
    p.add_argument("--as", dest="sender", type=arg.text, default=TREASURY, help="reporting party (default treasury)")
    p.add_argument("--reference", type=arg.text, default="", help="your own reference for the report")
    p.add_argument(
        "--policy",
        type=arg.text,
        help="recorded in the clearinghouse's start input when this report starts it; the clearinghouse "
        "runs under Treasury's policy, read on Treasury's worker, whatever this says "
        f"(default {DEFAULT_POLICY})",
    )

    p = command("list", "list cases, most urgent first", cmd_list, case=False, signed=False)
    p.add_argument("--status", type=arg.text, help="only cases in this status")
    p.add_argument("--sector", type=arg.text, help="only cases affecting this sector")
    p.add_argument("--limit", type=arg.count(1, 100_000, "--limit"), default=None, help="at most this many")

    command("status", "one case", cmd_status, signed=False)
    command("clearinghouse", "the clearinghouse's totals", cmd_clearinghouse, case=False, signed=False)

    p = command("fix-ready", "the vendor: a fix is ready", cmd_fix_ready)
    p.add_argument("--as", dest="sender", type=arg.text, required=True, help="vendor:<id>")
    p.add_argument("--fixed-in", type=arg.text, required=True, help="fixed versions, comma-separated")
    p.add_argument("--advisory", type=arg.text, help="the vendor's advisory text")

    p = command(
        "patch-deployed", "operators of a sector (or the vendor, treasury): the patch is deployed", cmd_patch_deployed
    )
    p.add_argument(
        "--as", dest="sender", type=arg.text, required=True, help="operator:<sector>, vendor:<id> or treasury"
    )
    p.add_argument("--note", type=arg.text)

    p = command("exploitation-observed", "exploitation seen in the wild: shortens the embargo", cmd_exploitation)
    p.add_argument(
        "--as", dest="sender", type=arg.text, required=True, help="operator:<sector>, vendor:<id> or treasury"
    )
    p.add_argument("--evidence", type=arg.text, required=True)

    p = command("request-extension", "the vendor asks for more time (capped by policy)", cmd_extension)
    p.add_argument("--as", dest="sender", type=arg.text, required=True, help="vendor:<id>")
    p.add_argument(
        "--days",
        type=arg.count(1, MAX_EXTENSION_REQUEST.days, "--days"),
        required=True,
        help="the policy caps the total",
    )
    p.add_argument("--reason", type=arg.text, required=True)
