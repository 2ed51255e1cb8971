"""How models that go into event histories read: what they know, ignoring the rest.

Workflow inputs and results, update arguments, activity results and queries are decoded again
on every replay, by whatever code runs then. A model that refused unknown fields would make
removing a field a replay failure for every open review (and every recorded history). So the
models persisted in histories ignore fields they do not know; strictness stays at the door:
`domain/inputs.py` refuses an unknown field in a file or a request before anything is recorded,
and every message from outside is still validated and its signature verified.
"""

from __future__ import annotations

from pydantic import ConfigDict

# For models that are persisted in histories and never change once made (messages, inputs).
PERSISTED = ConfigDict(extra="ignore", frozen=True)
# For the workflow's own state, which it changes as the review goes on.
PERSISTED_STATE = ConfigDict(extra="ignore")
