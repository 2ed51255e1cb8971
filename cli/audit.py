"""`audit`: a review's audit trail, rebuilt from its event history (on the server or exported).

Exit codes: 0 every check held; 1 a check failed (the trail is printed all the same, and one
line on stderr names the failed checks); 2 the history cannot be read (no such file, not a
history, payloads this keyring cannot open): one line, no trail.

An export that ends without the run's close exits 1: it cannot say whether the run was open when
exported or the export was cut short, unless the server (reached as for any command, a few seconds
at most) has that run open with exactly as many events; then the check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from rich.console import Console
from rich.markdown import Markdown

from api.errors import UnknownReview
from audit import (
    HistoryFileError,
    UndecodableHistory,
    UnknownWorkflow,
    audit_export,
    audit_workflow,
    open_export_check,
)
from audit.markdown import to_markdown
from cli import args as arg
from cli.door import BadInput
from infra.connection import Target, connect


async def cmd_audit(args: argparse.Namespace) -> int:
    if args.output:
        target = Path(args.output)
        if target.is_dir():
            raise BadInput(f"-o {args.output}: is a directory; name a file")
        if not target.parent.is_dir():
            raise BadInput(f"-o {args.output}: no directory {target.parent}")
    if args.history:
        try:
            trail = await audit_export(Path(args.history), args.review_id, namespace=args.namespace or "default")
        except (HistoryFileError, UndecodableHistory) as e:
            raise BadInput(str(e)) from None
        if trail.closed_at is None and (client := await _reachable(args)) is not None:
            trail.checks[-1] = await open_export_check(trail, client)
    elif args.review_id:
        client = await connect(Target.from_args(args))
        try:
            trail = await audit_workflow(client, args.review_id, args.run_id)
        except UnknownWorkflow as e:
            raise UnknownReview(str(e)) from None
        except UndecodableHistory as e:
            raise BadInput(str(e)) from None
    else:
        raise BadInput("name a review id, or an exported history with --history FILE")
    if args.json:
        text = trail.model_dump_json(indent=2)
    elif args.markdown or args.output:
        text = to_markdown(trail)
    else:
        Console().print(Markdown(to_markdown(trail)))
        return _verdict(trail)
    if args.output:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n")
        print(f"audit trail of {trail.workflow_id} written to {args.output}", file=sys.stderr)
    else:
        print(text)
    return _verdict(trail)


async def _reachable(args: argparse.Namespace):
    """The server, if it answers within a few seconds (an export is often read far from it)."""
    try:
        return await asyncio.wait_for(connect(Target.from_args(args)), timeout=5)
    except Exception:  # noqa: BLE001  unreachable, refused, misconfigured: the export is read alone
        return None


def _verdict(trail) -> int:
    """1 when a check failed, so that a script (or CI) cannot mistake a failed audit for a clean one."""
    failed = [c.name for c in trail.checks if not c.ok]
    if not failed:
        return 0
    print(f"audit: {len(failed)} check(s) failed: " + "; ".join(failed), file=sys.stderr)
    return 1


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "audit",
        parents=[common],
        help="a review's audit trail, rebuilt from its event history",
        description="Rebuild a review's timeline from its event history (decoded with the project's converter): "
        "every transition with its time, actor and reason, each agency's verdict, the determination, findings, "
        "conclusions and grants. Reads the server, or a history exported with "
        "`temporal workflow show -w ID --output json`.",
    )
    p.add_argument("review_id", nargs="?", type=arg.workflow_id("workflow", "review-"), help="the review (workflow) id")
    p.add_argument(
        "--run-id",
        type=arg.workflow_id("run", ""),
        help="a particular run (default: the latest, e.g. after a withdraw-and-refile); `status` shows the latest "
        "run's id, `list` every run's",
    )
    p.add_argument("--history", metavar="FILE", help="read an exported history instead of the server")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the trail as JSON")
    fmt.add_argument("--markdown", action="store_true", help="the trail as a Markdown document")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (Markdown unless --json)")
    p.set_defaults(func=cmd_audit)
