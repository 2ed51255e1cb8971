"""The workflow sandbox, configured once for every worker and replayer of this project.

`cryptography` is passed through whole: signature checks run inside update validators,
and its Rust core raises `InvalidSignature` by importing `cryptography.exceptions` at
that moment; inside the sandbox's import machinery that import would fail and abort the
process (seen here). It is deterministic and side-effect free, so passing it through is safe.
"""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("cryptography", "pydantic", "pydantic_core", "annotated_types")


def workflow_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH))
