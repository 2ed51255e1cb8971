"""`frontier-review` / `python starter.py`: operators, agencies and labs on the command line.

Follow a disclosure: `cli/reviews.py` (disclose) -> `api/reviews.py` (start ModelReview)
-> `workflows/review.py` (the lifecycle) -> `activities/standards.py`, `activities/nsa.py`
(each agency's queue) -> `activities/release.py` (vetting and grants).
"""

from __future__ import annotations

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
