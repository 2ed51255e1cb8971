"""Connection flags written before the command mean what the user meant (red-team F7)."""

from __future__ import annotations

import pytest

from cli.main import connection_flags_last, main


def test_connection_flags_before_the_command_move_after_it() -> None:
    assert connection_flags_last(["--address", "h:1", "--namespace=ns", "status", "R"]) == [
        "status", "R", "--address", "h:1", "--namespace=ns",
    ]  # fmt: skip
    after = ["vuln", "status", "C", "--address", "h:1"]
    assert connection_flags_last(after) == after
    assert connection_flags_last(["--profile", "p", "audit", "--", "-x"]) == ["audit", "--profile", "p", "--", "-x"]


def test_address_before_the_command_reaches_the_server_not_the_parser(capsys: pytest.CaptureFixture) -> None:
    """Before: `invalid choice: '127.0.0.1:1'` (exit 2). After: the command runs and cannot connect (exit 1)."""
    code = main(["--address", "127.0.0.1:1", "status", "review-no-such-thing"])
    err = capsys.readouterr().err
    assert "invalid choice" not in err
    assert code == 1
    assert err.startswith("error: ") and err.count("\n") == 1
