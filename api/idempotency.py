"""Idempotency keys: the message id a message keeps however often it is sent.

The message id is the Temporal update id, and a workflow applies an update id once. A message
sent without an explicit id gets one derived from its content, its sender and where it goes, so
a command run again after a timeout, a crash or a lost reply is the same message and is applied
once. A sender who really means to send the same thing twice gives each its own id
(`message_id=`, `--message-id` on the CLI).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TypeVar

from domain.messages import Message

M = TypeVar("M", bound=Message)

_KEY = re.compile(r"[A-Za-z0-9._:@-]{1,128}")


def check_message_id(message_id: str) -> str:
    """A caller's own idempotency key: 1-128 letters, digits and . _ : @ -."""
    if not _KEY.fullmatch(message_id):
        raise ValueError(f"message id {message_id[:40]!r} must be 1-128 characters: letters, digits and . _ : @ -")
    return message_id


def derived_message_id(target: str, update: str, message: Message) -> str:
    """The same content, from the same sender, for the same workflow and update: the same id."""
    content = message.model_dump(mode="json", exclude={"message_id", "signature"})
    canonical = json.dumps([target, update, content], sort_keys=True, separators=(",", ":"))
    return "m-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def keyed(target: str, update: str, message: M, message_id: str | None = None) -> M:
    """`message` with its idempotency key: `message_id` if given, the id it was built with if one
    was set explicitly, else one derived from its content."""
    if message_id is not None:
        return message.model_copy(update={"message_id": check_message_id(message_id)})
    if "message_id" in message.model_fields_set:
        return message
    return message.model_copy(update={"message_id": derived_message_id(target, update, message)})
