"""One set of plumbing for both halves (reviews and the clearinghouse): the modules import in one
direction, one send-with-retry, one key-loading activity, one way to wait for a state."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.waiting import StillWaiting, until

PROJECT_DIR = Path(__file__).resolve().parent.parent


def import_graph() -> dict[str, set[str]]:
    """The project's import graph, read in a process of its own (see tests/import_graph.py)."""
    scan = subprocess.run(
        [sys.executable, "-m", "tests.import_graph"], cwd=PROJECT_DIR, capture_output=True, text=True, check=True
    )
    return {name: set(targets) for name, targets in json.loads(scan.stdout).items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as the modules on it."""
    found: list[list[str]] = []

    def walk(path: list[str]) -> None:
        for nxt in sorted(graph[path[-1]]):
            if nxt == path[0]:
                found.append(path)
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest module
                walk([*path, nxt])

    for start in sorted(graph):
        walk([start])
    return found


def test_no_project_module_imports_one_that_imports_it() -> None:
    """`cli/reviews.py` and `cli/vuln.py` imported each other (one of them inside a function to
    dodge the cycle); what both need (the door for files and flags, the sender's key) is in
    `cli/door.py`."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# ------------------------------------------------------------------ waiting for a state


async def test_until_returns_the_first_ready_value_and_gives_up_naming_the_last_seen() -> None:
    seen = iter(range(100))

    async def probe() -> int:
        return next(seen)

    assert await until(probe, lambda n: n >= 3, timeout=5, interval=0.001) == 3
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(StillWaiting) as waited:
        await until(probe, lambda n: n < 0, timeout=0.3, interval=0.05, what="a negative number", seen=str)
    assert 0.3 <= loop.time() - began < 3  # the deadline, not a hang (a loaded machine is slow)
    assert isinstance(waited.value, TimeoutError)  # callers that caught TimeoutError still do
    assert waited.value.last is not None and waited.value.last > 3
    assert f"a negative number not reached in 0.3 s (last seen: {waited.value.last})" == str(waited.value)


async def test_until_tolerates_only_the_errors_it_is_told_to() -> None:
    calls = 0

    async def starting() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise LookupError("not started yet")
        return "running"

    assert await until(starting, lambda s: s == "running", timeout=5, interval=0.001, tolerate=(LookupError,)) == (
        "running"
    )
    calls = 0
    with pytest.raises(LookupError):  # not tolerated: at once, not after the timeout
        await until(starting, lambda s: s == "running", timeout=60, interval=0.001)
    assert calls == 1
    with pytest.raises(StillWaiting) as waited:
        await until(lambda: asyncio.sleep(0, result=1 / 0), bool, timeout=0, tolerate=(ZeroDivisionError,))
    assert waited.value.last is None and "last seen: nothing" in str(waited.value)


async def test_until_probes_once_even_with_no_time_left() -> None:
    assert await until(lambda: asyncio.sleep(0, result="done"), bool, timeout=0) == "done"


# ------------------------------------------------------------------ loading the parties' keys


async def test_both_halves_load_the_same_keys_the_same_way(tmp_path: Path) -> None:
    """The review office's `load_review_keys` and Treasury's `load_public_keys` read their own key
    directory through one body: the same keyring, the same bad entry skipped, the same failure
    when there is no keyring at all."""
    import json

    from temporalio.exceptions import ApplicationError
    from temporalio.testing import ActivityEnvironment

    from activities.clearinghouse import ClearinghouseDesk, Outbox
    from activities.release import ReleaseDesk
    from activities.store import RecordStore
    from infra.keys import KeyDirectory

    keys = KeyDirectory(tmp_path / "keys")
    keys.init_development()
    published = json.loads(keys.public_file.read_text())
    published["vendor:broken"] = "not a key"
    keys.public_file.write_text(json.dumps(published))
    office = ReleaseDesk(RecordStore(tmp_path / "review.db"), keys)
    treasury = ClearinghouseDesk(Outbox(tmp_path / "clearinghouse.db"), keys)
    env = ActivityEnvironment()
    office_keys = env.run(office.load_review_keys)
    treasury_keys = env.run(treasury.load_public_keys)
    assert (office_keys.party, treasury_keys.party) == ("review", "treasury"), "each signed by its own party"
    keyring = treasury_keys.result
    assert office_keys.result == keyring
    assert "vendor:broken" not in keyring and {"nsa", "dod", "treasury"} <= set(keyring)

    keys.public_file.unlink()
    for load in (office.load_review_keys, treasury.load_public_keys):
        with pytest.raises(ApplicationError) as refused:
            env.run(load)
        assert refused.value.type == "KeyProblem" and "frontier-review keys init" in str(refused.value)


async def test_a_store_keeps_one_connection_per_thread_and_grants_once_from_many(tmp_path: Path) -> None:
    """Activities write from any thread of their queue's pool, each through that thread's own kept
    connection: many threads granting the same partners grant each exactly once, and a call that
    failed inside a transaction leaves nothing open for the next call on its thread."""
    from concurrent.futures import ThreadPoolExecutor

    from activities.store import RecordStore

    store = RecordStore(tmp_path / "review.db")
    with ThreadPoolExecutor(max_workers=8) as pool:
        grants = list(pool.map(lambda i: store.grant("review-x", f"partner-{i % 10}", "run-1"), range(200)))
        connections = set(pool.map(lambda _: id(store._connect()), range(200)))
    assert sorted(g.grant_id for g in grants if not g.already_granted) == sorted({g.grant_id for g in grants})
    assert len({g.grant_id for g in grants}) == 10
    assert 1 <= len(connections) <= 8, "one connection per thread, kept"
    db = store._connect()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO grants VALUES ('review-y', 'run-1', 'p', 'g', 't')")
    db.close()  # what `closing()` does when a call fails mid-transaction
    assert store._connect() is db and not db.in_transaction
    assert store.grants("review-y") == [], "the failed call's write was rolled back"


# ------------------------------------------------------------------ sending a signed message


async def test_both_halves_give_up_on_an_absent_server_the_same_way(
    tmp_path: Path, keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A review's message, a case's and a report, sent while the server is down past the API's
    patience: each ends in `Unavailable`, one line naming the message id to send again (the case
    and report halves raised the SDK's RPCError), and no "Future exception was never retrieved"."""
    import gc

    from api import clearinghouse, reviews, sending
    from api.errors import Unavailable
    from domain.case import FixReady
    from domain.clearinghouse import FIX_READY, VulnerabilityIntake
    from domain.messages import Determination
    from domain.policy import load_policy
    from domain.review import RECORD_DETERMINATION
    from tests.conftest import signer_for, vulnerability
    from tests.restartable import RestartableServer

    server = RestartableServer(tmp_path)
    await server.start()
    client = await server.client(impatient=True)
    await server.kill()
    monkeypatch.setattr(sending, "PATIENCE", 2.0)
    monkeypatch.setattr(clearinghouse, "REPORT_PATIENCE", 2.0)
    sends = {
        "review": reviews.send(
            client, "review-absent", RECORD_DETERMINATION,
            Determination(sender="nsa", covered=False, rationale="r", message_id="m-review"), signer_for("nsa"),
        ),
        "case": clearinghouse.send(
            client, "case-absent", FIX_READY,
            FixReady(sender="vendor:acme", fixed_versions=["1.0.1"], message_id="m-case"), signer_for("vendor:acme"),
        ),
        "report": clearinghouse.report(
            client, VulnerabilityIntake(sender="dod", report=vulnerability(), message_id="m-report"),
            load_policy("eo-2026"), signer_for("dod"),
        ),
    }  # fmt: skip
    loop = asyncio.get_running_loop()
    for half, call in sends.items():
        began = loop.time()
        with pytest.raises(Unavailable) as gave_up:
            await call
        assert loop.time() - began < 30, f"{half}: gave up long after its patience"
        said = str(gave_up.value)
        assert f"m-{half} within 2 s" in said and "send it again" in said and "same message id" in said, said
        assert "\n" not in said
    gc.collect()
    await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


async def test_both_halves_name_a_workflow_of_the_other_kind(client, policy) -> None:
    """A review id given to a case command was refused with the SDK's "update handler not found";
    like the review half, the case half now says what the id is."""
    from api import clearinghouse
    from api.clearinghouse import UnknownCase
    from domain.case import FixReady
    from domain.clearinghouse import FIX_READY
    from domain.status import Stage
    from tests.conftest import disclose, mythos, signer_for, wait_stage

    rid = await disclose(client, mythos(), policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    fix = FixReady(sender="vendor:acme", fixed_versions=["1.0.1"])
    with pytest.raises(UnknownCase, match=f"{rid} is not a case \\(it is a ModelReview workflow\\)"):
        await clearinghouse.send(client, rid, FIX_READY, fix, signer_for("vendor:acme"))
