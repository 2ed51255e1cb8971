"""The benchmark runs and reports every figure; the worker's cache is sized by its operator.

The smoke run checks that `python -m bench` works end to end and that its figures are sane
(counted, positive, consistent), never how fast anything is: the machine may be shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.agency import AgencyClient
from bench.table import HEADER, Phase, codec_share, percentile, ratios, render
from domain import search_attributes as sa
from domain.policy import POLICY_DIR, load_policy
from domain.status import ReviewStatus, Stage
from tests.conftest import disclose, mythos, wait_stage
from worker import WorkerConfig, build_workers

PROJECT_DIR = Path(__file__).resolve().parent.parent
PATHS = ("review, not covered", "review, covered", "report, new case", "report, duplicate")
SIDES = ("bare", "bare+codec", "project")


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    # With the third side (bare with the project's codec): about 2 s more than without.
    done = run("-m", "bench", "--smoke", "--with-bare-codec", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_smoke_run_prints_a_row_for_every_path_and_side(smoke: tuple[str, dict]) -> None:
    table, figures = smoke
    rows = [line for line in table.splitlines() if line.startswith(PATHS)]
    for path in PATHS:
        # The path's column is 30 wide: the side comes next.
        sides = {line[31:].split()[0] for line in rows if line.startswith(path) and line[31:].strip()}
        assert set(SIDES) <= sides, (path, table)
    for section in ("ratio project / bare", "ratio bare+codec / bare", "codec share of project - bare", "peak RSS"):
        assert section in table, (section, table)
    phases = [Phase.from_dict(p) for p in figures["phases"]]
    assert {(p.side, p.path) for p in phases} == {(s, path) for s in SIDES for path in PATHS}
    assert "bare+codec worker" in figures["peak_rss_mb"]


def test_smoke_figures_are_counted_and_sane(smoke: tuple[str, dict]) -> None:
    _, figures = smoke
    for p in (Phase.from_dict(d) for d in figures["phases"]):
        assert p.failed == 0 and p.n == len(p.end_to_end) > 0, p
        assert p.seconds > 0 and p.per_second > 0
        # Every message was timed: one determination per review, two more when covered, a receipt per report.
        expected = {"review, not covered": 1, "review, covered": 3}.get(p.path, 1)
        assert len(p.updates) == expected * p.n, (p.path, len(p.updates))
        # The phase waited for each review's result, which comes after its updates.
        assert max(p.end_to_end) >= max(p.updates) > 0
        # Both sides ran real workflows on a real server: history, and CPU spent by each process.
        assert p.events >= 10 and p.history_bytes > 1000, p
        # /proc counts CPU in clock ticks (10 ms): a 3-report phase may read 0; a side's phases may not.
        assert p.worker_cpu_s >= 0 and p.server_cpu_s >= 0, p
        assert 10 < p.worker_rss_mb < 4000
        assert "cores" in p.load
    for side in SIDES:
        mine = [p for p in figures["phases"] if p["side"] == side]
        assert sum(p["worker_cpu_s"] for p in mine) > 0 and sum(p["server_cpu_s"] for p in mine) > 0, side
    assert all(v > 10 for v in figures["peak_rss_mb"].values()), figures["peak_rss_mb"]
    phases = [Phase.from_dict(d) for d in figures["phases"]]
    for side, over in (("project", "bare"), ("bare+codec", "bare")):
        pairs = ratios(phases, side, over)
        assert set(pairs) == set(PATHS)
        assert all(0 < r < 1000 for figures_ in pairs.values() for values in figures_.values() for r in values)
    # The same workflows, sealed: every payload grows by the seal (nonce, tag, key id), so each event
    # weighs more on the bare+codec side than on the plain one, on every path.
    weight = {(p.side, p.path): p.history_bytes / p.events for p in phases}
    assert all(weight["bare+codec", path] > weight["bare", path] for path in PATHS), weight


def test_ratios_pair_the_same_repetition_only() -> None:
    def phase(side: str, rep: int, seconds: float) -> Phase:
        return Phase(side, "review, covered", rep, 10, seconds, 0, [1.0] * 10, [0.5] * 10, 1.0, 1.0, 50, 9000, 100, "")

    pairs = ratios([phase("bare", 0, 1.0), phase("project", 0, 2.0), phase("project", 1, 9.0)])
    assert pairs["review, covered"]["time per review (1 / per s)"] == [2.0]
    assert percentile([], 0.5) is None and percentile([3.0, 1.0, 2.0], 0.99) == 3.0


def bench_phase(side: str, rep: int, worker_cpu_s: float, server_cpu_s: float = 1.0) -> Phase:
    return Phase(side, "review, covered", rep, 10, 1.0, 0, [1.0] * 10, [0.5] * 10, worker_cpu_s, server_cpu_s,
                 50, 9000, 100, "1.0 on 2 cores")  # fmt: skip


def test_the_codec_share_is_of_the_gap_in_the_same_repetition() -> None:
    phases = [
        bench_phase("bare", 0, 1.0), bench_phase("bare+codec", 0, 1.5), bench_phase("project", 0, 3.0),
        bench_phase("bare", 1, 1.0), bench_phase("bare+codec", 1, 1.0), bench_phase("project", 1, 5.0),
        # A repetition without the codec's side, and one where the project cost no more: no share.
        bench_phase("bare", 2, 1.0), bench_phase("project", 2, 9.0),
        bench_phase("bare", 3, 2.0), bench_phase("bare+codec", 3, 3.0), bench_phase("project", 3, 2.0),
    ]  # fmt: skip
    shares = codec_share(phases)["review, covered"]
    assert shares["worker CPU per review"] == [0.25, 0.0]  # (1.5 - 1) / (3 - 1); (1 - 1) / (5 - 1)
    assert shares["total CPU per review"] == [0.5 / 2, 0.0]
    assert "server CPU per review" not in shares  # the same on every side: no gap to share


def test_without_the_codec_side_the_table_is_as_it_was() -> None:
    """`--with-bare-codec` off: the header, the side column and the sections of before."""
    phases = [bench_phase(side, rep, 1.0 + rep) for side in ("bare", "project") for rep in (0, 1)]
    result = {"machine": "m", "when": "w", "concurrency": 1, "command": "c", "peak_rss_mb": {"bare worker": 90.0},
              "phases": [p.as_dict() for p in phases]}  # fmt: skip
    table = render(result).splitlines()
    assert HEADER in table
    rows = table[table.index(HEADER) + 1 : table.index("", table.index(HEADER))]
    assert [line[31:39] for line in rows] == ["bare    ", "project ", "bare    ", "project "]
    assert not [line for line in table if "codec" in line], table
    result["phases"] += [bench_phase("bare+codec", 0, 1.2).as_dict()]
    wide = render(result)
    assert HEADER not in wide and "review, covered                bare+codec   0" in wide
    assert "ratio bare+codec / bare" in wide and "codec share of project - bare" in wide


async def test_the_bare_codec_side_seals_every_payload_on_queues_of_its_own(isolated: Client, keys) -> None:
    """What bare+codec / bare measures: the same bare workflow, every payload sealed by the project's
    codec, on queues and ids the plain bare side never uses (the codec refuses unsealed payloads)."""
    from temporalio.api.common.v1 import Payload

    from bench import bare
    from bench.drivers import BareSide
    from tests.conftest import running
    from tests.test_security import payloads

    target = isolated.service_client.config.target_host
    plain = await Client.connect(target, namespace=isolated.namespace)
    sealed = await Client.connect(target, namespace=isolated.namespace, data_converter=bare.sealed_converter())
    workers = bare.bare_workers(plain, names=bare.PLAIN) + bare.bare_workers(sealed, names=bare.SEALED)
    async with running(workers):
        plain_review = await BareSide(plain, 5, 5).review(covered=False)
        sealed_review = await BareSide(sealed, 5, 5, names=bare.SEALED).review(covered=False)

    def payloads_and_queues(history) -> tuple[list[Payload], set[str]]:
        queues = {
            e.activity_task_scheduled_event_attributes.task_queue.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        }
        return [p for e in history.events for p in payloads(e)], queues

    plain_payloads, plain_queues = payloads_and_queues(
        await plain.get_workflow_handle(plain_review.workflow_id).fetch_history()
    )
    sealed_payloads, sealed_queues = payloads_and_queues(
        await sealed.get_workflow_handle(sealed_review.workflow_id).fetch_history()
    )
    assert plain_review.workflow_id.startswith("bare-review-") and sealed_review.workflow_id.startswith("barec-review-")
    # The plain side's queues are the ones it always had.
    assert plain_queues == {"bare-whitehouse", "bare-dod", "bare-dhs", "bare-commerce", "bare-treasury", "bare-nsa",
                            "bare-review"}  # fmt: skip
    assert sealed_queues == {q.replace("bare-", "barec-") for q in plain_queues}
    assert len(sealed_payloads) >= 10 and len(plain_payloads) >= 10
    assert {p.metadata["encoding"] for p in sealed_payloads} == {b"binary/encrypted"}
    # All under the codec's compression threshold (the README says zlib never runs on this side).
    assert not [p for p in sealed_payloads if "encryption-compression" in p.metadata]
    assert b"binary/encrypted" not in {p.metadata["encoding"] for p in plain_payloads}


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--max-cached-workflows", "0"], {}, "--max-cached-workflows must be at least 1"),
        (["--max-cached-workflows", "ten"], {}, "--max-cached-workflows must be a whole number"),
        ([], {"FRONTIER_REVIEW_MAX_CACHED_WORKFLOWS": "-5"}, "FRONTIER_REVIEW_MAX_CACHED_WORKFLOWS must be at least 1"),
    ],
)
def test_a_bad_cache_size_is_refused_before_connecting(args: list[str], env: dict[str, str], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "worker.py", "--address", "127.0.0.1:1", *args],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {done.stderr.strip().removeprefix('error: ')}"]
    assert words in done.stderr and "Traceback" not in done.stderr


async def test_the_cache_size_reaches_every_workflow_worker(env: WorkflowEnvironment, tmp_path: Path) -> None:
    config = WorkerConfig(data_dir=tmp_path, max_cached_workflows=12_000)
    # Its own connection and namespace: workers registered on the session's client would
    # collide with the session's own (never run, these only show their configuration).
    client = await Client.connect(env.client.service_client.config.target_host, namespace="cache-size")
    workers = build_workers(client, config=config)
    caches = {w.task_queue: w.config()["max_cached_workflows"] for w in workers if w.config().get("workflows")}
    assert caches == {"review": 12_000, "clearinghouse": 12_000, "clearinghouse-intake": 12_000}


@pytest.mark.parametrize("covered", [False, True])
async def test_a_review_writes_search_attributes_once_per_stage_change(client: Client, covered: bool) -> None:
    """Each upsert is a command, an event and a visibility write: none for what the start request
    set, at most one per workflow task, and every attribute still right at the end."""
    rid = await disclose(client, mythos(), load_policy("eo-2026"))
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    await AgencyClient(client, "nsa").determine(
        rid, covered=covered, agencies=["dod"] if covered else [], rationale="benchmark"
    )
    if covered:
        await AgencyClient(client, "dod").conclude(rid)
    handle = client.get_workflow_handle(rid)
    await handle.result()
    history = await handle.fetch_history()
    upserts_per_task: list[int] = [0]
    for event in history.events:
        if event.HasField("workflow_task_completed_event_attributes"):
            upserts_per_task.append(0)
        elif event.HasField("upsert_workflow_search_attributes_event_attributes"):
            fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
            if set(fields) == {"TemporalChangeVersion"}:
                continue  # the SDK's own, for a workflow.patched id
            upserts_per_task[-1] += 1
            assert b"DISCLOSED" not in fields[sa.REVIEW_STAGE.name].data, "the start request set DISCLOSED"
    assert max(upserts_per_task) == 1, upserts_per_task
    # STANDARDS_CHECK, AWAITING_DETERMINATION, (UNDER_REVIEW,) RELEASING, RELEASED
    assert sum(upserts_per_task) == (5 if covered else 4), upserts_per_task
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.REVIEW_STAGE) == Stage.RELEASED
    assert attrs.get(sa.COVERED) is covered
    assert attrs.get(sa.OUTCOME) == ("CONCLUDED_EARLY" if covered else "NOT_COVERED")
    assert attrs.get(sa.SECONDS_TO_DETERMINATION) is not None and attrs.get(sa.SECONDS_TO_RELEASE) is not None
    assert (attrs.get(sa.WINDOW_DEADLINE) is not None) is covered
    assert attrs.get(sa.LAB) and attrs.get(sa.MODEL_NAME) and attrs.get(sa.POLICY_VERSION) == "eo-2026.1"


@pytest.mark.parametrize("name", sorted(p.stem for p in POLICY_DIR.glob("*.toml")))
def test_a_lost_task_costs_minutes_not_an_hour(name: str) -> None:
    """The dev server, saturated, has recorded activity tasks as started that never reached a worker:
    each waits out its attempt (start-to-close) timeout before it is retried. The checks, the
    briefing, vetting and grants are short writes: one attempt is bounded in minutes."""
    policy = load_policy(name)
    attempts = {
        "standards check and briefing": policy.standards_check_attempt_timeout,
        "vetting and grants": policy.release_activity_timeout,
        "clearinghouse activities": policy.clearinghouse.activity_timeout,
    }
    assert all(t <= timedelta(minutes=10) for t in attempts.values()), attempts


# The longest a task lost by the server may cost: an attempt's start-to-close, or for long work
# (which heartbeats) the heartbeat timeout.
LOST_TASK_COSTS_AT_MOST = timedelta(minutes=10)


def lost_task_costs(history) -> dict[str, timedelta]:
    """For each activity type a history scheduled, the longest a lost task of it waits to be retried."""
    costs: dict[str, timedelta] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            a = event.activity_task_scheduled_event_attributes
            wait = a.start_to_close_timeout.ToTimedelta()
            if a.HasField("heartbeat_timeout") and a.heartbeat_timeout.ToTimedelta() > timedelta(0):
                wait = min(wait, a.heartbeat_timeout.ToTimedelta())
            costs[a.activity_type.name] = max(wait, costs.get(a.activity_type.name, timedelta(0)))
    return costs


async def test_every_activity_a_lost_task_costs_minutes(client: Client) -> None:
    """Every activity each workflow schedules, under the shipped eo-2026 policy: a covered review with
    a vulnerability finding, the clearinghouse and the case it opens, the weekly publication."""
    from api.clearinghouse import case_status
    from api.waiting import until
    from domain.agencies import REVIEW_TASK_QUEUE
    from domain.case import EMBARGO_STATUSES
    from domain.clearinghouse import CLEARINGHOUSE_ID
    from domain.publication import PUBLISH_WORKFLOW
    from tests.conftest import vulnerability

    rid = await disclose(client, mythos(), load_policy("eo-2026"))
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    dod = AgencyClient(client, "dod")
    await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod"], rationale="lost tasks")
    finding = vulnerability()
    await dod.submit_finding(rid, kind="vulnerability", severity="high", summary="a flaw", vulnerability=finding)
    await dod.conclude(rid)
    final = await client.get_workflow_handle(rid, result_type=ReviewStatus).result()
    [case_id] = final.clearinghouse_cases.values()
    await until(lambda: case_status(client, case_id), lambda c: c.status in EMBARGO_STATUSES, timeout=30)
    publication = await client.start_workflow(PUBLISH_WORKFLOW, id=f"publish-{rid}", task_queue=REVIEW_TASK_QUEUE)
    try:
        published = await until(
            publication.fetch_history, lambda h: bool(lost_task_costs(h)), timeout=30, what="the publication's activity"
        )
    finally:
        await publication.terminate("only its activity's options are checked")
    costs: dict[str, timedelta] = {}
    for history in (
        await client.get_workflow_handle(rid).fetch_history(),
        await client.get_workflow_handle(case_id).fetch_history(),
        await client.get_workflow_handle(CLEARINGHOUSE_ID).fetch_history(),
        published,
    ):
        costs.update(lost_task_costs(history))
    # Every kind of work was seen (a workflow that skipped some would make this test blind to it).
    assert {"check_standard", "brief_nsa", "vet_partner", "grant_access", "forward_vulnerability"} <= set(costs)
    assert {"publish_transparency_report", "notify_vendor", "notify_operators"} <= set(costs), sorted(costs)
    # The review office's keyring and admission, the case's first keyring, validation and triage are
    # local activities: no task the server could lose; they run inside a workflow task, which a lost
    # worker times out in 10 s and the next worker runs again.
    assert not {"admit_disclosure", "validate_report", "triage_case"} & set(costs), sorted(costs)
    slow = {name: str(cost) for name, cost in costs.items() if cost > LOST_TASK_COSTS_AT_MOST}
    assert slow == {}, "a lost task of these would wait longer than minutes"


async def test_long_work_heartbeats_while_it_runs_and_stops_after() -> None:
    import asyncio

    from temporalio.testing import ActivityEnvironment

    from activities.heartbeat import heartbeating

    beats: list[float] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(asyncio.get_running_loop().time())

    async def long_work() -> str:
        async with heartbeating(timedelta(seconds=0.6)):  # a beat every 0.1 s
            await asyncio.sleep(0.5)
        return "done"

    assert await env.run(long_work) == "done"
    during = len(beats)
    await asyncio.sleep(0.3)
    assert during >= 3 and len(beats) == during, beats


def test_status_imports_only_what_it_uses() -> None:
    """`status` is typed often: it must not pay for the audit trail, the codec server's aiohttp,
    the workers or plotting."""
    probe = (
        "import sys; from cli.main import parser; parser('status').parse_args(['status', 'r-1']); "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = run("-c", probe, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert loaded.isdisjoint({"aiohttp", "audit", "worker", "matplotlib", "workflows", "activities"}), loaded
    assert {"temporalio", "api", "cli"} <= loaded


def test_every_command_is_found_in_the_module_that_defines_it() -> None:
    from cli.main import COMMANDS, MODULES, parser

    everything = parser()
    commands = next(a for a in everything._actions if a.dest == "command").choices
    assert set(commands) == set(COMMANDS)
    assert set(COMMANDS.values()) == set(MODULES)
    for command in COMMANDS:
        alone = parser(command)
        assert command in next(a for a in alone._actions if a.dest == "command").choices


def test_workflow_code_stays_inside_the_sandbox() -> None:
    """Passing a workflow's own module through the sandbox would save worker CPU per run, and
    switch off the sandbox's checks on that module's code (datetime.now() ran unchecked when
    tried): every workflow this project runs is executed inside the sandbox."""
    from workflows.clearinghouse import Clearinghouse
    from workflows.review import ModelReview
    from workflows.sandbox import PASSED_THROUGH
    from workflows.vulnerability_case import VulnerabilityCase

    for cls in (ModelReview, Clearinghouse, VulnerabilityCase):
        parts = cls.__module__.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        assert prefixes.isdisjoint(PASSED_THROUGH), (cls.__name__, PASSED_THROUGH)


PROBE_WORKFLOWS = """
from datetime import datetime

