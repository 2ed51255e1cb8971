"""CPU time and memory of a process, read from /proc (Linux): what each side spends."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # user + system, all threads
    rss_mb: float
    peak_rss_mb: float


def usage(pid: int) -> Usage:
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(stat[11]), int(stat[12])  # fields 14 and 15 of proc(5)
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return Usage(
        cpu_s=(utime + stime) / TICKS,
        rss_mb=_kb(status.get("VmRSS")) / 1024,
        peak_rss_mb=_kb(status.get("VmHWM")) / 1024,
    )


def _kb(value: str | None) -> float:
    return float(value.split()[0]) if value else 0.0


def loadavg() -> str:
    """The 1-minute load average and the core count, beside every figure (the machine is shared)."""
    return f"{Path('/proc/loadavg').read_text().split()[0]} on {os.cpu_count()} cores"
