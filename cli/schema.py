"""`schema NAME`: the JSON Schema of every input, from the pydantic models the door validates with.

`schema/` in the repository holds the same files (`frontier-review schema --write schema/`), so the
README can link them; a test keeps them equal to the models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from cli.args import text
from domain.case import ExploitationObserved, ExtensionRequest, FixReady, PatchDeployed
from domain.clearinghouse import VulnerabilityIntake
from domain.disclosure import Disclosure
from domain.inputs import Refused
from domain.messages import Conclusion, Determination, ReviewFinding, Withdrawal
from domain.policy import DEFAULT_POLICY, Policy, load_policy
from domain.vulnerability import VulnerabilityReport

# name -> (model, what it is)
SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "disclosure": (Disclosure, "a lab's disclosure (`disclose FILE`)"),
    "report": (VulnerabilityReport, "a vulnerability report (`vuln report FILE`, `finding --details FILE`)"),
    "determination": (Determination, "the NSA's determination (update `record_determination`)"),
    "finding": (ReviewFinding, "a participating agency's finding (update `submit_finding`)"),
    "conclusion": (Conclusion, "an agency concludes its review (update `conclude_review`)"),
    "withdrawal": (Withdrawal, "the lab withdraws (update `withdraw`)"),
    "intake": (VulnerabilityIntake, "a report into the clearinghouse (update `report_vulnerability`)"),
    "fix-ready": (FixReady, "the vendor's fix (update `fix_ready`)"),
    "patch-deployed": (PatchDeployed, "a patch deployed (update `patch_deployed`)"),
    "exploitation-observed": (ExploitationObserved, "exploitation in the wild (update `exploitation_observed`)"),
    "extension": (ExtensionRequest, "the vendor asks for more time (update `request_extension`)"),
    "policy": (Policy, "a policy file's [policy] table (`policies/*.toml`)"),
}
EVALUATIONS = "evaluations"


def schema_of(name: str) -> dict:
    model, what = SCHEMAS[name]
    schema = _closed(model.model_json_schema())
    schema.setdefault("description", what)
    schema["$comment"] = f"frontier-review schema {name}: {what}"
    return schema


def _closed(schema: dict) -> dict:
    """The door refuses unknown fields (domain/inputs.py), whatever a model tolerates in a history."""
    for sub in [schema, *schema.get("$defs", {}).values()]:
        if sub.get("type") == "object" and "properties" in sub:
            sub["additionalProperties"] = False
    return schema


def evaluations_schema(policy: Policy) -> dict:
    """The evaluation names a disclosure may report under `policy` (its controlled vocabulary)."""
    return {
        "title": f"Evaluations ({policy.version})",
        "description": "Evaluation name -> score in [0, 1]; names outside this list are refused at disclosure.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            name: {"type": "number", "minimum": 0, "maximum": 1, "description": about}
            for name, about in sorted(policy.evaluations.items())
        },
    }


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


async def cmd_schema(args: argparse.Namespace) -> int:
    if args.write:
        out = Path(args.write)
        if not out.is_dir():
            raise Refused(f"--write {args.write}: not a directory")
        for name in SCHEMAS:
            (out / f"{name}.schema.json").write_text(render(schema_of(name)))
        (out / f"{EVALUATIONS}.schema.json").write_text(render(evaluations_schema(load_policy(DEFAULT_POLICY))))
        print(f"{len(SCHEMAS) + 1} schemas written to {out}")
        return 0
    if args.name is None:
        if args.json:
            names = {name: what for name, (_, what) in SCHEMAS.items()}
            print(json.dumps({**names, EVALUATIONS: "the evaluation names a policy accepts"}, indent=2))
            return 0
        width = max(len(n) for n in SCHEMAS)
        for name, (_, what) in SCHEMAS.items():
            print(f"{name:<{width}}  {what}")
        print(f"{EVALUATIONS:<{width}}  the evaluation names a policy accepts (--policy NAME)")
        return 0
    if args.name == EVALUATIONS:
        try:
            policy = load_policy(args.policy or DEFAULT_POLICY)
        except ValueError as e:
            raise Refused(str(e)) from None
        print(render(evaluations_schema(policy)), end="")
        return 0
    if args.name not in SCHEMAS:
        raise Refused(f"no schema {args.name!r} (known: {', '.join([*SCHEMAS, EVALUATIONS])})")
    print(render(schema_of(args.name)), end="")
    return 0


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "schema",
        help="print the JSON Schema of an input (disclosure, report, finding, ...)",
        description="The JSON Schema of each input, from the models that validate it. Without NAME: the list.",
    )
    p.add_argument("name", nargs="?", type=text, help=f"one of: {', '.join([*SCHEMAS, EVALUATIONS])}")
    p.add_argument("--policy", type=text, help=f"for `evaluations`: the policy (default {DEFAULT_POLICY})")
    p.add_argument("--write", metavar="DIR", type=text, help="write every schema to DIR/<name>.schema.json")
    p.add_argument("--json", action="store_true", help="the list of schemas as JSON (a schema is always JSON)")
    p.set_defaults(func=cmd_schema)
