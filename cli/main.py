"""Entry point: parse, dispatch, and turn every known failure into one line and an exit code.

Exit codes: 0 done; 1 the review turned the request away (rejected, unknown, duplicate);
2 bad input that never reached Temporal (file, field, agency, policy). Never a traceback: an error
nobody foresaw is still one line (exit 1), and output cut short by a closed pipe (`| head`) is not
an error.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError
from temporalio.service import RPCError

from api.errors import ReviewError
from cli.args import OneLineParser, address
from domain.inputs import Refused, one_line
from infra.connection import ClientConfigError
from infra.devserver import DevServerError
from infra.keys import KeyProblem

# Which module defines each command: a command imports only its own module (and what that
# imports), so `status` never loads the audit trail, the codec server's aiohttp or the workers.
MODULES = ("embedded", "reviews", "keys", "vuln", "audit", "report", "schema", "namespace")  # the order of --help
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
    "close": "reviews",
    "keys": "keys",
    "codec-server": "keys",
    "vuln": "vuln",
    "audit": "audit",
    "report": "report",
    "schema": "schema",
    "setup-namespace": "namespace",
}


CONNECTION_FLAGS = ("--address", "--namespace", "--profile")


def connection_flags_last(argv: Sequence[str]) -> list[str]:
    """`frontier-review --address H:P status ID` reads as `status ID --address H:P`.

    The connection flags belong to each command's parser (a command may run without Temporal), so
    written before the command they would be taken for its name. Moved to the end (before a `--`,
    if any), they mean what the user meant; anything else before the command is left to argparse.
    """
    argv = list(argv)
    moved: list[str] = []
    while argv and argv[0].split("=", 1)[0] in CONNECTION_FLAGS:
        take = 1 if "=" in argv[0] else 2
        moved += argv[:take]
        del argv[:take]
    end = argv.index("--") if "--" in argv else len(argv)
    return argv[:end] + moved + argv[end:]


def command_of(argv: Sequence[str]) -> str | None:
    """The command named on the command line (its first word that is not an option), if known."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for `command` only (every command when None: --help, a typo, no command)."""
    common = OneLineParser(add_help=False)
    conn = common.add_argument_group("connection (default: temporalio envconfig: profile file, TEMPORAL_* env)")
    conn.add_argument("--address", type=address, help="Temporal frontend host:port")
    conn.add_argument("--namespace", help="Temporal namespace")
    conn.add_argument("--profile", help="envconfig profile name")

    root = OneLineParser(
        prog="frontier-review",
        description="Pre-release review of frontier AI models, on Temporal.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in (COMMANDS[command],) if command else MODULES:
        importlib.import_module(f"cli.{name}").add_commands(sub, common)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    argv = connection_flags_last(sys.argv[1:] if argv is None else argv)
    try:
        args = parser(command_of(argv)).parse_args(argv)
    except SystemExit as e:  # --help (0), or a flag refused by the parser (2, one line already printed)
        return e.code if isinstance(e.code, int) else 2
    except ValueError as e:  # a bad FRONTIER_REVIEW_* default read while building the parser
        _say(e)
        return 2
    try:
        return asyncio.run(args.func(args))
    except BrokenPipeError:
        # The reader went away (`| head`): what it wanted it has. Quietly, as other Unix tools.
        _silence_stdout()
        return 0
    except (Refused, KeyProblem) as e:
        _say(e)
        return 2
    except ValidationError as e:  # a message that never reached Temporal (e.g. an empty --reason)
        _say(one_line(e))
        return 2
    except ClientConfigError as e:  # envconfig: unknown profile, unreadable config file
        _say(e)
        return 2
    except ReviewError as e:
        _say(e)
        return 1
    except RPCError as e:
        _say(f"Temporal: {e.message}")
        return 1
    except (ConnectionError, TimeoutError, DevServerError) as e:
        _say(e)
        return 1
    except OSError as e:  # a file or directory named on the command line: missing, not writable, ...
        where = f"{e.filename}: " if e.filename else ""
        _say(f"{where}{e.strerror or e}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001  a bug, but still one line: the contract is never a traceback
        _say(f"unexpected {type(e).__name__}: {str(e)[:300]} (please report this)")
        return 1


def _say(error: object) -> None:
    """The one line: whatever the error's text holds (an input's newline), it is printed as one line."""
    print("error: " + " ".join(str(error).split()), file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that flushing what is left cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
