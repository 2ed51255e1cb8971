"""`report`: the public transparency report (aggregate, unclassified), with an optional PNG."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.meter import Meter, days_text
from api.report import DurationStats, TransparencyReport, transparency_report
from cli.door import BadInput
from domain.policy import STATUTORY_WINDOW_CAP, describe
from infra.connection import Target, connect

DAY = 86400.0


# Who made a determination, in words: a policy default is never shown as the NSA's decision.
_DETERMINED_BY = {"nsa": "the NSA", "policy-default": "the policy's default (NSA silent)"}


def parse_since(text: str) -> datetime:
    """A date (midnight UTC) or an ISO date-time; naive times are UTC."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--since {text!r}: not a date (YYYY-MM-DD) or ISO date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def cmd_report(args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    if args.lab and any(c in args.lab for c in "\"\\'"):
        raise BadInput(f"--lab {args.lab!r}: quotes and backslashes are not allowed in a lab name")
    if args.png and Path(args.png).suffix.lower() != ".png":
        raise BadInput(f"--png {args.png}: the file name must end in .png")
    client = await connect(Target.from_args(args))
    # Progress goes to stderr so that --json stays clean; rich hides it when not a terminal.
    err = Console(stderr=True)
    with Progress(
        TextColumn("reading visibility"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("reviews", total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        report = await transparency_report(client, since=since, lab=args.lab, progress=advance)
    if args.png:
        write_png(report, Path(args.png))
        err.print(f"chart written to {args.png}")
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        show(report, Console())
    return 0


def show(r: TransparencyReport, console: Console) -> None:
    scope = f"since {r.since:%Y-%m-%d %H:%M} UTC" if r.since else "all time"
    if r.lab:
        scope += f", lab {r.lab}"
    runs = f", {r.runs} runs (refiled after a withdrawal or a run cut short)" if r.runs != r.reviews else ""
    console.rule(f"Transparency report: {r.reviews} reviews{runs} ({scope})")
    counts = Table("stage", "reviews", box=None)
    for stage, n in r.by_stage.items():
        counts.add_row(stage, str(n))
    outcomes = Table("outcome", "reviews", box=None)
    for outcome, n in r.by_outcome.items():
        outcomes.add_row(outcome, str(n))
    console.print(counts)
    console.print(outcomes)
    share = f"{r.covered_share:.0%}" if r.covered_share is not None else "—"
    console.print(f"covered: {r.covered} of {r.determined} determined ({share}); still open: {r.open}")
    if r.determined_by:
        by = ", ".join(f"{_DETERMINED_BY.get(k, k)}: {n}" for k, n in r.determined_by.items())
        console.print(f"determined by: {by}")
    console.print(f"review windows: {r.windows_closed_early} closed early, {r.windows_elapsed} ran to the deadline")
    times = Table("time", "reviews", "median", "p90", "max", box=None)
    for label, stats in (
        ("disclosure → determination", r.disclosure_to_determination),
        ("disclosure → release", r.disclosure_to_release),
        ("determination → release (covered)", r.determination_to_release_covered),
    ):
        times.add_row(label, str(stats.count), *_stats(stats))
    console.print(times)
    if r.meter is not None:
        show_meter(r.meter, console)
    if r.holds.ok:
        console.print(
            f"[bold]no release waited longer than the policy allows[/bold] ({r.holds.checked} checked"
            + (f", {r.holds.not_checkable} without timing attributes" if r.holds.not_checkable else "")
            + ")"
        )
    else:
        console.print(f"[bold red]{len(r.holds.violations)} hold violation(s)[/bold red]:")
        for v in r.holds.violations:
            console.print(f"  {v.review_id}: {v.rule}: {v.detail}")


def show_meter(m: Meter, console: Console) -> None:
    """The mission-creep meter: one row per policy version and quarter, never mixed."""
    console.rule(f"Mission-creep meter (cells of fewer than {m.small_cell} reviews suppressed)")
    table = Table(
        "policy", "quarter", "reviews", "covered", "NSA / default", "days held (median, p90, max)",
        "delay to labs' dates (median, max; delayed)", "withdrawn / refiled", "windows elapsed / early",
        "ended by max_hold", "agencies", box=None,
    )  # fmt: skip
    for c in m.reviews:
        if c.suppressed:
            table.add_row(c.policy_version, c.quarter, str(c.reviews), *(["suppressed"] + [""] * 7))
            continue
        held, delay = c.days_held, c.delay_days
        table.add_row(
            c.policy_version,
            c.quarter,
            str(c.reviews),
            f"{c.covered}/{c.determined}" + (f" ({c.covered_share:.0%})" if c.covered_share is not None else ""),
            f"{c.decided_by_nsa} / {c.policy_defaults}",
            days_text(held, "median_days", "p90_days", "max_days"),
            days_text(delay, "median_days", "max_days") + (f"; {c.delayed}" if c.delayed is not None else ""),
            f"{c.withdrawals} / {c.refilings}",
            f"{c.windows_elapsed} / {c.windows_concluded_early}",
            str(c.ended_by_max_hold),
            ", ".join(f"{a} {n}" for a, n in (c.agency_participation or {}).items()) or "—",
        )
    console.print(table)
    if m.clearinghouse:
        cases = Table(
            "policy", "quarter", "cases", "by priority", "days to fix (median)", "embargoes kept / overrun",
            "extensions", box=None,
        )  # fmt: skip
        for c in m.clearinghouse:
            cases.add_row(
                c.policy_version,
                c.quarter,
                str(c.cases),
                ", ".join(f"{p} {n}" for p, n in c.by_priority.items()),
                days_text(c.days_to_fix, "median_days"),
                f"{c.embargoes_kept} / {c.embargoes_overrun}",
                str(c.extensions),
            )
        console.print(cases)
    if m.flags:
        console.print(f"[bold red]{len(m.flags)} review(s) flagged[/bold red]:")
        for f in m.flags:
            console.print(f"  {f.review_id} (run {f.run_id}): {'; '.join(f.reasons)}")
    else:
        console.print("[bold]no review flagged[/bold] (held past its policy, cancelled, terminated or reset)")



def _stats(stats: DurationStats) -> list[str]:
    return [_human(s) for s in (stats.median_seconds, stats.p90_seconds, stats.max_seconds)]


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def write_png(r: TransparencyReport, path: Path) -> None:
    """The distribution of review durations against the order's 30-day cap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cap_days = STATUTORY_WINDOW_CAP.total_seconds() / DAY
    windows = [w.total_seconds() / DAY for f in r.figures if (w := f.window_used) is not None]
    totals = [t.total_seconds() / DAY for f in r.figures if (t := f.to_release) is not None]
    top = max([cap_days * 1.15, *windows, *totals])
    bins = [top * i / 40 for i in range(41)]
    fig, (ax, trend) = plt.subplots(1, 2, figsize=(15, 5.2), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    ax.hist(totals, bins=bins, alpha=0.45, label=f"disclosure → release, all released ({len(totals)})")
    ax.hist(windows, bins=bins, alpha=0.75, label=f"determination → release, covered ({len(windows)})")
    ax.axvline(cap_days, color="crimson", linestyle="--", linewidth=2)
    ax.annotate(
        f"the order's cap: {describe(STATUTORY_WINDOW_CAP)}",
        xy=(cap_days, 0.95),
        xycoords=("data", "axes fraction"),
        ha="right",
        va="top",
        color="crimson",
        xytext=(-6, 0),
        textcoords="offset points",
    )
    ax.set_xlim(0, top)
    ax.set_xlabel("days")
    ax.set_ylabel("reviews")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    scope = f"since {r.since:%Y-%m-%d}" if r.since else "all time"
    if r.lab:
        scope += f", {r.lab}"
    ax.set_title(f"Frontier model reviews: how long releases waited ({r.reviews} reviews, {scope})")
    held = "no release held past its window" if r.holds.ok else f"{len(r.holds.violations)} hold violation(s)"
    ax.text(
        0.01,
        0.78,
        f"{held} ({r.holds.checked} checked)",
        transform=ax.transAxes,
        ha="left",
        va="top",
        fontsize=9,
        bbox={"facecolor": "white", "edgecolor": "grey", "boxstyle": "round"},
    )
    ax.legend(loc="upper left", fontsize=8)
    draw_trend(trend, r)
    fig.suptitle(f"generated {r.generated_at:%Y-%m-%d %H:%M} UTC", fontsize=8, x=0.99, ha="right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def draw_trend(ax, r: TransparencyReport) -> None:  # type: ignore[no-untyped-def]
    """The trend, quarter by quarter, one line per policy version (never mixed): the median and
    longest hold, and the median delay to the labs' dates. Suppressed cells are left out."""
    cells = [c for c in (r.meter.reviews if r.meter else []) if not c.suppressed]
    quarters = sorted({c.quarter for c in cells})
    for version in sorted({c.policy_version for c in cells}):
        mine = {c.quarter: c for c in cells if c.policy_version == version}
        xs = [quarters.index(q) for q in sorted(mine)]
        for field, style, label in (("median_days", "-o", "median hold"), ("max_days", ":^", "longest hold")):
            ys = [getattr(mine[q].days_held, field) if mine[q].days_held else None for q in sorted(mine)]
            ax.plot(xs, [y if y is not None else float("nan") for y in ys], style, label=f"{version}: {label}")
        delays = [mine[q].delay_days.median_days if mine[q].delay_days else None for q in sorted(mine)]
        ax.plot(xs, [y if y is not None else float("nan") for y in delays], "--s", label=f"{version}: median delay")
    ax.set_xticks(range(len(quarters)), quarters)
    ax.set_ylabel("days")
    ax.set_title("Trend by quarter and policy version")
    if not cells:
        ax.text(0.5, 0.5, "no cell of 3 or more reviews yet", transform=ax.transAxes, ha="center", va="center")
    else:
        ax.legend(fontsize=7, loc="upper left")


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[common],
        help="the public transparency report (aggregate, unclassified)",
        description="Counts by stage and outcome, the share covered, time to determination and to release "
        "(median, p90, max), windows closed early vs elapsed, and a check that no release waited longer than "
        "the policy allows. Reads visibility only: search attributes and start/close times.",
    )
    p.add_argument("--since", help="only reviews disclosed on or after this date (YYYY-MM-DD) or ISO date-time")
    p.add_argument("--lab", help="only this lab's reviews")
    p.add_argument("--png", metavar="FILE", help="also draw the distribution of review durations to FILE.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_report)
