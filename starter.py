"""`frontier-review` / `python starter.py`: operators, agencies and labs on the command line.

Follow a disclosure: `cli/reviews.py` (disclose) -> `api/reviews.py` (start ModelReview)
-> `workflows/review.py` (the lifecycle) -> `activities/standards.py`, `activities/nsa.py`
(each agency's queue) -> `activities/release.py` (vetting and grants).
"""

from __future__ import annotations

import os
import sys

from cli.main import main as run


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
