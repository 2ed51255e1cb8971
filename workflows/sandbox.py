"""The workflow sandbox, configured once for every worker and replayer of this project.

`cryptography` is passed through whole: signature checks run inside update validators,
and its Rust core raises `InvalidSignature` by importing `cryptography.exceptions` at
that moment; inside the sandbox's import machinery that import would fail and abort the
process (seen here). It is deterministic and side-effect free, so passing it through is safe.

The workflow modules themselves (`workflows.*`) are never passed through, although the sandbox
then executes a workflow's module again for every run it starts or replays: replaying one review
costs about a third more worker CPU for it (bench, README "Performance"). A passed-through
module is the host's own, so a `datetime.now()` written in it runs unchecked (seen here): the
re-execution is the price of the sandbox catching non-determinism in our workflow code.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("cryptography", "pydantic", "pydantic_core", "annotated_types")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH))
