"""The weekly publication of the transparency report: names shared by the schedule, its
workflow and the review office's worker that runs it."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

PUBLISH_WORKFLOW = "PublishTransparencyReport"
PUBLISH_ACTIVITY = "publish_transparency_report"
# The publication reads every review's history (minutes at scale): it heartbeats, and a task the
# server lost is retried after this long instead of the attempt's 30 minutes.
PUBLISH_HEARTBEAT_TIMEOUT = timedelta(minutes=1)
SCHEDULE_ID = "transparency-report-weekly"
# The workflow id of each scheduled run (the server appends the scheduled time).
PUBLISH_WORKFLOW_ID = "transparency-report"


class Publication(BaseModel):
    """What one publication wrote (the directory is the worker's, never the caller's)."""

    generated_at: datetime
    reviews: int
    files: list[str]
