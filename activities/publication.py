"""The review office publishes the transparency report: JSON, Markdown and PNG, with each
standards body's public summary, into its report directory (one set of files per day: a
retried or repeated publication the same day writes the same names)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity
from temporalio.client import Client

from activities.heartbeat import heartbeating
from api.publication import report_markdown
from api.report import transparency_report
from domain.public_standards import load_summaries
from domain.publication import PUBLISH_ACTIVITY, PUBLISH_HEARTBEAT_TIMEOUT, Publication


class ReportDesk:
    def __init__(self, client: Client, out_dir: Path, summaries_dir: Path) -> None:
        self.client = client
        self.out_dir = out_dir
        self.summaries_dir = summaries_dir

    @activity.defn(name=PUBLISH_ACTIVITY)
    async def publish_transparency_report(self) -> Publication:
        async with heartbeating(PUBLISH_HEARTBEAT_TIMEOUT):  # reading every review's history takes minutes at scale
            return await self._publish()

    async def _publish(self) -> Publication:
        report = await transparency_report(self.client, now=datetime.now(UTC))
        summaries = load_summaries(self.summaries_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = self.out_dir / f"transparency-report-{report.generated_at:%Y-%m-%d}"
        document = json.loads(report.model_dump_json())
        document["standards"] = [s.model_dump(mode="json") for s in summaries]
        files = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
        _write(files[0], json.dumps(document, indent=2) + "\n")
        _write(files[1], report_markdown(report, summaries))
        from cli.report import write_png  # matplotlib is heavy: loaded only to draw

        await asyncio.to_thread(write_png, report, files[2])
        activity.logger.info("transparency report published", extra={"reviews": report.reviews})
        return Publication(generated_at=report.generated_at, reviews=report.reviews, files=[str(f) for f in files])


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a report."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
