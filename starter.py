"""`frontier-review` / `python starter.py`: operators, agencies and labs on the command line.

Follow a disclosure: `cli/reviews.py` (disclose) -> `api/reviews.py` (start ModelReview)
-> `workflows/review.py` (the lifecycle) -> `activities/standards.py`, `activities/nsa.py`
(each agency's queue) -> `activities/release.py` (vetting and grants).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from cli.main import main as run


def main() -> NoReturn:
    """Run one command and exit with its code, skipping interpreter teardown: the SDK's Rust
    threads can abort a short-lived client process while Python finalizes (temporalio/sdk-python#300)."""
    code = run()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
