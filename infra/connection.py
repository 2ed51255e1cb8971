"""One way to reach Temporal: `temporalio.envconfig` (profiles, TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TLS, API key), with explicit overrides, and one data converter."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

from infra.codec import EncryptionCodec
from infra.keys import KeyDirectory, PayloadKeyring

DEFAULT_ADDRESS = "localhost:7233"


def data_converter(keyring: PayloadKeyring | None = None) -> DataConverter:
    """The converter of every client, worker, replayer and codec server of this project:
    pydantic for the models, AES-GCM for every payload, failure messages encoded too.

    Without an explicit keyring, the installation's keyring is loaded (infra/keys.py)."""
    keyring = keyring or KeyDirectory().payload_keyring()
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def plain_data_converter() -> DataConverter:
    """No encryption: only for tests and tools that must see what an outsider sees."""
    return pydantic_data_converter


@dataclass(frozen=True)
class Target:
    address: str | None = None
    namespace: str | None = None
    profile: str | None = None

    @classmethod
    def from_args(cls, args: object) -> Target:
        """From the `--address`, `--namespace`, `--profile` options every command shares."""
        return cls(getattr(args, "address", None), getattr(args, "namespace", None), getattr(args, "profile", None))


class ClientConfigError(ValueError):
    """The Temporal client configuration (envconfig profile or file) cannot be used."""


class Unreachable(ConnectionError):
    """No Temporal server answered at the configured address."""


async def connect(
    target: Target = Target(),
    keyring: PayloadKeyring | None = None,
    runtime: Runtime | None = None,
    converter: DataConverter | None = None,
) -> Client:
    """A client through envconfig. `converter` replaces the project's (payload keys needed) for
    tools that never read a payload, such as `setup-namespace`."""
    try:
        config = ClientConfig.load_client_connect_config(profile=target.profile)
    except RuntimeError as e:  # the SDK's ConfigError (unknown profile, malformed file)
        raise ClientConfigError(f"Temporal client configuration: {e}") from None
    if target.address:
        config["target_host"] = target.address
    if target.namespace:
        config["namespace"] = target.namespace
    config.setdefault("target_host", DEFAULT_ADDRESS)
    converter = converter or data_converter(keyring)
    try:
        return await Client.connect(**config, data_converter=converter, runtime=runtime)
    except ValueError as e:  # e.g. TEMPORAL_ADDRESS="not a host": "invalid target URL"
        raise ClientConfigError(f"Temporal address {config['target_host']!r}: {e}") from None
    except RuntimeError as e:
        if "client connect" not in str(e).lower():
            raise
        refused = re.search(r"code: (Unauthenticated|PermissionDenied), message: \"([^\"]*)\"", str(e))
        if refused:  # a server or mutual-TLS proxy answered, and turned this client away
            raise Unreachable(
                f"Temporal at {config['target_host']} refused this client ({refused.group(1)}: {refused.group(2)}); "
                "check the profile's TLS client certificate, key and CA, or its API key"
            ) from None
        raise Unreachable(
            f"cannot reach Temporal at {config['target_host']} (start one with `frontier-review up`, "
            "or set --address / TEMPORAL_ADDRESS)"
        ) from None
