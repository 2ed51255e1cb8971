"""Commands that act on reviews: disclose, status, list, determine, finding, conclude, withdraw."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import ValidationError

from api.agency import AgencyClient, LabClient
from api.reviews import disclose, list_reviews, status
from cli.render import as_json, list_view, status_view
from domain.agencies import Agency, parse_agency
from domain.disclosure import Disclosure
from domain.messages import FindingKind, Severity
from domain.policy import DEFAULT_POLICY, load_policy, one_line
from domain.signatures import Signer
from domain.status import ReviewStatus, Stage
from domain.vulnerability import lab_party
from infra.connection import Target, connect
from infra.keys import KeyDirectory


class BadInput(ValueError):
    """Input that never reached Temporal: exit 2, nothing recorded."""


def load_disclosure(path: str) -> Disclosure:
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    try:
        return Disclosure.model_validate(data)
    except ValidationError as e:
        raise BadInput(f"{path}: invalid disclosure: {one_line(e)}") from None


def _signer(args: argparse.Namespace, party: str) -> Signer:
    """The sender's private key: --key FILE, else the party's key in the key directory."""
    if args.key is None:
        return KeyDirectory().signer(party)
    try:
        key = load_pem_private_key(Path(args.key).read_bytes(), password=None)
    except (OSError, ValueError) as e:
        raise BadInput(f"--key {args.key}: not a readable private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"--key {args.key}: not an Ed25519 private key")
    return Signer(party, key)


def _agencies(text: str | None) -> list[Agency]:
    if not text:
        return []
    try:
        return [parse_agency(a) for a in text.split(",") if a.strip()]
    except ValueError as e:
        raise BadInput(str(e)) from None


def _print_status(args: argparse.Namespace, s: ReviewStatus) -> None:
    if getattr(args, "json", False):
        print(as_json(s))
    else:
        status_view(s)


async def cmd_disclose(args: argparse.Namespace) -> int:
    disclosure = load_disclosure(args.file)
    try:
        policy = load_policy(args.policy or DEFAULT_POLICY)
    except ValueError as e:
        raise BadInput(str(e)) from None
    public_keys = KeyDirectory().public_keys()
    client = await connect(Target.from_args(args))
    rid = await disclose(client, disclosure, policy, public_keys)
    print(rid)
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    client = await connect(Target.from_args(args))
    _print_status(args, await status(client, args.review_id))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    stage = None
    if args.stage:
        try:
            stage = Stage(args.stage.upper()).value
        except ValueError:
            raise BadInput(f"unknown stage {args.stage!r} (known: {', '.join(s.value for s in Stage)})") from None
    client = await connect(Target.from_args(args))
    rows = [r async for r in list_reviews(client, stage, limit=args.limit)]
    if args.json:
        print(as_json(rows))
    else:
        list_view(rows)
    return 0


async def cmd_determine(args: argparse.Namespace) -> int:
    client = await connect(Target.from_args(args))
    nsa = AgencyClient(client, args.agency, _signer(args, args.agency))
    s = await nsa.determine(
        args.review_id, covered=args.covered, agencies=_agencies(args.agencies), rationale=args.rationale
    )
    _print_status(args, s)
    return 0


async def cmd_finding(args: argparse.Namespace) -> int:
    try:
        agency = parse_agency(args.agency)
    except ValueError as e:
        raise BadInput(str(e)) from None
    from cli.vuln import load_vulnerability  # here, not at the top: cli.vuln imports this module

    details = load_vulnerability(args.details) if args.details else None
    if args.kind == FindingKind.VULNERABILITY and details is None:
        raise BadInput("a vulnerability finding needs --details FILE.json (see examples/vulnerabilities/)")
    if args.kind != FindingKind.VULNERABILITY and details is not None:
        raise BadInput(f"--details applies only to --kind vulnerability, not {args.kind}")
    client = await connect(Target.from_args(args))
    s = await AgencyClient(client, agency, _signer(args, agency.value)).submit_finding(
        args.review_id,
        kind=FindingKind(args.kind),
        severity=Severity(args.severity),
        summary=args.summary,
        vulnerability=details,
    )
    _print_status(args, s)
    return 0


async def cmd_conclude(args: argparse.Namespace) -> int:
    try:
        agency = parse_agency(args.agency)
    except ValueError as e:
        raise BadInput(str(e)) from None
    client = await connect(Target.from_args(args))
    s = await AgencyClient(client, agency, _signer(args, agency.value)).conclude(
        args.review_id, summary=args.summary or ""
    )
    _print_status(args, s)
    return 0


async def cmd_withdraw(args: argparse.Namespace) -> int:
    client = await connect(Target.from_args(args))
    # The review's own lab (`lab:<id>`) signs: with --key, that lab's key from a file.
    lab = lab_party((await status(client, args.review_id)).lab)
    s = await LabClient(client, _signer(args, lab)).withdraw(args.review_id, args.reason)
    _print_status(args, s)
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("disclose", parents=[common], help="validate a lab's disclosure and start its review")
    p.add_argument("file", help="disclosure JSON (see examples/)")
    p.add_argument("--policy", help=f"policy name or TOML file (default {DEFAULT_POLICY})")
    p.set_defaults(func=cmd_disclose)

    p = sub.add_parser("status", parents=[common], help="where a review stands")
    p.add_argument("review_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", parents=[common], help="list reviews")
    p.add_argument("--stage", help="only reviews at this stage")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("determine", parents=[common], help="the NSA's determination")
    p.add_argument("review_id")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--covered", dest="covered", action="store_true")
    group.add_argument("--not-covered", dest="covered", action="store_false")
    p.add_argument("--agencies", help="participating agencies, comma-separated (covered only)")
    p.add_argument("--rationale", required=True)
    p.add_argument("--as", dest="agency", default=Agency.NSA.value, help="the party you speak for (default nsa)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", help="sign with this Ed25519 private key (PEM) instead of the key directory's")
    p.set_defaults(func=cmd_determine)

    p = sub.add_parser("finding", parents=[common], help="a participating agency's finding")
    p.add_argument("review_id")
    p.add_argument("--agency", required=True)
    p.add_argument("--kind", required=True, choices=[k.value for k in FindingKind])
    p.add_argument("--severity", required=True, choices=[s.value for s in Severity])
    p.add_argument("--summary", required=True)
    p.add_argument("--details", help="vulnerability details JSON, required with --kind vulnerability")
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", help="sign with this Ed25519 private key (PEM)")
    p.set_defaults(func=cmd_finding)

    p = sub.add_parser("conclude", parents=[common], help="a participating agency concludes its review")
    p.add_argument("review_id")
    p.add_argument("--agency", required=True)
    p.add_argument("--summary")
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", help="sign with this Ed25519 private key (PEM)")
    p.set_defaults(func=cmd_conclude)

    p = sub.add_parser("withdraw", parents=[common], help="the lab withdraws from the review")
    p.add_argument("review_id")
    p.add_argument("--reason", required=True)
    p.add_argument("--json", action="store_true")
    p.add_argument("--key", help="sign with this Ed25519 private key (PEM)")
    p.set_defaults(func=cmd_withdraw)
