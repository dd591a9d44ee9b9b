"""Run CrossGuard policies over an offline plan, as `pulumi preview --policy-pack` would.

Builds the same `ResourceValidationArgs` / `StackValidationArgs` the pulumi_policy analyzer builds from
the engine's requests: camelCase input props with secrets unwrapped (the engine marshals analyzer
props with KeepSecrets; pulumi/pulumi pkg/resource/plugin/analyzer_plugin.go), unknowns behind
pulumi_policy's unknown-checking proxy, the resource's provider with its props, `protect`, and each
policy's config (schema defaults, then `config`).

    python -m scripts.offline.policy ENV    # plan ENV, run the pack, exit 1 on a mandatory violation
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from scripts.offline import Registered, StackRun

POLICY_PACK = Path(__file__).resolve().parents[2] / "policies"


@dataclass(frozen=True)
class Violation:
    policy: str
    level: str
    """`mandatory` or `advisory`; a policy that could not run on an unknown value is reported `advisory`, as the analyzer does."""
    urn: str
    message: str

    def __str__(self) -> str:
        return f"[{self.level}] {self.policy}: {self.urn}: {self.message}"


def evaluate(run: StackRun, policies: Sequence[Policy], config: Mapping[str, Mapping[str, Any]] | None = None) -> list[Violation]:
    """Every violation of `policies` in `run`: resource policies per resource, then stack policies."""
    by_urn = {r.urn: r for r in run.resources}
    found: list[Violation] = []
    for policy in policies:
        level = (policy.enforcement_level or EnforcementLevel.ADVISORY).value
        if level == EnforcementLevel.DISABLED.value:
            continue
        policy_config = _policy_config(policy, (config or {}).get(policy.name, {}))

        def report(message: str, urn: str | None = None, *, default_urn: str = "", policy: Policy = policy, level: str = level) -> None:
            found.append(Violation(policy.name, level, urn or default_urn, message))

        if isinstance(policy, ResourceValidationPolicy):
            for r in run.resources:
                args = ResourceValidationArgs(r.type, _props(r), r.urn, r.name, _options(r), _provider(r, by_urn), policy_config)
                _call(policy, args, lambda message, urn=None, r=r: report(message, urn, default_urn=r.urn), found)
        elif isinstance(policy, StackValidationPolicy):
            resources = {r.urn: PolicyResource(r.type, _props(r), r.urn, r.name, _options(r), _provider(r, by_urn), None, [], {}) for r in run.resources}
            for r in run.resources:
                resources[r.urn].parent = resources.get(r.parent)
                resources[r.urn].dependencies = [resources[d] for d in r.depends_on if d in resources]
            _call(policy, StackValidationArgs(list(resources.values()), policy_config), report, found)
    return found


def _call(policy: Policy, args: Any, report: Any, found: list[Violation]) -> None:
    try:
        policy.validate(args, report)  # type: ignore[attr-defined]
    except UnknownValueError as err:
        found.append(Violation(policy.name, EnforcementLevel.ADVISORY.value, getattr(args, "urn", ""), f"can't run during preview: {err.message}"))


def _policy_config(policy: Policy, overrides: Mapping[str, Any]) -> dict[str, Any]:
    schema = policy.config_schema.properties if policy.config_schema else {}
    return {**{k: v["default"] for k, v in schema.items() if "default" in v}, **overrides}


def _props(r: Registered) -> Any:
    """Inputs as the analyzer sees them: secrets unwrapped, unknowns raising on access."""
    return unknown_checking_proxy(_restore_unknowns(r.inputs))


def _restore_unknowns(value: Any) -> Any:
    if value == "[unknown]":
        return UNKNOWN_STRING_VALUE
    if isinstance(value, dict):
        return {k: _restore_unknowns(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_unknowns(v) for v in value]
    return value


def _options(r: Registered) -> PolicyResourceOptions:
    return PolicyResourceOptions(r.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), list(r.additional_secret_outputs), r.parent or None)


def _provider(r: Registered, by_urn: Mapping[str, Registered]) -> PolicyProviderResource | None:
    provider = by_urn.get(r.provider)
    if provider is None:
        return None
    return PolicyProviderResource(provider.type, _props(provider), provider.urn, provider.name)


def main(argv: list[str] | None = None) -> int:
    from scripts.cli import ArgumentParser, environment
    from scripts.offline.stackfile import StackFileError
    from scripts.plan import plan_environment
    from stacks.config import ConfigError, clock

    parser = ArgumentParser(prog="python -m scripts.offline.policy", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment name: checks ENV-trusted and every cloud stack of ENV")
    parser.add_argument("--as-of", type=clock.as_of_argument, metavar="YYYY-MM-DD", help="judge expiry dates as of this day (default: today, UTC)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(POLICY_PACK))
    from rules import POLICIES  # the pack's own module, as `pulumi preview --policy-pack policies` loads it

    try:
        with clock.as_of(args.as_of):
            runs = plan_environment(args.env)
    except (ConfigError, StackFileError) as err:
        print(str(err), file=sys.stderr)
        return 2
    mandatory = 0
    for run in runs:
        findings = evaluate(run, POLICIES)
        violations = sum(v.level == EnforcementLevel.MANDATORY.value for v in findings)
        mandatory += violations
        # An advisory stops nothing, so it is not counted as a violation.
        print(f"{run.stack}: {len(run.resources)} resources, {_count(violations, 'mandatory violation')}, "
              f"{_count(len(findings) - violations, 'advisory', 'advisories')}")
        for finding in findings:
            print(f"  {finding}")
    return 1 if mandatory else 0


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


if __name__ == "__main__":
    sys.exit(main())
