"""Commands that act on reviews: disclose, status, list, determine, finding, conclude, withdraw."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from pydantic import ValidationError

from api.agency import AgencyClient, LabClient
from api.reviews import admissible, close, disclose, list_reviews, status
from cli import args as arg
from cli.door import BadInput, load_disclosure, load_vulnerability, message_id, signer_for
from cli.render import as_json, lab_view, list_view, receipt_view, status_view
from domain import clocks
from domain.agencies import LAB, Agency, parse_agency
from domain.clocks import intended_release_at
from domain.disclosure import Disclosure
from domain.inputs import MAX_MESSAGE_BYTES, round_trips
from domain.messages import Conclusion, Determination, FindingKind, Message, ReviewFinding, Severity, Withdrawal
from domain.policy import DEFAULT_POLICY, Policy, describe, load_policy, one_line
from domain.signatures import Signer
from domain.status import LabView, Receipt, ReviewStatus, Stage
from domain.vulnerability import lab_party
from infra.connection import Target, connect
from infra.keys import KeyDirectory


def _agencies(text: str | None) -> list[Agency]:
    if not text:
        return []
    try:
        return [parse_agency(a) for a in text.split(",") if a.strip()]
    except ValueError as e:
        raise BadInput(str(e)) from None


def _valid(model: type[Message], **fields: object) -> None:
    """The message the command will send, checked before connecting: a refusal never waits on Temporal."""
    try:
        round_trips(model(**fields), model.__name__.lower(), max_bytes=MAX_MESSAGE_BYTES)
    except ValidationError as e:
        raise BadInput(one_line(e)) from None


def _print_status(args: argparse.Namespace, s: ReviewStatus) -> None:
    if getattr(args, "json", False):
        print(as_json(s))
    else:
        status_view(s)


def _print_receipt(args: argparse.Namespace, r: Receipt) -> None:
    """An update's receipt: the stage after the message (and after the stage change it caused)."""
    if getattr(args, "json", False):
        print(as_json(r))
    else:
        receipt_view(r)


async def cmd_disclose(args: argparse.Namespace) -> int:
    disclosure = load_disclosure(args.file)
    try:
        policy = load_policy(args.policy or DEFAULT_POLICY)
    except ValueError as e:
        raise BadInput(str(e)) from None
    public_keys = KeyDirectory().public_keys()
    admissible(disclosure, policy, public_keys)  # the policy's vocabulary, the date: before connecting
    client = await connect(Target.from_args(args))
    rid = await disclose(client, disclosure, policy, public_keys)
    print(json.dumps({"review_id": rid}) if args.json else rid)
    _warn_if_past_intended(disclosure, policy)
    return 0


def _warn_if_past_intended(disclosure: Disclosure, policy: Policy) -> None:
    """Participation is voluntary: a lab whose date the policy may overrun is told, not refused."""
    latest = datetime.now(UTC) + policy.hold_bound
    if intended_release_at(disclosure.intended_release_date) < latest:
        print(
            f"warning: the intended release date {disclosure.intended_release_date} is earlier than the latest "
            f"release under policy {policy.version} ({latest:%Y-%m-%d %H:%M} UTC, {describe(policy.hold_bound)} "
            "after disclosure): the review may hold the model past it",
            file=sys.stderr,
        )


