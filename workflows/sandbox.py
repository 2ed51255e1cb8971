"""The workflow sandbox, configured once for every worker and replayer of this project.

`cryptography` is passed through whole: signature checks run inside update validators,
and its Rust core raises `InvalidSignature` by importing `cryptography.exceptions` at
that moment; inside the sandbox's import machinery that import would fail and abort the
process (seen here). It is deterministic and side-effect free, so passing it through is safe.

The workflow modules themselves (`workflows.*`) are never passed through: the sandbox executes a
workflow's module again for every run it starts or replays, so that a `datetime.now()` written in
it is caught (a passed-through module is the host's own, and runs such a call unchecked: seen
here). What that re-execution need not repeat is reading and compiling the module: the sandbox's
import compiled `workflows/review.py` from source for every run (about 5 ms of CPU each, and
~150 KB of fresh code objects per cached workflow) wherever no bytecode cache is written
(PYTHONDONTWRITEBYTECODE, as in deploy/worker.Dockerfile, or a read-only tree). `SharedCode`
keeps each workflow module's compiled code for the life of the process and hands the same code
object to every run: code objects are immutable, each run still executes it into its own
sandboxed module, and a worker runs the code it started with even if its files change under it.
"""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

PASSED_THROUGH = ("cryptography", "pydantic", "pydantic_core", "annotated_types")
# The packages whose modules the sandbox re-executes per run (ours): their code is compiled once.
SHARED_CODE_PACKAGES = ("workflows",)


class _SharedCodeLoader(importlib.machinery.SourceFileLoader):
    codes: dict[str, CodeType] = {}

    def get_code(self, fullname: str) -> CodeType:
        code = self.codes.get(self.path)
        if code is None:
            code = self.codes[self.path] = super().get_code(fullname)
        return code


class SharedCode:
    """A meta-path finder for our workflow packages' modules: the path finder's spec, with a loader
    that compiles each file once per process."""

    @classmethod
    def find_spec(
        cls, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in SHARED_CODE_PACKAGES or "." not in fullname:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader) or not spec.origin:
            return spec
        spec.loader = _SharedCodeLoader(fullname, spec.origin)
        return spec


def share_workflow_code() -> None:
    """Install SharedCode ahead of the path finder (once)."""
    if SharedCode not in sys.meta_path:
        sys.meta_path.insert(0, SharedCode)


def workflow_runner() -> SandboxedWorkflowRunner:
    share_workflow_code()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH))
