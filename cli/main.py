"""Entry point: parse, dispatch, and turn every known failure into one line and an exit code.

Exit codes: 0 done; 1 the review turned the request away (rejected, unknown, duplicate);
2 bad input that never reached Temporal (file, field, agency, policy).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from temporalio.service import RPCError

from api.errors import ReviewError
from cli import audit, embedded, keys, namespace, report, reviews, vuln
from cli.reviews import BadInput
from domain.policy import one_line
from infra.connection import ClientConfigError
from infra.devserver import DevServerError
from infra.keys import KeyProblem


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    conn = common.add_argument_group("connection (default: temporalio envconfig: profile file, TEMPORAL_* env)")
    conn.add_argument("--address", help="Temporal frontend host:port")
    conn.add_argument("--namespace", help="Temporal namespace")
    conn.add_argument("--profile", help="envconfig profile name")

    root = argparse.ArgumentParser(
        prog="frontier-review",
        description="Pre-release review of frontier AI models, on Temporal.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    embedded.add_commands(sub, common)
    reviews.add_commands(sub, common)
    keys.add_commands(sub, common)
    vuln.add_commands(sub, common)
    audit.add_commands(sub, common)
    report.add_commands(sub, common)
    namespace.add_commands(sub, common)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except ValueError as e:  # a bad FRONTIER_REVIEW_* default read while building the parser
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(args.func(args))
    except (BadInput, KeyProblem) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValidationError as e:  # a message that never reached Temporal (e.g. an empty --reason)
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except ClientConfigError as e:  # envconfig: unknown profile, unreadable config file
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ReviewError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except RPCError as e:
        print(f"error: Temporal: {e.message}", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError, DevServerError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
