"""How a workflow turns a bad message away.

Validators raise, never change state: a rejected update writes nothing to history and
the sender gets the reason back as `WorkflowUpdateFailedError`.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

REJECTED = "Rejected"


def reject_unless(condition: bool, reason: str) -> None:
    if not condition:
        raise ApplicationError(reason, type=REJECTED, non_retryable=True)
