"""`setup-namespace`: the namespace and its search attributes, once, on any cluster we can
administer (infra/namespace.py). Run it again at will: the second run changes nothing."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

from domain.inputs import Refused
from infra.connection import Target, connect, plain_data_converter
from infra.namespace import NamespaceConflict, setup_namespace

DEFAULT_RETENTION_DAYS = 90


async def cmd_setup_namespace(args: argparse.Namespace) -> int:
    if not 1 <= args.retention_days <= 36500:
        raise Refused(f"--retention-days must be between 1 and 36500, not {args.retention_days}")
    # No payload is read or written here: the operator running it needs no payload keys.
    client = await connect(Target.from_args(args), converter=plain_data_converter())
    try:
        report = await setup_namespace(client, client.namespace, timedelta(days=args.retention_days))
    except NamespaceConflict as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        for line in report.lines():
            print(line)
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "setup-namespace",
        parents=[common],
        help="register the namespace and every search attribute (idempotent; operator API)",
        description="Register the namespace (from --namespace or the envconfig profile) when it does not exist, "
        "and every search attribute frontier-review's workflows use when missing. Nothing that exists is "
        "changed: a second run prints 'nothing to do'. Needs the cluster's admin permissions (operator API); "
        "on Temporal Cloud create them with tcld instead.",
    )
    p.add_argument(
        "--retention-days",
        type=int,
        default=DEFAULT_RETENTION_DAYS,
        help=f"history retention of a newly registered namespace, in days (default {DEFAULT_RETENTION_DAYS}; "
        "an existing namespace keeps its own). Closed reviews' histories, the audit trail, are deleted after it: "
        "archive them for longer",
    )
    p.add_argument("--json", action="store_true", help="what was found and done, as JSON")
    p.set_defaults(func=cmd_setup_namespace)
