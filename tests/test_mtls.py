"""Mutual TLS end to end: nginx (deploy/nginx/temporal-grpc-mtls.conf.template) in front of a
dev server, client certificates required. Every worker, the operators' and agencies' clients,
the CLI and the `temporal` CLI decoding through the codec server connect only through an
envconfig profile with their party's certificate; a client without one, or with one from
another CA, is refused, and a party's certificate cannot terminate, reset or administer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.agency import AgencyClient
from cli.keys import serve_codec
from domain.agencies import Agency
from domain.status import Stage
from infra.connection import Target, Unreachable, connect
from infra.devserver import DevServer, free_port, start_dev_server
from infra.keys import KeyDirectory
from tests.conftest import disclose, mythos, running, wait_stage
from tests.grpc_proxy import OPERATOR_CN, GrpcProxy
from tests.pki import CertificateAuthority, envconfig_profile
from tests.test_cli import CLI
from worker import REVIEW, WorkerConfig, build_workers

PARTIES = [OPERATOR_CN, REVIEW, *(a.value for a in Agency)]


@dataclass
class Secured:
    """A dev server reachable with mutual TLS through the proxy, and a profile file per party."""

    server: DevServer
    proxy: GrpcProxy
    config_dir: Path
    codec_url: str

    def profile(self, party: str) -> Path:
        return self.config_dir / f"{party}.toml"

    async def connect(self, party: str) -> Client:
        os.environ["TEMPORAL_CONFIG_FILE"] = str(self.profile(party))
        try:
            return await connect(Target(profile=party))
        finally:
            del os.environ["TEMPORAL_CONFIG_FILE"]


@pytest_asyncio.fixture(scope="module")
async def secured(keys: KeyDirectory, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    base = tmp_path_factory.mktemp("mtls")
    ca = CertificateAuthority(base / "ca", "frontier-review test CA")
    rogue = CertificateAuthority(base / "rogue", "someone else's CA")
    server = await start_dev_server(keyring=keys.payload_keyring(), log_file=base / "dev-server.log")
    upstream = server.client.service_client.config.target_host
    proxy = GrpcProxy(base / "nginx", ca, listen_host="127.0.0.1", listen_port=free_port(), upstream=upstream)
    codec_port = free_port()
    codec = await serve_codec(keys, "127.0.0.1", codec_port, ["http://localhost:8233"])
    try:
        proxy.wait_listening()
        address = f"127.0.0.1:{proxy.listen_port}"
        profiles = base / "profiles"
        for party in PARTIES:
            envconfig_profile(
                profiles / f"{party}.toml",
                party,
                address=address,
                ca=ca.cert,
                client=ca.issue(party),
                namespace="default",
            )
        envconfig_profile(
            profiles / "nocert.toml", "nocert", address=address, ca=ca.cert, client=None, namespace="default"
        )
        envconfig_profile(
            profiles / "rogue.toml",
            "rogue",
            address=address,
            ca=ca.cert,
            client=rogue.issue("dod"),
            namespace="default",
        )
        # The `temporal` CLI reads the codec server's endpoint and token from the same profile.
        with open(profiles / f"{OPERATOR_CN}.toml", "a") as f:
            f.write(
                f'[profile.{OPERATOR_CN}.codec]\nendpoint = "http://127.0.0.1:{codec_port}"\n'
                f'auth = "Bearer {keys.codec_token()}"\n'
            )
        yield Secured(server, proxy, profiles, f"http://127.0.0.1:{codec_port}")
    finally:
        await codec.cleanup()
        proxy.stop()
        await server.shutdown()


async def run(*args: str, profile_file: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": str(Path(sys.executable).parent), "COLUMNS": "200", "TEMPORAL_CONFIG_FILE": str(profile_file),
             "FRONTIER_REVIEW_KEYS_DIR": os.environ["FRONTIER_REVIEW_KEYS_DIR"], "HOME": str(profile_file.parent)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture(scope="module")
async def parties(secured: Secured, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Client]]:
    """Every party's client, each on its own certificate; the review office's and each agency's
    workers run on their own party's client."""
    clients = {party: await secured.connect(party) for party in PARTIES}
    config = WorkerConfig(data_dir=tmp_path_factory.mktemp("mtls-records"))
    workers = build_workers(clients[REVIEW], [REVIEW], config)
    for agency in Agency:
        workers += build_workers(clients[agency.value], [agency.value], config)
    async with running(workers):
        yield clients


