"""Rego evaluation as Trustee runs it: regorus (the `celine-regorus` wheel), `eval_rule` on the rule path.

Trustee creates an engine and adds the policy for every evaluation (deps/policy-engine/src/policy/rego.rs
evaluate_sync); here one engine per policy is cloned for each evaluation, which decides the same. An
evaluation error (a builtin given the wrong type, a policy that does not parse) fails the attestation
or the release there, and is a `RegoError` here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import regorus

# Trustee's attestation service gives the attestation policies `query_reference_value(name)` as an
# extension; offline, this module stands in for it, reading `data.rv[name]`.
SHIM = (Path(__file__).resolve().parent / "corpus" / "query_reference_value.rego").read_text()


class RegoError(Exception):
    """The policy does not parse or its evaluation fails: Trustee refuses."""


class Policy:
    """One policy text (plus modules), evaluated on many inputs."""

    def __init__(self, text: str, *modules: str, data: Any = None) -> None:
        self._engine: regorus.Engine | None = None
        try:
            engine = regorus.Engine()
            engine.add_policy("policy.rego", text)
            for i, module in enumerate(modules):
                engine.add_policy(f"module{i}.rego", module)
            if data is not None:
                engine.add_data_json(json.dumps(data))
            self._engine = engine
        except RuntimeError as err:
            self._error = _message(err)

    def evaluate(self, rule: str, input_: Any, data: Any = None) -> Any:
        """The value of `rule` (e.g. `data.policy.allow`), None when undefined; RegoError on an error."""
        if self._engine is None:
            raise RegoError(self._error)
        engine = self._engine.clone()
        if data is not None:
            engine.add_data_json(json.dumps(data))
        engine.set_input_json(json.dumps(input_))
        try:
            value = json.loads(engine.eval_rule_as_json(rule))
        except RuntimeError as err:
            raise RegoError(_message(err)) from None
        return None if value == "<undefined>" else value


def _message(err: RuntimeError) -> str:
    """regorus' one-line reason (`error: ...`) and where (`--> file:line:column`), without its backtrace."""
    lines = str(err).splitlines()
    where = next((line.strip().removeprefix("--> ") for line in lines if line.strip().startswith("-->")), "")
    reason = next((line.removeprefix("error: ") for line in lines if line.startswith("error:")), lines[0] if lines else "failed")
    return f"{reason} ({where})" if where else reason
