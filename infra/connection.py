"""One way to reach Temporal: `temporalio.envconfig` (profiles, TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TLS, API key), with explicit overrides, and one data converter."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

DEFAULT_ADDRESS = "localhost:7233"


def data_converter() -> DataConverter:
    """The converter of every client, worker and replayer of this project."""
    return pydantic_data_converter


@dataclass(frozen=True)
class Target:
    address: str | None = None
    namespace: str | None = None
    profile: str | None = None


async def connect(target: Target = Target(), runtime: Runtime | None = None) -> Client:
    config = ClientConfig.load_client_connect_config(profile=target.profile)
    if target.address:
        config["target_host"] = target.address
    if target.namespace:
        config["namespace"] = target.namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    return await Client.connect(**config, data_converter=data_converter(), runtime=runtime)