from temporalio import workflow

RUNS = []  # module state: each run must have its own


@workflow.defn(name="SharedCodeProbe")
class SharedCodeProbe:
    @workflow.run
    async def run(self) -> int:
        RUNS.append(workflow.info().workflow_id)
        return len(RUNS)


@workflow.defn(name="SharedCodeClock")
class SharedCodeClock:
    @workflow.run
    async def run(self) -> str:
        return datetime.now().isoformat()  # not deterministic: the sandbox must refuse it
"""


async def test_workflow_code_is_compiled_once_and_still_sandboxed_per_run(
    isolated: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox re-executes a workflow's module for every run; it compiled it from source every
    time too (no bytecode cache under PYTHONDONTWRITEBYTECODE). Now the compiled code is shared:
    compiled once per process, still executed afresh, sandboxed, for each run."""
    import importlib
    import uuid

    from temporalio.worker import Worker

    from workflows import sandbox

    package = tmp_path / "probeflows"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "clock.py").write_text(PROBE_WORKFLOWS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sandbox, "SHARED_CODE_PACKAGES", (*sandbox.SHARED_CODE_PACKAGES, "probeflows"))
    module = importlib.import_module("probeflows.clock")
    queue = f"shared-code-{uuid.uuid4().hex[:8]}"
    async with Worker(
        isolated, task_queue=queue, workflows=[module.SharedCodeProbe, module.SharedCodeClock],
        workflow_runner=sandbox.workflow_runner(), max_cached_workflows=0,
    ):  # fmt: skip
        for n in range(3):
            assert await isolated.execute_workflow("SharedCodeProbe", id=f"{queue}-{n}", task_queue=queue) == 1
        clock = await isolated.start_workflow("SharedCodeClock", id=f"{queue}-clock", task_queue=queue)
        failed = await wait_for_task_failure(clock)
        await clock.terminate("probe done")
    assert "datetime.datetime.now" in failed, failed
    compiled = [path for path in sandbox._SharedCodeLoader.codes if path.endswith("probeflows/clock.py")]
    assert compiled == [str(package / "clock.py")], "compiled once, whatever the number of runs"
    assert module.RUNS == [], "the runs executed their own copies of the module, never the host's"


async def wait_for_task_failure(handle) -> str:
    from api.waiting import until

    def failures(history) -> list:
        return [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]

    history = await until(handle.fetch_history, lambda h: bool(failures(h)), timeout=30, what="a failed task")
    failure = failures(history)[0].workflow_task_failed_event_attributes.failure
    return str(await handle._client.data_converter.decode_failure(failure))  # the codec encrypts failures
