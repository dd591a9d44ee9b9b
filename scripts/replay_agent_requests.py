"""Replay recorded Kata agent requests against a workload's enforcing agent policy; name what it refuses.

    python -m scripts.replay_agent_requests ENV WORKLOAD FILE [--stacks-dir DIR]

FILE holds JSON lines, one request each: `{"request": "<Name>Request", "input": {...}}`, or the agent's own
policy log (`{"kind": "<Name>Request", "request": {...}}`: the agent writes every request it checks to
/tmp/policy.jsonl at debug log level; kata-containers src/agent/policy/src/policy.rs log_eval_input). The
policy is rendered as the plan renders it from ENV-trusted's config (stacks/trusted.py agent_policy_args),
in enforce mode whatever `agentPolicy.mode` says, and decided by regorus, the engine the agent embeds.

The path from "the policy would brick my cluster" to a fix: run the cluster in audit mode, collect the
log, replay it here, and read which field of which request the enforcing policy refuses.

Exit status: 0 every request allowed, 1 one or more refused, 2 bad arguments, config or FILE.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import regorus

from components.initdata import AGENT_REQUESTS, render_agent_policy
from scripts.cli import ArgumentParser, environment
from scripts.offline.stackfile import STACKS_DIR, StackFileError, read_stack_file
from stacks.config import ConfigError, TrustedConfig, load

# The rules that name a refused request's fields (templates/initdata/agent-policy.rego.j2); every other
# request is decided whatever its fields.
REFUSAL_RULES = {
    "CreateContainerRequest": "create_container_refusals",
    "CopyFileRequest": "copy_file_refusals",
    "CreateSandboxRequest": "create_sandbox_refusals",
}


class ReplayError(Exception):
    """Bad input, told in one line."""


@dataclass(frozen=True)
class Recorded:
    line: int
    request: str
    input: dict[str, Any]


def load_trusted(env: str, stacks_dir: Path) -> TrustedConfig:
    stack = f"{env}-trusted"
    stack_file = read_stack_file(stack, stacks_dir)
    prefix = "confidential-ai:"
    raw = {k[len(prefix):]: v for k, v in stack_file.config.items() if k.startswith(prefix)}
    config = load(stack, raw, [k[len(prefix):] for k in stack_file.secret_keys])
    assert isinstance(config, TrustedConfig)
    return config


def enforcing_policy(config: TrustedConfig, workload: str) -> str:
    """The workload's agent policy as the trusted stack renders it, in enforce mode."""
    from stacks.trusted import agent_policy_args  # the stack program's own mapping of config to policy

    names = [w.name for w in config.workloads]
    if workload not in names:
        raise ReplayError(f"workload {workload!r} is not in {config.stack.env}-trusted's workloads ({', '.join(names) or 'none'})")
    found = next(w for w in config.workloads if w.name == workload)
    return render_agent_policy(replace(agent_policy_args(config, found), mode="enforce"))


def read_requests(path: Path) -> list[Recorded]:
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise ReplayError(f"{path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ReplayError(f"{path} is not text (JSON lines of recorded agent requests)") from None
    recorded = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as err:
            raise ReplayError(f"{path}:{number}: not JSON ({err.msg})") from None
        if isinstance(entry, dict) and isinstance(entry.get("request"), str) and "input" in entry:
            name, input_ = entry["request"], entry["input"]
        elif isinstance(entry, dict) and isinstance(entry.get("kind"), str) and "request" in entry:
            name, input_ = entry["kind"], entry["request"]
        else:
            raise ReplayError(f'{path}:{number}: not a recorded request: expected {{"request": "<Name>Request", "input": {{...}}}}')
        if name not in AGENT_REQUESTS:
            raise ReplayError(f"{path}:{number}: {name!r} is not a request the agent asks its policy about")
        if not isinstance(input_, dict):
            raise ReplayError(f"{path}:{number}: the input of {name} is not a JSON object")
        recorded.append(Recorded(number, name, input_))
    return recorded


class Decider:
    """One regorus engine holding the policy, asked as the agent asks (`data.agent_policy.<Request>`)."""

    def __init__(self, policy: str):
        self._engine = regorus.Engine()
        # As the agent does: what the policy prints is gathered, not written out (policy.rs new_engine).
        self._engine.set_gather_prints(True)
        self._engine.add_policy("policy.rego", policy)

    def _rule(self, rule: str, input_: dict[str, Any]) -> Any:
        self._engine.set_input_json(json.dumps(input_))
        value = json.loads(self._engine.eval_rule_as_json(f"data.agent_policy.{rule}"))
        self._engine.take_prints()
        return value

    def refused(self, recorded: Recorded) -> list[str] | None:
        """None when allowed, else the fields that fail (or why the request is refused whatever its fields)."""
        try:
            if self._rule(recorded.request, recorded.input) is True:
                return None
            if recorded.request in REFUSAL_RULES:
                return sorted(self._rule(REFUSAL_RULES[recorded.request], recorded.input)) or ["(no field named)"]
        except RuntimeError as err:  # a builtin given the wrong type: the agent refuses too
            return [f"(the policy cannot evaluate this input: {str(err).strip().splitlines()[0]})"]
        return ["(refused whatever its fields)"]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m scripts.replay_agent_requests", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment: the policy of stack ENV-trusted")
    parser.add_argument("workload", help="the workload's name (workloads[i].name)")
    parser.add_argument("file", type=Path, help="recorded requests, JSON lines")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the Pulumi.<stack>.yaml files are (default: stacks/)")
    args = parser.parse_args(argv)
    try:
        decider = Decider(enforcing_policy(load_trusted(args.env, args.stacks_dir), args.workload))
        recorded = read_requests(args.file)
    except (ConfigError, StackFileError) as err:
        print(str(err), file=sys.stderr)
        return 2
    except ReplayError as err:
        print(f"python -m scripts.replay_agent_requests: {err}", file=sys.stderr)
        return 2
    refused = 0
    for entry in recorded:
        fields = decider.refused(entry)
        if fields is not None:
            refused += 1
            where = entry.input.get("container_id") or entry.input.get("path") or ""
            print(f"{args.file}:{entry.line}: {entry.request}{f' ({where})' if where else ''} refused: {', '.join(fields)}")
    print(f"{len(recorded)} requests replayed against {args.env}-trusted workload {args.workload}'s enforcing policy: {len(recorded) - refused} allowed, {refused} refused")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
