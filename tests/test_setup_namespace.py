"""`frontier-review setup-namespace` against the real dev server: a fresh namespace gets
registered with every search attribute; a second run changes nothing; a name taken with
the wrong type is reported, and nothing is changed."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.search_attributes import ALL_SEARCH_ATTRIBUTES, REVIEW_STAGE
from tests.test_cli import CLI, Run


async def setup_cli(address: str, *args: str, keys_dir: Path) -> Run:
    proc = await asyncio.create_subprocess_exec(
        CLI, "setup-namespace", "--address", address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # An operator's host without payload keys: setting up a namespace reads no payload.
        env={"PATH": str(Path(sys.executable).parent), "TEMPORAL_CONFIG_FILE": "/nonexistent",
             "FRONTIER_REVIEW_KEYS_DIR": str(keys_dir)},
    )  # fmt: skip
    out, err = await proc.communicate()
    return Run(proc.returncode, out.decode(), err.decode())


async def attributes(client: Client, namespace: str) -> dict[str, int]:
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    return dict(listed.custom_attributes)


async def test_setup_namespace_registers_everything_once(env: WorkflowEnvironment, tmp_path: Path) -> None:
    address = env.client.service_client.config.target_host
    namespace = f"setup-{uuid.uuid4().hex[:8]}"

    first = await setup_cli(address, "--namespace", namespace, "--retention-days", "45", keys_dir=tmp_path)
    assert first.code == 0, first.err
    assert f"namespace {namespace}: created (retention 45 days)" in first.out
    assert "nothing to do" not in first.out
    described = await env.client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    assert described.config.workflow_execution_retention_ttl.ToTimedelta().days == 45
    registered = await attributes(env.client, namespace)
    for key in ALL_SEARCH_ATTRIBUTES:
        assert registered.get(key.name) == int(key.indexed_value_type), key.name

    # The second run (another retention asked for) changes nothing and says so.
    second = await setup_cli(address, "--namespace", namespace, "--retention-days", "7", "--json", keys_dir=tmp_path)
    assert second.code == 0, second.err
    assert json.loads(second.out) == {
        "namespace": namespace, "namespace_created": False, "retention_days": 45, "attributes_created": [],
        "attributes_present": [k.name for k in ALL_SEARCH_ATTRIBUTES], "changed": False,
    }  # fmt: skip
    again = await env.client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    assert again.config.workflow_execution_retention_ttl.ToTimedelta().days == 45
    assert await attributes(env.client, namespace) == registered


async def test_setup_namespace_changes_nothing_it_did_not_make(env: WorkflowEnvironment, tmp_path: Path) -> None:
    address = env.client.service_client.config.target_host
    namespace = f"taken-{uuid.uuid4().hex[:8]}"
    await env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period={"seconds": 86400})
    )
    # Someone registered ReviewStage as free text: filtering by stage would silently stop working.
    for _ in range(60):
        try:
            await env.client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=namespace, search_attributes={REVIEW_STAGE.name: IndexedValueType.INDEXED_VALUE_TYPE_TEXT}
                )
            )
            break
        except Exception:  # the new namespace is not in the server's cache yet
            await asyncio.sleep(0.5)
    before = await attributes(env.client, namespace)
    assert before.get(REVIEW_STAGE.name) == IndexedValueType.INDEXED_VALUE_TYPE_TEXT

    run = await setup_cli(address, "--namespace", namespace, keys_dir=tmp_path)
    assert run.code == 1
    assert run.out == ""
    assert run.err.count("\n") == 1 and "ReviewStage" in run.err and "Text, not Keyword" in run.err
    assert "Traceback" not in run.err
    assert await attributes(env.client, namespace) == before  # nothing else was added either

    bad = await setup_cli(address, "--namespace", namespace, "--retention-days", "0", keys_dir=tmp_path)
    assert bad.code == 2 and bad.err.startswith("error: --retention-days") and "Traceback" not in bad.err
