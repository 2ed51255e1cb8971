"""Leaving a process that used the Temporal runtime.

The runtime's native threads can call into Python while the interpreter finalizes, which
aborts the process ("Fatal Python error: PyGILState_Release ... finalizing", exit 134 or a
segfault) after all the work was done and reported: seen here on roughly one CLI run in
twelve under load. Once the output is flushed nothing is left to finalize, so the entry
points leave without finalizing, with the exit code they meant.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def exit_now(code: int | None) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code or 0)
