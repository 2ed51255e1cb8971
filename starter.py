"""`frontier-review` / `python starter.py`: operators, agencies and labs on the command line.

Follow a disclosure: `cli/reviews.py` (disclose) -> `api/reviews.py` (start ModelReview)
-> `workflows/review.py` (the lifecycle) -> `activities/standards.py`, `activities/nsa.py`
(each agency's queue) -> `activities/release.py` (vetting and grants).
"""

from __future__ import annotations

from cli.main import main as _main
from infra.process import exit_now


def main() -> None:
    """The console script: run the CLI, then leave without finalizing (see infra/process.py)."""
    exit_now(_main())


if __name__ == "__main__":
    main()
