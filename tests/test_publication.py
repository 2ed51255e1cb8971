"""The weekly Schedule publishes the transparency report as JSON, Markdown and PNG, with the
standards bodies' public summaries, into the review office's report directory."""

from __future__ import annotations

import asyncio
import json

from temporalio.client import Client, ScheduleActionExecutionStartWorkflow

from api.publication import ensure_report_schedule
from domain.agencies import STANDARDS_BODIES
from domain.publication import PUBLISH_WORKFLOW, SCHEDULE_ID, Publication
from worker import WorkerConfig


async def test_the_schedule_publishes_the_report_files(client: Client, worker_config: WorkerConfig) -> None:
    assert await ensure_report_schedule(client)  # as `up` does
    assert not await ensure_report_schedule(client), "a second `up` leaves the schedule as it is"
    schedule = client.get_schedule_handle(SCHEDULE_ID)
    try:
        described = await schedule.describe()
        assert described.schedule.action.workflow == PUBLISH_WORKFLOW
        assert described.info.next_action_times, "it is due weekly"
        await schedule.trigger()  # now, rather than next Monday
        for _ in range(100):
            actions = (await schedule.describe()).info.recent_actions
            if actions:
                break
            await asyncio.sleep(0.1)
        started = actions[-1].action
        assert isinstance(started, ScheduleActionExecutionStartWorkflow)
        handle = client.get_workflow_handle(started.workflow_id, run_id=started.first_execution_run_id)
        published = await handle.result(rpc_timeout=None)
    finally:
        await schedule.delete()
    published = Publication.model_validate(published) if isinstance(published, dict) else published
    files = {p.rsplit(".", 1)[1]: p for p in published.files}
    assert set(files) == {"json", "md", "png"}
    # Into the worker's own directory, whoever started the run.
    assert all(p.startswith(str(worker_config.reports)) for p in published.files)
    document = json.loads(open(files["json"]).read())
    assert document["reviews"] == published.reviews and "meter" in document
    assert [s["agency"] for s in document["standards"]] == [a.value for a in STANDARDS_BODIES]
    markdown = open(files["md"]).read()
    assert "## Mission-creep meter" in markdown and "## What each standard looks at" in markdown
    assert "at_least" not in markdown and "0.5" not in markdown.split("## What each standard looks at")[1]
    assert open(files["png"], "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
