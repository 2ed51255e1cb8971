"""Entry point: parse, dispatch, and turn every known failure into one line and an exit code.

Exit codes: 0 done; 1 the review turned the request away (rejected, unknown, duplicate);
2 bad input that never reached Temporal (file, field, agency, policy).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from temporalio.service import RPCError

from api.errors import ReviewError
from cli.reviews import BadInput
from domain.policy import one_line
from infra.connection import ClientConfigError
from infra.devserver import DevServerError
from infra.keys import KeyProblem

# Which module defines each command: a command imports only its own module (and what that
# imports), so `status` never loads the audit trail, the codec server's aiohttp or the workers.
MODULES = ("embedded", "reviews", "keys", "vuln", "audit", "report")  # the order of --help
COMMANDS = {
    "up": "embedded",
    "demo": "embedded",
    "disclose": "reviews",
    "status": "reviews",
    "list": "reviews",
    "determine": "reviews",
    "finding": "reviews",
    "conclude": "reviews",
    "withdraw": "reviews",
    "keys": "keys",
    "codec-server": "keys",
    "vuln": "vuln",
    "audit": "audit",
    "report": "report",
}


def command_of(argv: Sequence[str]) -> str | None:
    """The command named on the command line (its first word that is not an option), if known."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` only (every command when None: --help, a typo, no command)."""
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
    for name in (COMMANDS[command],) if command else MODULES:
        importlib.import_module(f"cli.{name}").add_commands(sub, common)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser(command_of(argv)).parse_args(argv)
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