async def cmd_status(args: argparse.Namespace) -> int:
    party = (args.party or "operator").strip().lower()
    if party != "operator" and party != LAB and not party.startswith(f"{LAB}:"):
        raise BadInput(f"--as {args.party!r}: status is read as the operator (default) or as the lab (--as lab)")
    client = await connect(Target.from_args(args))
    s = clocks.as_of(await status(client, args.review_id, with_earlier_runs=True), datetime.now(UTC))
    if party == "operator":
        _print_status(args, s)
    elif args.json:
        print(as_json(LabView.of(s)))
    else:
        lab_view(LabView.of(s))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    stage = None
    if args.stage:
        try:
            stage = Stage(args.stage.upper()).value
        except ValueError:
            raise BadInput(f"unknown stage {args.stage!r} (known: {', '.join(s.value for s in Stage)})") from None
    pending = None
    if args.pending_agency:
        try:
            pending = Agency(args.pending_agency.lower()).value
        except ValueError:
            known = ", ".join(a.value for a in Agency)
            raise BadInput(f"--pending-agency: unknown agency {args.pending_agency!r} (known: {known})") from None
    client = await connect(Target.from_args(args))
    rows = [r async for r in list_reviews(client, stage, limit=args.limit, pending_agency=pending)]
    if args.json:
        print(as_json(rows))
    else:
        list_view(rows)
    return 0


async def cmd_determine(args: argparse.Namespace) -> int:
    agencies = _agencies(args.agencies)
    _valid(Determination, sender=args.agency, covered=args.covered, agencies=agencies, rationale=args.rationale)
    signer = signer_for(args, args.agency)
    client = await connect(Target.from_args(args))
    nsa = AgencyClient(client, args.agency, signer)
    r = await nsa.determine(
        args.review_id, covered=args.covered, agencies=agencies, rationale=args.rationale, message_id=message_id(args)
    )
    _print_receipt(args, r)
    return 0


async def cmd_finding(args: argparse.Namespace) -> int:
    try:
        agency = parse_agency(args.agency)
    except ValueError as e:
        raise BadInput(str(e)) from None
    details = load_vulnerability(args.details) if args.details else None
    if args.kind == FindingKind.VULNERABILITY and details is None:
        raise BadInput("a vulnerability finding needs --details FILE.json (see examples/vulnerabilities/)")
    if args.kind != FindingKind.VULNERABILITY and details is not None:
        raise BadInput(f"--details applies only to --kind vulnerability, not {args.kind}")
    _valid(
        ReviewFinding, sender=agency.value, kind=args.kind, severity=args.severity, summary=args.summary,
        vulnerability=details,
    )  # fmt: skip
    signer = signer_for(args, agency.value)
    client = await connect(Target.from_args(args))
    r = await AgencyClient(client, agency, signer).submit_finding(
        args.review_id,
        kind=FindingKind(args.kind),
        severity=Severity(args.severity),
        summary=args.summary,
        vulnerability=details,
        message_id=message_id(args),
    )
    _print_receipt(args, r)
    return 0


async def cmd_conclude(args: argparse.Namespace) -> int:
    try:
        agency = parse_agency(args.agency)
    except ValueError as e:
        raise BadInput(str(e)) from None
    _valid(Conclusion, sender=agency.value, summary=args.summary or "")
    signer = signer_for(args, agency.value)
    client = await connect(Target.from_args(args))
    r = await AgencyClient(client, agency, signer).conclude(
        args.review_id, summary=args.summary or "", message_id=message_id(args)
    )
    _print_receipt(args, r)
    return 0


async def cmd_withdraw(args: argparse.Namespace) -> int:
    _valid(Withdrawal, sender=LAB, reason=args.reason)
    signer = signer_for(args, LAB)
    client = await connect(Target.from_args(args))
    # The review's own lab (`lab:<id>`) signs: its key from the key directory, or --key (checked above).
    lab = lab_party((await status(client, args.review_id)).lab)
    signer = Signer(lab, signer._key) if args.key else signer_for(args, lab)
    r = await LabClient(client, signer).withdraw(args.review_id, args.reason, message_id=message_id(args))
    _print_receipt(args, r)
    return 0


