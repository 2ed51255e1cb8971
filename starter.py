"""`frontier-review` / `python starter.py`: operators, agencies and labs on the command line.

Follow a disclosure: `cli/reviews.py` (disclose) -> `api/reviews.py` (start ModelReview)
-> `workflows/review.py` (the lifecycle) -> `activities/standards.py`, `activities/nsa.py`
(each agency's queue) -> `activities/release.py` (vetting and grants).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _outside_the_venv(missing: ModuleNotFoundError) -> None:
    """Run with an interpreter that lacks the project's dependencies (`python starter.py` with no venv
    active): hand over to the project's own `.venv` if there is one, else say what to do, in one line."""
    here = Path(__file__).resolve()
    venv_python = here.parent / ".venv" / "bin" / "python"
    if venv_python.exists() and os.environ.get("FRONTIER_REVIEW_REEXEC") != "1":
        os.environ["FRONTIER_REVIEW_REEXEC"] = "1"
        os.execv(venv_python, [str(venv_python), str(here), *sys.argv[1:]])
    print(
        f"error: {missing.name} is not installed for {sys.executable}: run ./dev setup, then use "
        ".venv/bin/python (or activate .venv)",
        file=sys.stderr,
    )
    sys.exit(2)


try:
    from cli.main import main as run
except ModuleNotFoundError as e:
    _outside_the_venv(e)


def main() -> None:
    code = run()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader of a pipe went away; what it read is all it wanted
        pass
    sys.stderr.flush()
    # The SDK's Rust runtime threads can abort CPython's finalisation of a short-lived
    # client process ("PyGILState_Release", temporalio/sdk-python#300; seen here about
    # 1 run in 20). Everything is flushed and closed by now: skip the teardown.
    os._exit(code)


if __name__ == "__main__":
    main()
