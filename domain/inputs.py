"""The door: every input from outside (a file, a flag, an API call) becomes a model here, or is
refused with one line naming what is wrong. Nothing refused ever reaches Temporal.

What the door refuses, and why:
- anything but UTF-8 (a Latin-1 or binary file), and text with lone surrogates (they cannot be
  encoded into a payload, so a workflow would never decode its own input);
- duplicate JSON keys (the last one would silently win), NaN, Infinity and numbers out of range
  (1e400 reads as infinity, which the data converter writes as null: the workflow could not
  decode its own input and would stick forever);
- JSON nested deeper than any of our models (a parser recursion error otherwise);
- inputs larger than the caps below, which sit well under Temporal's limits (2 MB per payload,
  and the history that every copy of the input goes into).

The models themselves (domain/disclosure.py, domain/messages.py, ...) refuse non-finite numbers,
`true` as a number and `"yes"` as a bool; `round_trips` proves that a model, however it was made
(`model_copy` skips validation), reads back as itself, as the workflow will read it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

# A disclosure of 500 partners is about 180 KB; every copy of it goes into the review's history
# (its input, and the five standards checks' inputs): 6 x 256 KiB stays far under the 2 MB payload
# and 50 MB history limits.
MAX_FILE_BYTES = 256 * 1024
# A message (an update's argument) is smaller: text fields are capped at 4000 characters.
MAX_MESSAGE_BYTES = 64 * 1024
# Our deepest model (a finding's vulnerability report's list of sectors) nests 4 levels.
MAX_DEPTH = 16
# Integers in our inputs are small; a 5000-digit one is an attack on the parser, not a value.
MAX_INT_DIGITS = 30

M = TypeVar("M", bound=BaseModel)


class Refused(ValueError):
    """Input refused at the door: one line naming what is wrong; nothing was sent or recorded."""

    def __init__(self, reason: str) -> None:
        # One line, whatever the input put into the reason (a key with a newline, say).
        super().__init__(" ".join(str(reason).split("\n")).replace("\r", " "))


def read_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, or Refused: missing, a directory, unreadable, too large."""
    file = Path(path)
    try:
        if file.is_dir():
            raise Refused(f"{path}: is a directory, not a file")
        with file.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise Refused(f"{path}: no such file") from None
    except OSError as e:
        raise Refused(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise Refused(f"{path}: larger than {max_bytes // 1024} KiB, the most accepted")
    return data


def decode_utf8(data: bytes, source: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refused(f"{source}: not UTF-8 text (byte {e.start} cannot be decoded); save it as UTF-8") from None
    return text.removeprefix("\ufeff")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise Refused(f"key {key!r} appears twice in one object")
        seen[key] = value
    return seen


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused(f"number {text} is out of range")
    return value


def _small_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Refused(f"number {text[:20]}... is out of range")
    return int(text)


def _constant(name: str) -> None:
    raise Refused(f"{name} is not a number JSON allows (only finite numbers are accepted)")


def check_text(value: Any, source: str, *, depth: int = 0) -> None:
    """Refuse nesting deeper than MAX_DEPTH and strings no payload can carry (lone surrogates,
    which a non-UTF-8 command-line argument or a `\\ud800` escape produce)."""
    if depth > MAX_DEPTH:
        raise Refused(f"{source}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Refused(f"{source}: text {value[:40]!r} is not valid Unicode (a lone surrogate)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            check_text(k, source, depth=depth + 1)
            check_text(v, source, depth=depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            check_text(v, source, depth=depth + 1)


def parse_json(data: bytes | str, source: str) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, finite numbers, bounded depth."""
    text = decode_utf8(data, source) if isinstance(data, bytes) else data
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_finite,
            parse_int=_small_int,
            parse_constant=_constant,
        )
    except Refused as e:
        raise Refused(f"{source}: {e}") from None
    except json.JSONDecodeError as e:
        raise Refused(f"{source}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise Refused(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    check_text(value, source)
    return value


def one_line(e: ValidationError) -> str:
    """A pydantic error as one line naming each bad field."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) if str(x).isprintable() else repr(str(x)) for x in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_model(model: type[M], data: bytes | str, source: str, what: str) -> M:
    """Bytes (a file's, a request body's) through the door into `model`."""
    text = decode_utf8(data, source) if isinstance(data, bytes) else data
    parse_json(text, source)
    try:
        # From the text, as the data converter reads a payload: what passes here decodes in a worker.
        # Strict here, whatever the model: models kept in histories ignore fields they do not know
        # (so that replay survives a field removed later), but a field nobody reads is refused at
        # the door, where it is most likely a typo.
        return model.model_validate_json(text, extra="forbid")
    except ValidationError as e:
        raise Refused(f"{source}: invalid {what}: {one_line(e)}") from None


def load_model(model: type[M], path: str | Path, what: str, *, max_bytes: int = MAX_FILE_BYTES) -> M:
    """A JSON file through the door into `model`."""
    return parse_model(model, read_file(path, max_bytes=max_bytes), str(path), what)


def round_trips(value: M, what: str, *, max_bytes: int) -> M:
    """Prove that `value` reads back as itself from its JSON, as a worker will decode it (the
    pydantic data converter writes `model_dump_json` and reads `validate_json`), and that it fits.
    A model made with `model_copy(update=...)` or `model_construct` skipped validation: this is
    where what it carries (infinity, a lone surrogate, a field out of range) is refused."""
    try:
        encoded = value.model_dump_json().encode("utf-8")
    except (ValueError, UnicodeError) as e:  # pydantic's serialisation errors are ValueErrors
        raise Refused(f"{what}: cannot be encoded: {str(e).splitlines()[0]}") from None
    if len(encoded) > max_bytes:
        raise Refused(f"{what}: {len(encoded) // 1024} KiB encoded, more than the {max_bytes // 1024} KiB accepted")
    try:
        back = type(value).model_validate_json(encoded, extra="forbid")
    except ValidationError as e:
        raise Refused(f"{what}: invalid: {one_line(e)}") from None
    if back != value:
        raise Refused(f"{what}: does not read back as sent (a value out of range?)")
    return back
