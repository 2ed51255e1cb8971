"""Debian's nginx as the mutual-TLS gRPC proxy in front of a dev server, configured from
deploy/nginx/temporal-grpc-mtls.conf.template (the file a deployment uses)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.pki import CertificateAuthority, Issued

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx" / "temporal-grpc-mtls.conf.template"
OPERATOR_CN = "operator"


def ensure_nginx() -> str:
    """/usr/sbin/nginx, installed with apt-get when missing (root only; otherwise the test is skipped)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("SKIPPED, NOT PASSED: nginx is missing and apt-get cannot install it without root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "nginx"],
            check=True, env=env, timeout=900, capture_output=True,
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"SKIPPED, NOT PASSED: apt-get could not install nginx: {e}")
    # Debian's package starts a system nginx on port 80; this test runs its own.
    subprocess.run(["service", "nginx", "stop"], capture_output=True, check=False)
    return shutil.which("nginx") or "/usr/sbin/nginx"


def render(run_dir: Path, *, listen: str, upstream: str, server: Issued, client_ca: Path) -> Path:
    values = {
        "FR_RUN_DIR": str(run_dir),
        "FR_LISTEN": listen,
        "FR_UPSTREAM": upstream,
        "FR_SERVER_CERT": str(server.cert),
        "FR_SERVER_KEY": str(server.key),
        "FR_CLIENT_CA": str(client_ca),
        "FR_OPERATOR_CN": OPERATOR_CN,
        # The dev server behind the proxy speaks plain gRPC on a private address.
        "FR_UPSTREAM_SCHEME": "grpc",
        "FR_UPSTREAM_CLIENT_CERT": str(server.cert),
        "FR_UPSTREAM_CLIENT_KEY": str(server.key),
        "FR_UPSTREAM_CA": str(client_ca),
        "FR_UPSTREAM_NAME": "temporal-frontend",
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${FR_" not in text, "a placeholder of the nginx template was left unfilled"
    run_dir.mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(text)
    return conf


class GrpcProxy:
    """nginx in the foreground (`daemon off`), optionally inside a network namespace."""

    def __init__(
        self,
        run_dir: Path,
        ca: CertificateAuthority,
        *,
        listen_host: str,
        listen_port: int,
        upstream: str,
        netns: str | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.listen_host, self.listen_port = listen_host, listen_port
        server = ca.issue("temporal-frontend", server=True, ips=(listen_host,))
        self.conf = render(
            run_dir, listen=f"{listen_host}:{listen_port}", upstream=upstream, server=server, client_ca=ca.cert
        )
        nginx = ensure_nginx()
        prefix = ["ip", "netns", "exec", netns] if netns else []
        check = subprocess.run([*prefix, nginx, "-t", "-c", str(self.conf)], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx refused the rendered template: {check.stderr}"
        self.process = subprocess.Popen(
            [*prefix, nginx, "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(run_dir / "stderr.log", "wb"),  # noqa: SIM115 (closed with the process)
        )
        self.netns = netns

    def wait_listening(self, timeout: float = 15) -> None:
        """Wait until the proxy accepts connections (reachable from the test's own namespace)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited: {(self.run_dir / 'stderr.log').read_text()}")
            try:
                with socket.create_connection((self.listen_host, self.listen_port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def error_log(self) -> str:
        path = self.run_dir / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
