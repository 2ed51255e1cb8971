"""The benchmark's figures: one row per phase, then the project/bare ratios over repetitions.

Columns: `per s` reviews (or reports) finished per second of the phase; `e2e` from the first
call to the result (for a new case: until it is parked in embargo); `update` each message as
its sender waits for it (a report's receipt); `events` and `KB` of a sampled workflow's history
(encoded as stored); `worker ms` and `server ms` CPU time (user + system, from /proc) of the
worker process and the dev server during the phase, per review; `load` the 1-minute load
average when the phase ended (the machine may be shared).

With a `bare+codec` side (`--with-bare-codec`), `codec share of project - bare` is
(bare+codec - bare) / (project - bare) for each figure and repetition: the part of the project's
extra cost that the payload codec alone accounts for (near 0: not the codec; near 1: all of it).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field


@dataclass
class Phase:
    side: str
    path: str
    rep: int
    n: int
    seconds: float
    failed: int
    end_to_end: list[float] = field(repr=False)
    updates: list[float] = field(repr=False)
    worker_cpu_s: float
    server_cpu_s: float
    events: float
    history_bytes: float
    worker_rss_mb: float
    load: str

    @property
    def per_second(self) -> float:
        """Finished per second (failures do not count)."""
        return (self.n - self.failed) / self.seconds

    @property
    def worker_ms(self) -> float:
        return 1000 * self.worker_cpu_s / (self.n - self.failed)

    @property
    def server_ms(self) -> float:
        return 1000 * self.server_cpu_s / (self.n - self.failed)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(
            per_second=self.per_second,
            worker_ms=self.worker_ms,
            server_ms=self.server_ms,
            e2e_p50_ms=ms(percentile(self.end_to_end, 0.5)),
            e2e_p99_ms=ms(percentile(self.end_to_end, 0.99)),
            update_p50_ms=ms(percentile(self.updates, 0.5)),
            update_p99_ms=ms(percentile(self.updates, 0.99)),
        )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Phase:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def path_name(covered: bool) -> str:
    return "review, covered" if covered else "review, not covered"


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


def _num(value: float | None, width: int, digits: int = 0) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


SIDE_WIDTH = 8  # wider only when a side's name is (bare+codec)


def header(side_width: int = SIDE_WIDTH) -> str:
    return (
        f"{'path':<30} {'side':<{side_width}} {'rep':>3} {'n':>5} {'fail':>4} {'per s':>6} {'e2e p50':>8} "
        f"{'e2e p99':>8} {'upd p50':>8} {'upd p99':>8} {'events':>6} {'KB':>5} {'worker ms':>9} {'server ms':>9} "
        f"{'RSS MB':>6}  load"
    )


HEADER = header()


def row(p: Phase, side_width: int = SIDE_WIDTH) -> str:
    d = p.as_dict()
    return (
        f"{p.path:<30} {p.side:<{side_width}} {p.rep:>3} {p.n:>5} {p.failed:>4} {_num(p.per_second, 6, 1)} "
        f"{_num(d['e2e_p50_ms'], 8)} {_num(d['e2e_p99_ms'], 8)} "
        f"{_num(d['update_p50_ms'], 8)} {_num(d['update_p99_ms'], 8)} "
        f"{_num(p.events, 6)} {_num(p.history_bytes / 1024, 5, 1)} {_num(p.worker_ms, 9, 1)} "
        f"{_num(p.server_ms, 9, 1)} {_num(p.worker_rss_mb, 6)}  {p.load}"
    )


def progress(p: Phase) -> str:
    return "bench: " + " ".join(row(p).split())


# Ratio rows: (label, figure of a phase); lower is better for every one.
RATIOS = (
    ("time per review (1 / per s)", lambda p: 1 / p.per_second),
    ("end-to-end p50", lambda p: percentile(p.end_to_end, 0.5)),
    ("update p99", lambda p: percentile(p.updates, 0.99)),
    ("worker CPU per review", lambda p: p.worker_ms),
    ("server CPU per review", lambda p: p.server_ms),
    ("total CPU per review", lambda p: p.worker_ms + p.server_ms),
    ("history bytes", lambda p: p.history_bytes),
    ("history events", lambda p: p.events),
)


def ratios(phases: list[Phase], side: str = "project", over: str = "bare") -> dict[str, dict[str, list[float]]]:
    """side / over, per path and figure, one value per repetition (pairs from the same repetition)."""
    out: dict[str, dict[str, list[float]]] = {}
    by_key = {(p.side, p.path, p.rep): p for p in phases}
    for (name, path, rep), mine in by_key.items():
        theirs = by_key.get((over, path, rep))
        if name != side or theirs is None:
            continue
        for label, figure in RATIOS:
            a, b = figure(mine), figure(theirs)
            if a is not None and b:
                out.setdefault(path, {}).setdefault(label, []).append(a / b)
    return out


# The figures whose gap the codec's share is given for: what a review costs.
SHARED = ("time per review (1 / per s)", "worker CPU per review", "server CPU per review", "total CPU per review",
          "history bytes")  # fmt: skip


def codec_share(
    phases: list[Phase], side: str = "project", codec: str = "bare+codec", over: str = "bare"
) -> dict[str, dict[str, list[float]]]:
    """(codec - over) / (side - over) per path and figure, one value per repetition in which all three
    ran; none where the gap side - over is not positive (a share of nothing, or of a gain, says nothing)."""
    out: dict[str, dict[str, list[float]]] = {}
    by_key = {(p.side, p.path, p.rep): p for p in phases}
    for (name, path, rep), mine in by_key.items():
        theirs, sealed = by_key.get((over, path, rep)), by_key.get((codec, path, rep))
        if name != side or theirs is None or sealed is None:
            continue
        for label, figure in RATIOS:
            if label not in SHARED:
                continue
            a, b, c = figure(mine), figure(theirs), figure(sealed)
            if None not in (a, b, c) and a > b:
                out.setdefault(path, {}).setdefault(label, []).append((c - b) / (a - b))
    # Figures in RATIOS' order, whichever repetition had the first gap in each.
    order = [label for label, _ in RATIOS]
    return {path: dict(sorted(figures.items(), key=lambda kv: order.index(kv[0]))) for path, figures in out.items()}


def spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def render(result: dict) -> str:
    phases = [Phase.from_dict(d) for d in result["phases"]]
    width = max([SIDE_WIDTH, *(len(p.side) for p in phases)])
    lines = [
        f"{result['machine']}; {result['when']}; concurrency {result['concurrency']}",
        f"command: {result['command']}",
        "",
        header(width),
        *(row(p, width) for p in sorted(phases, key=lambda p: (p.path, p.rep, p.side))),
        "",
    ]
    sides = {p.side for p in phases}
    pairs = [
        ("project", "bare"),
        ("bare+codec", "bare"),
        ("project", "bare+codec"),
        ("baseline", "bare"),
        ("project", "baseline"),
    ]
    for side, over in [(a, b) for a, b in pairs if {a, b} <= sides]:
        lines.append(f"{f'ratio {side} / {over}':<30} {'figure':<28} {'min / median / max':>20}")
        for path, figures in ratios(phases, side, over).items():
            for label, values in figures.items():
                lines.append(f"{path:<30} {label:<28} {spread(values):>20}")
        lines.append("")
    if {"project", "bare+codec", "bare"} <= sides:
        lines.append(f"{'codec share of project - bare':<30} {'figure':<28} {'min / median / max':>20}")
        for path, figures in codec_share(phases).items():
            for label, values in figures.items():
                lines.append(f"{path:<30} {label:<28} {spread(values):>20}")
        lines.append("")
    lines.append("peak RSS: " + ", ".join(f"{k} {v:.0f} MB" for k, v in result["peak_rss_mb"].items()))
    return "\n".join(lines)
