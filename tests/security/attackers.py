"""The attackers of tests/security: what someone with namespace access holds.

- `keyless`: a plain `temporalio` client, default converter, no key of any kind (any lab, vendor or
  partner with a namespace credential).
- `insider`: the project's converter with the payload key (so it reads and seals payloads, as any
  party's worker host does), but not the deciding party's signing key.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from api.waiting import until
from infra.connection import data_converter
from infra.keys import KeyDirectory


async def keyless(env: WorkflowEnvironment, namespace: str) -> Client:
    return await env.connect_client(
        namespace=namespace, data_converter=DataConverter.default, identity="mallory@keyless"
    )


async def insider(env: WorkflowEnvironment, namespace: str, keys: KeyDirectory) -> Client:
    return await env.connect_client(
        namespace=namespace, data_converter=data_converter(keys.payload_keyring()), identity="mallory@insider"
    )


async def complete_by_id(client: Client, workflow_id: str, activity_id: str, result: Any) -> None:
    """RespondActivityTaskCompletedById, as the issue's attacker did."""
    await client.get_async_activity_handle(workflow_id=workflow_id, run_id=None, activity_id=activity_id).complete(
        result
    )


async def activity_events(client: Client, workflow_id: str) -> dict[str, list[str]]:
    """activity id -> the identities that completed it (from the history: who answered what)."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, str] = {}
    answers: dict[str, list[str]] = {}
    for e in history.events:
        if e.HasField("activity_task_scheduled_event_attributes"):
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_id
            answers.setdefault(e.activity_task_scheduled_event_attributes.activity_id, [])
        elif e.HasField("activity_task_completed_event_attributes"):
            a = e.activity_task_completed_event_attributes
            answers[scheduled[a.scheduled_event_id]].append(a.identity)
    return answers


async def scheduled(client: Client, workflow_id: str, activity_id: str, timeout: float = 30) -> None:
    """Wait until the workflow has scheduled `activity_id`."""
    await until(
        lambda: activity_events(client, workflow_id), lambda scheduled: activity_id in scheduled,
        timeout=timeout, interval=0.05, what=f"{workflow_id} scheduling {activity_id}",
    )  # fmt: skip
