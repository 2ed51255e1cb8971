"""Authenticated activity results: the party whose worker produced a result signs it, and the
workflow verifies the signature against trust anchors pinned in its own worker's configuration.

Why: anyone with namespace access can complete any activity by id (RespondActivityTaskCompletedById)
or poll any task queue, racing the genuine worker. A result is therefore believed only if the
producing party's private key signed it, over

    (workflow id, run id, activity id, party, result)

so it cannot be moved to another workflow, another run (a refiled review), another activity, or
presented as another party's. The run is the one that scheduled the activity (the activity's
`workflow_run_id`); a workflow knows it (see `scheduling_run`).

Trust anchors (party -> public keys) come from the worker's own key directory
(`trust-anchors.json`, infra/keys.py), read by worker.py at start and pinned here: this module is
passed through the workflow sandbox, so workflow code reads the worker's anchors, never anything
from a workflow input, a message or an activity result. Every key listed for a party verifies
(rotation: keep the old key listed while histories signed with it may replay).

A result that does not verify is *unverifiable*: the workflow records it (who, which activity, why)
and treats it like silence from that party, never as an answer.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ValidationError

from domain.persisted import PERSISTED

# party -> raw Ed25519 public keys, base64; any of them verifies (old ones kept for rotation).
TrustAnchors = dict[str, list[str]]

_pinned: TrustAnchors = {}

# The payload codec's marker for a payload it refused to open (infra/codec.py): fixed text only.
REFUSED = "refused_payload"


def is_refused(value: object) -> str | None:
    """The codec's reason if `value` (a decoded JSON value) is a refused payload's marker."""
    if isinstance(value, dict) and set(value) == {REFUSED} and isinstance(value[REFUSED], str):
        return value[REFUSED]
    return None


def pin(anchors: TrustAnchors) -> None:
    """Called by the worker at start with the anchors of its own configuration."""
    global _pinned
    _pinned = {party: list(keys) for party, keys in anchors.items()}


def pinned() -> TrustAnchors:
    return _pinned


# Set only by the audit's replay (audit/replay.py), never by a worker: the runs a history's results may
# have been signed for. The SDK's Replayer runs a reset run under its original run's id, so the reset
# run's own results would not verify there; the audit accepts a signature made for any run of the
# history it replays (the workflow id, activity id and party stay bound).
_replayed_runs: frozenset[str] = frozenset()


def replaying(runs: frozenset[str]) -> None:
    global _replayed_runs
    _replayed_runs = runs


class Attested(BaseModel):
    """What an attested activity returns: its result (JSON), the producing party and its signature."""

    model_config = PERSISTED  # in histories: unknown fields ignored (refused at the door)

    party: str
    result: Any
    signature: str


class UnverifiedResult(BaseModel):
    """A result a workflow did not believe: shown in its status and its history's audit."""

    activity_id: str
    party: str
    reason: str


class Unverifiable(Exception):
    """An activity result that is not (validly) signed by the party expected to produce it."""


def canonical(workflow_id: str, run_id: str, activity_id: str, party: str, result: Any) -> bytes:
    return json.dumps(
        {"workflow_id": workflow_id, "run_id": run_id, "activity_id": activity_id, "party": party, "result": result},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


def _as_json(result: BaseModel | Any) -> Any:
    return result.model_dump(mode="json") if isinstance(result, BaseModel) else result


class ResultSigner:
    """A party's key, signing the results of its own activities (inside the activity)."""

    def __init__(self, party: str, private_key: Ed25519PrivateKey) -> None:
        self.party = party
        self._key = private_key

    def attest(self, result: BaseModel | Any) -> Attested:
        from temporalio import activity  # only activities attest

        info = activity.info()
        return self.attest_for(info.workflow_id or "", info.workflow_run_id or "", info.activity_id, result)

    def attest_for(self, workflow_id: str, run_id: str, activity_id: str, result: BaseModel | Any) -> Attested:
        body = _as_json(result)
        signature = self._key.sign(canonical(workflow_id, run_id, activity_id, self.party, body))
        return Attested(party=self.party, result=body, signature=base64.b64encode(signature).decode())

    def seal(self, workflow_id: str, run_id: str) -> str:
        """The review office's word that this run of this workflow is a genuine review (shown as the
        `GenuineSeal` search attribute; see `seal_verifies`)."""
        return base64.b64encode(self._key.sign(_seal_bytes(workflow_id, run_id))).decode()

    def public_key_b64(self) -> str:
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()


def _seal_bytes(workflow_id: str, run_id: str) -> bytes:
    return json.dumps({"genuine_review": workflow_id, "run_id": run_id}, sort_keys=True).encode()


def seal_verifies(anchors: TrustAnchors, party: str, workflow_id: str, run_id: str, seal: str | None) -> bool:
    """Whether `seal` is `party`'s seal on this run (a seal copied from another run or review fails)."""
    if not seal:
        return False
    try:
        signature = base64.b64decode(seal, validate=True)
    except ValueError:
        return False
    for key in anchors.get(party, []):
        try:
            public_key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key))
            public_key.verify(signature, _seal_bytes(workflow_id, run_id))
            return True
        except (InvalidSignature, ValueError):
            continue
    return False


def verify(
    raw: Any,
    *,
    party: str,
    workflow_id: str,
    run_id: str,
    activity_id: str,
    anchors: TrustAnchors | None = None,
    other_runs: Iterable[str] = (),
) -> Any:
    """The result (JSON) of an attested activity, or Unverifiable naming why. Deterministic, no I/O:
    safe in workflow code. `raw` is the activity's result as decoded, untyped (a refused payload's
    marker, a plaintext forgery, anything). Signed for `run_id` or any of `other_runs` (a reset run's
    original; any run of a history the audit reads)."""
    anchors = pinned() if anchors is None else anchors
    reason = is_refused(raw)
    if reason is not None:
        raise Unverifiable(f"result refused by the payload codec ({reason})")
    try:
        envelope = Attested.model_validate(raw)
    except ValidationError:
        raise Unverifiable("result is not signed") from None
    if envelope.party != party:
        raise Unverifiable(f"result signed by {envelope.party!r}, not by {party!r}")
    keys = anchors.get(party, [])
    if not keys:
        raise Unverifiable(f"no trust anchor for {party!r} in this worker's configuration")
    try:
        signature = base64.b64decode(envelope.signature, validate=True)
    except ValueError:
        raise Unverifiable("signature is not base64") from None
    for run in (run_id, *sorted((_replayed_runs | set(other_runs)) - {run_id})):
        message = canonical(workflow_id, run, activity_id, party, envelope.result)
        for key in keys:
            try:
                Ed25519PublicKey.from_public_bytes(base64.b64decode(key)).verify(signature, message)
                return envelope.result
            except (InvalidSignature, ValueError):
                continue
    raise Unverifiable(
        f"signature does not verify against {party}'s trust anchors (forged, altered, or made for "
        "another workflow, run or activity)"
    )
