"""The weekly publication: the report as Markdown, and the Temporal Schedule that starts it."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)

from api.meter import days_text
from api.report import TransparencyReport
from domain.agencies import REVIEW_TASK_QUEUE
from domain.public_standards import PublicSummary
from domain.publication import PUBLISH_WORKFLOW, PUBLISH_WORKFLOW_ID, SCHEDULE_ID

# Mondays at 06:00 UTC.
WEEKLY = ScheduleSpec(
    calendars=[ScheduleCalendarSpec(day_of_week=[ScheduleRange(1)], hour=[ScheduleRange(6)])],
    time_zone_name="UTC",
)


def report_schedule() -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(PUBLISH_WORKFLOW, id=PUBLISH_WORKFLOW_ID, task_queue=REVIEW_TASK_QUEUE),
        spec=WEEKLY,
        # A publication still running when the next is due: skip, never pile up.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="the weekly transparency report (frontier-review up)"),
    )


async def ensure_report_schedule(client: Client) -> bool:
    """Create the weekly schedule unless it exists (True when created). Leaves an existing one
    alone: an operator may have paused it or changed its calendar."""
    try:
        await client.create_schedule(SCHEDULE_ID, report_schedule())
    except ScheduleAlreadyRunningError:
        return False
    return True


def report_markdown(r: TransparencyReport, summaries: list[PublicSummary]) -> str:
    scope = f"since {r.since:%Y-%m-%d}" if r.since else "all time"
    out = [
        "# Frontier model reviews: transparency report",
        "",
        f"Generated {r.generated_at:%Y-%m-%d %H:%M} UTC, {scope}. Aggregate and unclassified: read from "
        "visibility and the shape of the workflows' histories, never a payload.",
        "",
        f"- reviews: {r.reviews} ({r.open} open); covered: {r.covered} of {r.determined} determined",
        f"- review windows: {r.windows_closed_early} closed early, {r.windows_elapsed} ran to the deadline",
        "- holds: "
        + (
            f"no release waited longer than the policy allows ({r.holds.checked} checked)"
            if r.holds.ok
            else f"{len(r.holds.violations)} violation(s)"
        ),
        "",
    ]
    m = r.meter
    if m is not None:
        out += [
            "## Mission-creep meter",
            "",
            f"Per policy version and quarter, never mixed. A cell of fewer than {m.small_cell} reviews, and any "
            f"figure from fewer than {m.small_cell} values, is suppressed: it could single out one lab or model.",
            "",
            "| policy | quarter | reviews | covered | NSA / default | days held (median, p90, max) "
            "| delay to labs' dates, days (median, max; delayed) | withdrawn / refiled | windows elapsed / early "
            "| ended by max_hold | agencies |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in m.reviews:
            if c.suppressed:
                out.append(f"| {c.policy_version} | {c.quarter} | {c.reviews} | suppressed |  |  |  |  |  |  |  |")
                continue
            share = f" ({c.covered_share:.0%})" if c.covered_share is not None else ""
            held = days_text(c.days_held, "median_days", "p90_days", "max_days")
            delay = days_text(c.delay_days, "median_days", "max_days")
            agencies = ", ".join(f"{a} {n}" for a, n in (c.agency_participation or {}).items()) or "—"
            out.append(
                f"| {c.policy_version} | {c.quarter} | {c.reviews} | {c.covered}/{c.determined}{share} "
                f"| {c.decided_by_nsa} / {c.policy_defaults} | {held} "
                f"| {delay}; {c.delayed} | {c.withdrawals} / {c.refilings} "
                f"| {c.windows_elapsed} / {c.windows_concluded_early} | {c.ended_by_max_hold} | {agencies} |"
            )
        if m.clearinghouse:
            out += [
                "",
                "### Treasury's clearinghouse",
                "",
                "| policy | quarter | cases | by priority | days to fix (median) | embargoes kept / overrun "
                "| extensions |",
                "| --- | --- | --- | --- | --- | --- | --- |",
            ]
            for k in m.clearinghouse:
                priorities = ", ".join(f"{p} {n}" for p, n in k.by_priority.items())
                fix = days_text(k.days_to_fix, "median_days")
                out.append(
                    f"| {k.policy_version} | {k.quarter} | {k.cases} | {priorities} | {fix} "
                    f"| {k.embargoes_kept} / {k.embargoes_overrun} | {k.extensions} |"
                )
        out += ["", "### Flags", ""]
        out += [f"- `{f.review_id}` (run `{f.run_id}`): {'; '.join(f.reasons)}" for f in m.flags] or [
            "No review held past its policy, cancelled, terminated or reset."
        ]
    out += [
        "",
        "## What each standard looks at",
        "",
        "Each standards body's own summary of its classified standard: the dimensions, never the thresholds.",
        "",
    ]
    for s in summaries:
        out.append(f"### {s.agency.title} (standard {s.standard_version})")
        if s.notice:
            out.append(f"*{s.notice}*")
        out.append("")
        out += [f"- `{d.dimension}`: {d.concern}" for d in s.looks_at]
        out.append("")
    return "\n".join(out) + "\n"

