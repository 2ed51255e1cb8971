"""Which project module imports which, printed as JSON (`python -m tests.import_graph`).

Run in a process of its own by the test: `ast.parse` in the test process, while the session's
workers are running workflow tasks in their threads, could fail with CPython 3.11's "AST
constructor recursion depth mismatch" (the converter's depth counter is per interpreter, not per
thread), seen once in a full-suite run.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PACKAGES = ("activities", "api", "audit", "cli", "domain", "infra", "workflows")


def import_graph() -> dict[str, set[str]]:
    """Which project module imports which, at any depth of the file (a function-level import, the
    usual way round a cycle, counts too)."""
    modules = {
        (f"{package}.{f.stem}" if f.stem != "__init__" else package): f
        for package in PACKAGES
        for f in (PROJECT_DIR / package).glob("*.py")
    }
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, file in modules.items():
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


if __name__ == "__main__":
    print(json.dumps({name: sorted(targets) for name, targets in import_graph().items()}))
