"""Every class of bad input, at the door: one line on stderr, exit 2, nothing started or changed.

Most cases call the CLI's `main` in this process (a subprocess costs a second of imports each); a
representative few go through the real console script in a subprocess, pipes included.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from api.agency import AgencyClient, LabClient
from api.errors import UnknownReview
from api.reviews import admissible, status
from api.server import describe_or_none
from cli.main import main
from domain.disclosure import MAX_PARTNERS, Disclosure
from domain.ids import review_id
from domain.inputs import Refused
from domain.messages import Withdrawal
from domain.policy import Policy
from domain.review import WITHDRAW
from domain.status import Stage
from infra.keys import KeyDirectory
from tests.broken_workflow import NotAReview
from tests.conftest import EXAMPLES, disclose, mythos, send_signed, update_events, wait_stage
from tests.test_cli import CLI
from workflows.sandbox import workflow_runner

BASE = json.loads((EXAMPLES / "mythos-2.json").read_text())


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    """The CLI in this process: its exit code and its stderr."""
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, expected: str, *, exit_code: int = 2) -> None:
    assert code == exit_code, err
    assert err.startswith("error: ") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err
    assert expected in err, err


def disclosure_bytes(version: str, **changes: object) -> bytes:
    return json.dumps({**BASE, "model_version": version, **changes}, ensure_ascii=False).encode()


def raw(version: str, replace: tuple[str, str]) -> bytes:
    """A disclosure with a piece of its JSON text replaced (what json.dumps cannot write)."""
    text = disclosure_bytes(version).decode()
    assert replace[0] in text
    return text.replace(replace[0], replace[1], 1).encode()


def nested(depth: int) -> bytes:
    return ('{"lab": ' + "[" * depth + "]" * depth + "}").encode()


# (case, file bytes given the model version, what the one line must say)
BAD_FILES = [
    ("latin-1", lambda v: disclosure_bytes(v, lab="Société Générale").decode().encode("latin-1"), "not UTF-8"),
    ("binary", lambda v: bytes(range(256)) * 4, "not UTF-8"),
    ("nested", lambda v: nested(100_000), "nested deeper than"),
    ("nested-but-parseable", lambda v: nested(200), "nested deeper than"),
    ("1e400", lambda v: raw(v, ("3.2e+26", "1e400")), "number 1e400 is out of range"),
    ("infinity", lambda v: raw(v, ("3.2e+26", "Infinity")), "Infinity is not a number JSON allows"),
    ("nan", lambda v: raw(v, ("0.71", "NaN")), "NaN is not a number JSON allows"),
    ("duplicate key", lambda v: raw(v, ('"lab": "Anthropic"', '"lab": "Anthropic", "lab": "Other"')), "'lab' appears"),
    ("true as a score", lambda v: raw(v, ("0.71", "true")), "cyber_offense: Input should be a valid number"),
    ("string as a score", lambda v: raw(v, ("0.71", '"0.71"')), "evaluations.cyber_offense: Input should be a valid"),
    ("huge int", lambda v: raw(v, ("3.2e+26", "9" * 5000)), "is out of range"),
    ("compute out of range", lambda v: raw(v, ("3.2e+26", "1e41")), "training_compute_flop: Input should be less"),
    ("int as a date", lambda v: raw(v, ('"2027-01-15"', "1800000000")), "intended_release_date: Value error, a date"),
    ("lone surrogate", lambda v: raw(v, ('"Anthropic"', '"Anthropic \\ud800"')), "lone surrogate"),
    ("2.5 MB", lambda v: disclosure_bytes(v, padding="x" * 2_500_000), "larger than 256 KiB"),
    (
        "too many partners",
        lambda v: disclosure_bytes(
            v,
            partners=[{"partner_id": f"p{i:04d}", "name": "P", "sector": "energy"} for i in range(MAX_PARTNERS + 1)],
        ),
        "partners: List should have at most 500 items",
    ),
    ("misspelt evaluation", lambda v: raw(v, ('"cyber_offense"', '"cyber-offense"')), "unknown evaluation"),
    ("past release", lambda v: disclosure_bytes(v, intended_release_date="2020-01-01"), "is in the past"),
    ("empty file", lambda v: b"", "malformed JSON at line 1"),
    ("not an object", lambda v: b"[1, 2]", "invalid disclosure"),
]


def test_every_bad_disclosure_file_is_refused_at_the_door(
    capsys: pytest.CaptureFixture, tmp_path: Path, keys: KeyDirectory
) -> None:
    for case, make, expected in BAD_FILES:
        version = f"door-{uuid.uuid4().hex[:8]}"
        path = tmp_path / f"{case.replace(' ', '-')}.json"
        path.write_bytes(make(version))
        # Nothing reaches Temporal: an address nobody listens on would fail any connection.
        code, err = run(capsys, "disclose", str(path), "--address", "127.0.0.1:1")
        assert_one_line(code, err, expected)
    code, err = run(capsys, "disclose", str(tmp_path), "--address", "127.0.0.1:1")
    assert_one_line(code, err, "is a directory")
    code, err = run(capsys, "disclose", str(tmp_path / "nope.json"))
    assert_one_line(code, err, "no such file")


def test_the_misspelt_evaluation_names_the_known_ones(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes(disclosure_bytes("door-1", evaluations={"cyber-offense": 0.99, "CBRN_uplift": 0.95}))
    code, err = run(capsys, "disclose", str(path), "--address", "127.0.0.1:1")
    assert_one_line(code, err, "unknown evaluations 'CBRN_uplift', 'cyber-offense' (policy eo-2026.1 knows: autonomy")


def test_bad_flags_and_files_are_refused_at_the_door(
    capsys: pytest.CaptureFixture, tmp_path: Path, keys: KeyDirectory
) -> None:
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["list", "--address", "not a host"], "'not a host' is not HOST:PORT"),
        (["list", "--address", "localhost:99999"], "is not HOST:PORT"),
        (["status", ""], "the review id is empty"),
        (["status", "case-0123456789abcdef"], "is a clearinghouse case"),
        (["determine", "case-0123456789abcdef", "--covered", "--agencies", "dod", "--rationale", "r"], "is a clearing"),
        (["vuln", "status", "review-x"], "is a review (see `status`), not a case"),
        (["list", "--limit", "-1"], "-1 is out of range"),
        (["list", "--limit", "ten"], "'ten' is not a whole number"),
        (["vuln", "list", "--limit", "0"], "0 is out of range"),
        (
            ["vuln", "request-extension", "case-x", "--as", "vendor:tlskit-foundation", "--days", "1000000000"],
            "1000000000 is out of range: --days must be positive and at most 3650",
        ),
        (
            ["finding", "review-x", "--agency", "dod", "--kind", "vulnerability", "--severity", "low",
             "--summary", "s", "--details", str(binary)],
            "not UTF-8",
        ),  # fmt: skip
        (["audit", "--history", str(tmp_path)], "is a directory"),
        (["audit", "--history", str(binary)], "not UTF-8"),
        (["audit", "review-x", "-o", str(tmp_path / "missing" / "trail.md")], "no directory"),
        (["keys", "add", "vendor:" + "a" * 300], "longer than 120 characters"),
        (["keys", "add", "vendor:newco", "--dir", str(a_file)], "is a file, not a directory"),
        (["determine", "review-x", "--covered", "--agencies", "dod,nsa", "--rationale", "r"], "standards bodies"),
        (["withdraw", "review-x", "--reason", "bad \udcff byte"], "lone surrogate"),
        (["schema", "no-such-thing"], "no schema 'no-such-thing' (known: disclosure"),
        (["disclose", str(EXAMPLES / "mythos-2.json"), "--policy", str(binary)], "policy"),
    ]
    for argv, expected in cases:
        # Nothing reaches Temporal: where a command connects, it would find nobody at this address.
        offline = [] if "--address" in argv or argv[0] in ("keys", "schema") else ["--address", "127.0.0.1:1"]
        code, err = run(capsys, *argv, *offline)
        assert_one_line(code, err, expected)
    assert not (tmp_path / "missing").exists()
    assert "vendor:newco" not in keys.public_keys()


def test_the_console_script_in_a_pipe(tmp_path: Path, keys: KeyDirectory) -> None:
    """A few cases through the real console script: a Latin-1 file, a closed pipe."""
    env = {**os.environ, "TEMPORAL_CONFIG_FILE": "/nonexistent"}
    latin = tmp_path / "latin.json"
    latin.write_bytes(disclosure_bytes("door-pipe", lab="Société").decode().encode("latin-1"))
    r = subprocess.run([CLI, "disclose", str(latin)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not UTF-8" in r.stderr, r.stderr
    # `schema disclosure | head -c 10`: the reader goes away after 10 bytes.
    r = subprocess.run(
        f"{CLI} schema disclosure | head -c 10; echo \" $" + "{PIPESTATUS[0]}\"",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.stdout.endswith(" 0\n"), r.stdout
    assert r.stderr == "", r.stderr


async def test_the_api_refuses_what_validation_was_skipped_for(client: Client, policy: Policy) -> None:
    """`model_copy(update=...)` skips validation: the API's door still refuses what the workflow
    could not decode (infinity reads back as null), and starts nothing."""
    good = mythos()
    for change, expected in [
        ({"training_compute_flop": math.inf}, "does not read back|invalid"),
        ({"evaluations": {"cyber_offense": math.nan}}, "does not read back|invalid"),
        ({"lab": "Anthropic \ud800"}, "cannot be encoded|surrogate"),
        ({"evaluations": {"cyber-offense": 0.9}}, "unknown evaluation 'cyber-offense'"),
        ({"intended_release_date": date.today() - timedelta(days=30)}, "in the past"),
    ]:
        bad = good.model_copy(update=change)
        with pytest.raises(Refused, match=expected):
            await disclose(client, bad, policy)
        assert await describe_or_none(client, review_id(bad.lab, bad.model_name, bad.model_version)) is None
    with pytest.raises(Refused):
        admissible(good.model_copy(update={"partners": list(good.partners) * 200}), policy, {})

    rid = await disclose(client, good, policy)
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)
    before = await status(client, rid)
    bad = Withdrawal(sender="lab", reason="r").model_copy(update={"reason": "x" * 5000})
    with pytest.raises(Refused, match="reason: String should have at most 4000"):
        await send_signed(client, rid, WITHDRAW, bad)
    assert bad.message_id not in await update_events(client, rid)
    with pytest.raises(ValueError, match="standards bodies"):
        await AgencyClient(client, "nsa").determine(rid, covered=True, agencies=["dod", "nsa"], rationale="r")
    after = await status(client, rid)
    assert (after.stage, after.determination, after.withdrawal_reason, after.transitions) == (
        before.stage, before.determination, before.withdrawal_reason, before.transitions,
    ), "nothing recorded changed"  # fmt: skip
    await LabClient(client).withdraw(rid, "done")


def test_the_json_schemas_in_the_repository_are_the_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """README links schema/*.json: they must say what the door checks."""
    assert main(["schema", "--write", str(tmp_path)]) == 0
    committed = Path(__file__).resolve().parent.parent / "schema"
    for generated in tmp_path.glob("*.json"):
        assert (committed / generated.name).read_text() == generated.read_text(), (
            f"schema/{generated.name} is stale: run `frontier-review schema --write schema/`"
        )
    capsys.readouterr()
    assert main(["schema", "disclosure"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["partners"]["maxItems"] == MAX_PARTNERS
    assert "training_compute_flop" in schema["required"]


async def test_a_message_to_a_workflow_that_is_not_a_review(isolated: Client) -> None:
    """The issue: a case id given to `determine` answered "Update handler ... not found"."""
    queue = f"not-a-review-{uuid.uuid4().hex[:8]}"
    async with Worker(isolated, task_queue=queue, workflows=[NotAReview], workflow_runner=workflow_runner()):
        handle = await isolated.start_workflow("NotAReview", id=queue, task_queue=queue)
        with pytest.raises(UnknownReview, match=f"{queue} is not a review \\(it is a NotAReview workflow\\)"):
            await AgencyClient(isolated, "nsa").determine(queue, covered=False, rationale="r")
        with pytest.raises(UnknownReview, match="is not a review"):
            await status(isolated, queue)
        await handle.terminate(reason="test done")


async def test_the_largest_accepted_disclosure_runs(client: Client, policy: Policy) -> None:
    """At every cap at once (500 partners, names at their longest, scores at both bounds, the most
    compute accepted): accepted, started, decoded by the workflow, and through the standards check."""
    partners = [
        {"partner_id": f"p{i:03d}-" + "x" * 58, "name": "N" * 200, "sector": "energy"} for i in range(MAX_PARTNERS)
    ]
    edge = Disclosure.model_validate(
        {
            **BASE,
            "lab": "L" * 64,
            "model_name": "M" * 64,
            "model_version": f"v{uuid.uuid4().hex}".ljust(64, "0"),
            "evaluations": {name: float(i % 2) for i, name in enumerate(policy.evaluations)},
            "training_compute_flop": 9.99e39,
            "partners": partners,
        }
    )
    assert len(edge.model_dump_json()) > 150_000
    rid = await disclose(client, edge, policy)
    s = await wait_stage(client, rid, Stage.AWAITING_DETERMINATION, timeout=60)
    assert len(s.standards) == 5 and s.model_version == edge.model_version
    await LabClient(client).withdraw(rid, "test done")


def test_starter_py_with_the_system_interpreter(tmp_path: Path) -> None:
    """The issue: `python starter.py` needed the venv active (a ModuleNotFoundError traceback)."""
    system_python = Path(sys.base_exec_prefix) / "bin" / "python3"
    if not system_python.exists():
        pytest.skip(f"no base interpreter at {system_python}")
    starter = Path(__file__).resolve().parent.parent / "starter.py"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "FRONTIER_REVIEW_REEXEC")}
    r = subprocess.run([str(system_python), str(starter), "schema", "evaluations"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "cyber_offense" in json.loads(r.stdout)["properties"]