async def test_review_runs_to_release_with_every_party_on_its_own_certificate(
    secured: Secured, parties: dict[str, Client]
) -> None:
    review_id = await disclose(parties[OPERATOR_CN], mythos(), _policy())
    await wait_stage(parties[OPERATOR_CN], review_id, Stage.AWAITING_DETERMINATION, timeout=60)
    await AgencyClient(parties["nsa"], "nsa").determine(review_id, covered=False, rationale="not covered")
    released = await wait_stage(parties[OPERATOR_CN], review_id, Stage.RELEASED, timeout=60)
    assert len(released.standards) == 5
    assert released.partners_granted
    # Every party's calls went through the proxy, each under its own certificate's name.
    log = (secured.proxy.run_dir / "access.log").read_text()
    for party in PARTIES:
        assert f"party={party} status=200" in log, party


async def test_cli_and_the_codec_servers_clients_use_the_profile(secured: Secured, parties: dict[str, Client]) -> None:
    review_id = await disclose(parties[OPERATOR_CN], mythos(), _policy())
    code, out, err = await run(
        CLI, "status", review_id, "--json", "--profile", OPERATOR_CN, profile_file=secured.profile(OPERATOR_CN)
    )
    assert code == 0, err
    assert json.loads(out)["review_id"] == review_id

    # The `temporal` CLI, through the proxy with the operator's certificate, decodes the
    # (encrypted) disclosure through the codec server named in the profile.
    temporal = str(Path(sys.executable).parent / "temporal")
    code, out, err = await run(
        temporal, "workflow", "show", "-w", review_id, "--profile", OPERATOR_CN, "--output", "json",
        profile_file=secured.profile(OPERATOR_CN),
    )  # fmt: skip
    assert code == 0, err
    encoding, data = _start_input(out)
    assert encoding == "json/plain"
    assert json.loads(data)["disclosure"]["model_name"] == "Mythos"  # readable only decoded
    # The review office's profile names no codec server: the same history, sealed.
    code, raw, err = await run(
        temporal, "workflow", "show", "-w", review_id, "--profile", REVIEW, "--output", "json",
        profile_file=secured.profile(REVIEW),
    )  # fmt: skip
    assert code == 0, err
    encoding, data = _start_input(raw)
    assert encoding != "json/plain" and b"Mythos" not in data


@pytest.mark.parametrize("profile", ["nocert", "rogue"])
async def test_a_client_without_our_certificate_is_refused(secured: Secured, profile: str) -> None:
    before = secured.proxy.error_log()
    with pytest.raises(Unreachable):
        await secured.connect(profile)
    added = secured.proxy.error_log()[len(before) :]
    expected = "no required SSL certificate" if profile == "nocert" else "certificate verify error"
    assert expected in added, added
    # The CLI says so in one line, without a traceback.
    code, out, err = await run(CLI, "list", "--profile", profile, profile_file=secured.profile(profile))
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "refused this client (Unauthenticated" in err and "Traceback" not in err


async def test_a_party_cannot_terminate_or_administer(secured: Secured, parties: dict[str, Client]) -> None:
    operator, dod = parties[OPERATOR_CN], parties["dod"]
    review_id = await disclose(operator, mythos(), _policy())
    with pytest.raises(RPCError) as refused:
        await dod.get_workflow_handle(review_id).terminate("a stolen agency certificate")
    assert refused.value.status == RPCStatusCode.PERMISSION_DENIED
    description = await operator.get_workflow_handle(review_id).describe()
    assert description.status is not None and description.status.name == "RUNNING"
    # The operator API (search attributes) is the operators' alone, too.
    code, _, err = await run(CLI, "setup-namespace", "--profile", "dod", profile_file=secured.profile("dod"))
    assert code == 1 and err == "error: Temporal: this certificate may not make this call\n"
    code, out, err = await run(
        CLI, "setup-namespace", "--profile", OPERATOR_CN, profile_file=secured.profile(OPERATOR_CN)
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "nothing to do"
    await operator.get_workflow_handle(review_id).terminate("test done")


def _start_input(history_json: str) -> tuple[str, bytes]:
    """The encoding and bytes of a review's start input, from `temporal workflow show --output json`."""
    started = json.loads(history_json)["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    return base64.b64decode(payload["metadata"]["encoding"]).decode(), base64.b64decode(payload["data"])


def _policy():
    from domain.policy import load_policy

    return load_policy("eo-2026")
