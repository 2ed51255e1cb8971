"""A namespace ready for frontier-review: registered, with every search attribute our workflows
upsert. Idempotent: what exists is checked, never changed; only what is missing is created.

It uses the workflow service (namespaces) and the operator service (search attributes) of a
self-hosted cluster or a dev server. Temporal Cloud creates both through its own cloud API
(`tcld`), not these calls: there this command only checks and reports what is missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.search_attributes import ALL_SEARCH_ATTRIBUTES

# A namespace registered moments ago takes a few seconds to reach every frontend's cache.
NAMESPACE_VISIBLE_WITHIN = 30.0


class NamespaceConflict(RuntimeError):
    """Something exists under one of our names but is not what we need; we never change it."""


@dataclass
class SetupReport:
    namespace: str
    namespace_created: bool = False
    retention: timedelta | None = None
    attributes_created: list[str] = field(default_factory=list)
    attributes_present: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.namespace_created or bool(self.attributes_created)

    def as_json(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "namespace_created": self.namespace_created,
            "retention_days": self.retention.days if self.retention is not None else None,
            "attributes_created": self.attributes_created,
            "attributes_present": self.attributes_present,
            "changed": self.changed,
        }

    def lines(self) -> list[str]:
        days = f"{self.retention.days} days" if self.retention is not None else "unknown"
        out = [f"namespace {self.namespace}: {'created' if self.namespace_created else 'exists'} (retention {days})"]
        if self.attributes_created:
            out.append(f"search attributes created: {', '.join(self.attributes_created)}")
        if self.attributes_present:
            out.append(f"search attributes already present: {len(self.attributes_present)}")
        out.append("changed" if self.changed else "nothing to do")
        return out


def _type_name(value: int) -> str:
    return IndexedValueType.Name(value).removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")


async def _describe(client: Client, namespace: str):
    try:
        return await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _custom_attributes(client: Client, namespace: str) -> dict[str, int]:
    """The namespace's custom search attributes, waiting out a namespace not yet in every cache."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + NAMESPACE_VISIBLE_WITHIN
    while True:
        try:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace)
            )
            return dict(listed.custom_attributes)
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND or loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def setup_namespace(client: Client, namespace: str, retention: timedelta) -> SetupReport:
    report = SetupReport(namespace)
    described = await _describe(client, namespace)
    if described is None:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                description="frontier-review: pre-release review of frontier AI models",
                workflow_execution_retention_period=Duration(seconds=int(retention.total_seconds())),
            )
        )
        report.namespace_created = True
        report.retention = retention
    else:
        report.retention = described.config.workflow_execution_retention_ttl.ToTimedelta()

    existing = await _custom_attributes(client, namespace)
    missing: dict[str, int] = {}
    for key in ALL_SEARCH_ATTRIBUTES:
        wanted = int(key.indexed_value_type)
        have = existing.get(key.name)
        if have is None:
            missing[key.name] = wanted
        elif have != wanted:
            raise NamespaceConflict(
                f"search attribute {key.name} exists in {namespace} as {_type_name(have)}, "
                f"not {_type_name(wanted)}: remove it by hand (this command changes nothing that exists)"
            )
        else:
            report.attributes_present.append(key.name)
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
        report.attributes_created = sorted(missing)
    return report
