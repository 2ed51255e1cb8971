"""Hosts on one machine: Linux network namespaces joined by veth pairs (Debian's iproute2).

Every name carries the creating process's id, so a run cleans up only what it made, and a
later run removes what a killed run left behind (its process is gone)."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

log = logging.getLogger(__name__)
PREFIX = "frmh"  # frontier-review multi-host


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def skip(reason: str) -> None:
    log.warning("multi-host test skipped: %s", reason)
    pytest.skip(f"SKIPPED, NOT PASSED: {reason}")


def ensure_netns_allowed() -> None:
    """Root, iproute2 (installed with apt-get when missing), and a kernel that lets us make a namespace."""
    if os.geteuid() != 0:
        skip("network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN); this run is not root")
    if shutil.which("ip") is None:
        if shutil.which("apt-get") is None:
            skip("the `ip` command (iproute2) is missing and apt-get is not available")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600, check=False)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "iproute2"], capture_output=True, text=True, env=env, timeout=600
        )
        if done.returncode != 0 or shutil.which("ip") is None:
            skip(f"apt-get could not install iproute2: {done.stderr.strip()[-300:]}")
    probe = f"{PREFIX}-{os.getpid()}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        skip(f"the kernel refused `ip netns add`: {made.stderr.strip()}")
    ip("netns", "del", probe, check=False)


def remove_leftovers() -> None:
    """Namespaces and root-side links of earlier runs whose process is gone (killed mid-test)."""
    for line in ip("netns", "list").stdout.splitlines():
        m = re.match(rf"({PREFIX}-(\d+)-\S+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            ip("netns", "del", m.group(1), check=False)
    for m in re.finditer(rf"^\d+: ({PREFIX}(\d+)r)[@:]", ip("-o", "link", "show").stdout, re.M):
        if not os.path.exists(f"/proc/{m.group(2)}"):
            ip("link", "del", m.group(1), check=False)


@dataclass(frozen=True)
class Link:
    """A veth pair; `near` is the end in the server's namespace (or the root namespace)."""

    near_ns: str | None
    near: str
    near_ip: str
    far_ns: str
    far: str
    far_ip: str


class Topology:
    """Namespaces and links made by this process; `close()` removes all of them, and checks."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.namespaces: list[str] = []
        self.links: list[Link] = []

    def namespace(self, role: str) -> str:
        name = f"{PREFIX}-{self.pid}-{role}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, near_ns: str | None, far_ns: str, subnet: str, near_name: str, far_name: str) -> Link:
        """Join two namespaces (near_ns None: the root namespace, where this test runs)."""
        net = ipaddress.ip_network(subnet)
        near_ip, far_ip = (str(h) for h in list(net.hosts())[:2])
        # Made inside the namespaces at once: no name ever appears in the root namespace but ours.
        where = ["-n", near_ns] if near_ns else []
        ip(*where, "link", "add", near_name, "type", "veth", "peer", "name", far_name, "netns", far_ns)
        link = Link(near_ns, near_name, near_ip, far_ns, far_name, far_ip)
        self.links.append(link)
        for ns, dev, addr in ((near_ns, near_name, near_ip), (far_ns, far_name, far_ip)):
            where = ["-n", ns] if ns else []
            ip(*where, "addr", "add", f"{addr}/{net.prefixlen}", "dev", dev)
            ip(*where, "link", "set", dev, "up")
        return link

    def set_link(self, link: Link, up: bool) -> None:
        """Cut or restore a host's link (both ends lose carrier when one end is down)."""
        where = ["-n", link.near_ns] if link.near_ns else []
        ip(*where, "link", "set", link.near, "up" if up else "down")

    def root_subnet(self) -> str:
        """A /30 for the root namespace's link that overlaps no network on this machine (another
        run of this test, by another process, picks another)."""
        taken = [
            ipaddress.ip_interface(m.group(1)).network
            for m in re.finditer(r"inet (\S+)", ip("-4", "-o", "addr", "show").stdout)
        ]
        for n in range(self.pid, self.pid + 16384):
            index = n % 16384
            candidate = ipaddress.ip_network(f"10.{213 + index // 4096}.{(index // 16) % 256}.{(index % 16) * 4}/30")
            if not any(candidate.overlaps(net) for net in taken):
                return str(candidate)
        raise AssertionError("no free /30 for the root link")

    def exec_prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def close(self) -> None:
        for link in self.links:
            if link.near_ns is None:
                ip("link", "del", link.near, check=False)
        for ns in reversed(self.namespaces):
            ip("netns", "del", ns, check=False)
        left = [ns for ns in ip("netns", "list").stdout.split() if ns.startswith(f"{PREFIX}-{self.pid}-")]
        root_links = ip("-o", "link", "show").stdout
        left += [link.near for link in self.links if link.near_ns is None and f" {link.near}@" in root_links]
        assert not left, f"the multi-host test left behind: {left}"
