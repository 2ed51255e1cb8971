"""Stopping: Ctrl-C of `up` (or SIGTERM of a worker) ends the process in seconds, whatever hangs.

Seen on `main`: `up` was still running 12 minutes after Ctrl-C (2 stops in ~40 under the suite's
load; CI failed on it): every worker had begun its shutdown, one never finished, and `up` waited
for it forever with its dev server still up. A stalled HTTP client held the codec server's stop
for its own 10 s on top.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import structlog
from aiohttp import web
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from infra.codec_server import STOP_GRACE_SECONDS, start
from infra.devserver import free_port
from worker import run_workers

RELEASED = threading.Event()  # set only at the end of the test: until then the activity ignores its cancellation


@activity.defn
def hold() -> None:
    """A blocking activity that never looks at its cancellation (as a stuck library call would)."""
    activity.heartbeat()
    RELEASED.wait(120)


@workflow.defn
class Holding:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(hold, start_to_close_timeout=timedelta(minutes=2))


async def test_a_worker_that_never_stops_does_not_hold_the_stop(isolated: Client) -> None:
    queue = f"stopping-{uuid.uuid4().hex[:8]}"
    worker = Worker(
        isolated,
        task_queue=queue,
        workflows=[Holding],
        activities=[hold],
        activity_executor=ThreadPoolExecutor(2),
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(run_workers([worker], stop, patience=1.0))
    try:
        handle = await isolated.start_workflow(Holding.run, id=f"hold-{queue}", task_queue=queue)
        for _ in range(100):  # until the activity runs (and so the worker's shutdown must wait for it)
            if (await handle.describe()).raw_description.pending_activities:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the activity never started")
        await asyncio.sleep(0.3)
        with structlog.testing.capture_logs() as logged:
            stop.set()
            started = time.monotonic()
            await asyncio.wait_for(running, timeout=30)  # before: never returned
            waited = time.monotonic() - started
        assert waited < 10, f"the stop took {waited:.1f} s"
        left = [e for e in logged if e["event"] == "workers did not stop; leaving them"]
        assert left and left[0]["queues"] == [queue], logged
    finally:
        RELEASED.set()
        await isolated.get_workflow_handle(f"hold-{queue}").terminate("test over")


async def test_a_stalled_http_client_does_not_hold_the_stop_of_the_codec_server_or_watcher_page() -> None:
    async def slow(request: web.Request) -> web.Response:
        await request.read()  # the client sent its headers and one byte of a 100-byte body, then stalled
        return web.Response(text="never")

    app = web.Application()
    app.router.add_post("/decode", slow)
    port = free_port()
    runner = await start(app, "127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /decode HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
        await writer.drain()
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(runner.cleanup(), timeout=60)
        waited = time.monotonic() - started
        # aiohttp's own default waits up to 60 s for such a request; ours, the grace and no more.
        assert waited < STOP_GRACE_SECONDS * 2 + 2, f"the stop took {waited:.1f} s"
    finally:
        writer.close()