async def cmd_close(args: argparse.Namespace) -> int:
    client = await connect(Target.from_args(args))
    run_id = await close(client, args.review_id, args.reason)
    if args.json:
        print(json.dumps({"review_id": args.review_id, "run_id": run_id, "closed": True}))
    else:
        print(f"{args.review_id} (run {run_id}) closed; the lab may refile it")
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("disclose", parents=[common], help="validate a lab's disclosure and start its review")
    p.add_argument("file", type=arg.text, help="disclosure JSON (`frontier-review schema disclosure`; examples/)")
    p.add_argument("--policy", type=arg.text, help=f"policy name or TOML file (default {DEFAULT_POLICY})")
    p.add_argument("--json", action="store_true", help='print {"review_id": ...}')
    p.set_defaults(func=cmd_disclose)

    p = sub.add_parser("status", parents=[common], help="where a review stands")
    p.add_argument("review_id", type=arg.review_id)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--as",
        dest="party",
        help="lab: the lab's own view (stage, deadlines, covered, agencies, release dates; no verdict or rationale)",
    )
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", parents=[common], help="list reviews")
    p.add_argument("--stage", type=arg.text, help="only reviews at this stage")
    p.add_argument(
        "--pending-agency", type=arg.text, metavar="AGENCY", help="only open reviews waiting for this agency's decision"
    )
    p.add_argument("--limit", type=arg.count(1, 100_000, "--limit"), default=None, help="at most this many")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("determine", parents=[common], help="the NSA's determination")
    p.add_argument("review_id", type=arg.review_id)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--covered", dest="covered", action="store_true")
    group.add_argument("--not-covered", dest="covered", action="store_false")
    p.add_argument("--agencies", type=arg.text, help="participating agencies, comma-separated (covered only)")
    p.add_argument("--rationale", type=arg.text, required=True)
    p.add_argument(
        "--as", dest="agency", type=arg.text, default=Agency.NSA.value, help="the party you speak for (default nsa)"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--key", type=arg.text, help="sign with this Ed25519 private key (PEM) instead of the key directory's"
    )
    _idempotency_flag(p)
    p.set_defaults(func=cmd_determine)

    p = sub.add_parser("finding", parents=[common], help="a participating agency's finding")
    p.add_argument("review_id", type=arg.review_id)
    p.add_argument("--agency", type=arg.text, required=True)
    p.add_argument("--kind", required=True, choices=[k.value for k in FindingKind])
    p.add_argument("--severity", required=True, choices=[s.value for s in Severity])
    p.add_argument("--summary", type=arg.text, required=True)
    p.add_argument("--details", help="vulnerability details JSON, required with --kind vulnerability")
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", type=arg.text, help="sign with this Ed25519 private key (PEM)")
    _idempotency_flag(p)
    p.set_defaults(func=cmd_finding)

    p = sub.add_parser("conclude", parents=[common], help="a participating agency concludes its review")
    p.add_argument("review_id", type=arg.review_id)
    p.add_argument("--agency", type=arg.text, required=True)
    p.add_argument("--summary", type=arg.text)
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", type=arg.text, help="sign with this Ed25519 private key (PEM)")
    _idempotency_flag(p)
    p.set_defaults(func=cmd_conclude)

    p = sub.add_parser("withdraw", parents=[common], help="the lab withdraws from the review")
    p.add_argument("review_id", type=arg.review_id)
    p.add_argument("--reason", type=arg.text, required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", type=arg.text, help="sign with this Ed25519 private key (PEM)")
    _idempotency_flag(p)
    p.set_defaults(func=cmd_withdraw)

    p = sub.add_parser(
        "close",
        parents=[common],
        help="an operator closes a review that cannot go on (terminated, with the reason recorded)",
        description="Terminate a review's run that cannot go on (e.g. a workflow task failing for good), with a "
        "reason that its history records. The lab may then disclose the same model version again, unless the "
        "release had begun; the new run's record names the closed one.",
    )
    p.add_argument("review_id", type=arg.review_id)
    p.add_argument("--reason", type=arg.text, required=True, help="why (recorded in the history)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_close)


def _idempotency_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--message-id",
        type=arg.text,
        help="idempotency key: the same key applies once however often it is sent (default: derived from "
        "the message's content, sender and review, so running the same command again applies it once)",
    )
