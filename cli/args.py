"""Command-line flags through the door: each type checks one kind of value and says what is wrong
in one line; the parser itself reports in one line too (`error: ...`, exit 2), never a usage dump.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import NoReturn

from domain.inputs import check_text

# Temporal allows workflow ids up to 1000 bytes; ours are far shorter.
MAX_ID_LENGTH = 255
HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$"
)  # noqa: E501


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors as one line on stderr (exit 2), as every other refusal."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _text(value: str, what: str) -> str:
    try:
        check_text(value, what)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def workflow_id(kind: str, prefix: str, other: tuple[str, str] | None = None):
    """A review or case id: not empty, no spaces, not too long; a case id given where a review id
    belongs (or the other way round) is named for what it is."""

    def parse(value: str) -> str:
        value = _text(value, f"{kind} id").strip()
        if not value:
            raise argparse.ArgumentTypeError(f"the {kind} id is empty")
        if len(value) > MAX_ID_LENGTH or any(c.isspace() for c in value) or not value.isprintable():
            raise argparse.ArgumentTypeError(f"{value[:60]!r} is not a {kind} id (like {prefix}...)")
        if other and value.startswith(other[1]):
            raise argparse.ArgumentTypeError(f"{value} is a {other[0]}, not a {kind}")
        return value

    parse.__name__ = f"{kind} id"
    return parse


review_id = workflow_id("review", "review-", ("clearinghouse case (see `vuln status`)", "case-"))
case_id = workflow_id("case", "case-", ("review (see `status`)", "review-"))


def count(low: int, high: int, what: str = "number"):
    """An integer in [low, high]."""

    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number") from None
        if not low <= number <= high:
            floor = "positive" if low == 1 else f"at least {low}"
            raise argparse.ArgumentTypeError(f"{number} is out of range: {what} must be {floor} and at most {high}")
        return number

    parse.__name__ = what
    return parse


def address(value: str) -> str:
    """host:port, as Temporal's client takes it."""
    value = _text(value, "--address").strip()
    host, sep, port = value.rpartition(":")
    if not sep or not HOST.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{value[:80]!r} is not HOST:PORT (e.g. localhost:7233)")
    return value


def directory(value: str) -> Path:
    """A directory that exists, or does not exist yet (it will be made); never a file."""
    path = Path(_text(value, "--dir"))
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file, not a directory")
    if len(path.name.encode()) > 255:
        raise argparse.ArgumentTypeError(f"{value[:60]}...: a name longer than a file system allows")
    return path


def text(value: str) -> str:
    """Free text: valid Unicode (an argument that is not UTF-8 arrives with lone surrogates)."""
    return _text(value, "argument")
