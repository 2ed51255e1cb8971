"""CLI output fits a pipe and says what happened: full ids when not a terminal, `--json` on every
command that prints a result, the stage after the change, the run id an audit asks for. The CLI's
`main` runs in a thread of this process (a subprocess per command would cost a second each)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import Client

from cli.main import main
from cli.vuln import clearinghouse_view
from domain.clearinghouse import ClearinghouseState
from domain.policy import load_policy
from domain.status import Stage
from tests.conftest import wait_stage
from tests.test_cli import disclosure_file


@pytest.fixture
def run(client: Client, capsys: pytest.CaptureFixture):
    address = client.service_client.config.target_host

    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, [*argv, "--address", address])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


async def test_results_for_scripts(run, client: Client, tmp_path: Path) -> None:
    code, out, err = await run("disclose", str(disclosure_file(tmp_path)), "--json")
    assert code == 0, err
    rid = json.loads(out)["review_id"]
    await wait_stage(client, rid, Stage.AWAITING_DETERMINATION)

    # The stage after the change, not the one before (the issue: determine printed AWAITING_DETERMINATION).
    code, out, err = await run("determine", rid, "--covered", "--agencies", "dod", "--rationale", "r", "--json")
    assert code == 0, err
    receipt = json.loads(out)
    moved = (receipt["stage_before"], receipt["stage"], receipt["sender"])
    assert moved == ("AWAITING_DETERMINATION", "UNDER_REVIEW", "nsa")
    assert len(out) < 1000 and "findings" not in receipt, "a receipt, not the whole status"

    code, out, err = await run("status", rid, "--json")
    s = json.loads(out)
    assert s["run_id"], "the run an audit can be asked for"
    code, out, err = await run("audit", rid, "--run-id", s["run_id"], "--json")
    assert code == 0, err
    assert json.loads(out)["workflow_id"] == rid

    # Not a terminal: every id whole, however long (the issue: cut at 80-100 columns).
    code, out, err = await run("list")
    assert code == 0, err
    assert rid in out and s["run_id"] in out
    code, out, err = await run("list", "--json", "--limit", "1000")
    assert {"review_id": rid, "run_id": s["run_id"]}.items() <= next(
        r for r in json.loads(out) if r["review_id"] == rid
    ).items()

    code, out, err = await run("withdraw", rid, "--reason", "done", "--json")
    assert code == 0, err
    assert json.loads(out)["stage"] == "WITHDRAWN"


def test_the_clearinghouse_totals_are_a_table_not_a_repr(capsys: pytest.CaptureFixture) -> None:
    clearinghouse_view(
        ClearinghouseState(
            policy_version="eo-2026.1",
            policy=load_policy("eo-2026").clearinghouse,
            runs=2,
            reports=15,
            cases_opened=12,
            duplicates=3,
            reports_this_run=4,
        )
    )
    out = capsys.readouterr().out
    assert "ClearinghouseState(" not in out and "policy_version=" not in out
    assert "cases opened" in out and "12" in out and "2 (4 reports in this run)" in out


def test_every_command_that_prints_a_result_has_json() -> None:
    from cli.main import parser

    root = parser()
    missing = []
    for name, sub in root._subparsers._group_actions[0].choices.items():  # noqa: SLF001
        children = [sub]
        if sub._subparsers is not None:  # noqa: SLF001
            children = list(sub._subparsers._group_actions[0].choices.values())  # noqa: SLF001
        for p in children:
            if name in ("up", "demo", "codec-server"):  # long-running, they print progress, not a result
                continue
            if "--json" not in p._option_string_actions:  # noqa: SLF001
                missing.append(p.prog)
    assert missing == []
