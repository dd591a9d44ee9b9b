"""Read `stacks/Pulumi.<stack>.yaml` as the Pulumi CLI would hand it to the program, offline.

`secure:` values cannot be decrypted here (that needs the stack's secrets provider), so each one is
replaced by a deterministic placeholder that names its key; the key stays a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from scripts.offline import PROJECT
from stacks.config.base import cloud_stack_names

STACKS_DIR = Path(__file__).resolve().parents[2] / "stacks"
PLACEHOLDER_PREFIX = "plan-placeholder"


class StackFileError(Exception):
    """A stack file is missing or unreadable; the message is one line for the user."""


@dataclass(frozen=True)
class StackFile:
    stack: str
    config: dict[str, str]
    """Keys as in the file (`confidential-ai:kbs`, `pulumi:disable-default-providers`); objects as JSON text."""
    secret_keys: frozenset[str]


def placeholder(stack: str, key: str) -> str:
    return f"{PLACEHOLDER_PREFIX}:{stack}:{key}"


def stack_path(stack: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def environments(stacks_dir: Path = STACKS_DIR) -> list[str]:
    """Environments with a trusted stack file `Pulumi.<env>-trusted.yaml` and at least one cloud stack file in `stacks_dir`."""
    trusted = (p.name.removeprefix("Pulumi.").removesuffix("-trusted.yaml") for p in stacks_dir.glob("Pulumi.*-trusted.yaml"))
    return sorted(env for env in trusted if cloud_stacks(env, stacks_dir))


def cloud_stacks(env: str, stacks_dir: Path = STACKS_DIR) -> list[str]:
    """The cloud stacks of `env` with a stack file: `<env>-cloud` and every `<env>-cloud-<name>`, by name."""
    names = cloud_stack_names(env)
    found = (p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in stacks_dir.glob(f"Pulumi.{env}-cloud*.yaml"))
    return sorted(stack for stack in found if names.match(stack))


def read_stack_file(stack: str, stacks_dir: Path = STACKS_DIR, secret_values: dict[str, str] | None = None) -> StackFile:
    """`secret_values` overrides placeholders by key path (`kubeconfig`, `kbsSecrets.ngc-api-key`)."""
    path = stack_path(stack, stacks_dir)
    if not path.is_file():
        known = ", ".join(environments(stacks_dir)) or "none"
        raise StackFileError(f"{stack}: no stack file {path.relative_to(path.parents[1])} (environments there: {known})")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise StackFileError(f"{stack}: cannot read {path.name}: {getattr(err, 'strerror', None) or err}") from None
    try:
        node, document = _parse(text)
    except yaml.YAMLError as err:
        raise StackFileError(f"{stack}: {path.name} is not valid YAML: {_yaml_problem(err)}") from None
    if duplicate := _first_duplicate_key(node):
        raise StackFileError(f"{stack}: {path.name}: {duplicate}")
    document = document or {}
    if not isinstance(document, dict):
        raise StackFileError(f"{stack}: {path.name} must be a mapping with a 'config' section")
    raw = document.get("config") or {}
    if not isinstance(raw, dict) or not all(isinstance(key, str) for key in raw):
        raise StackFileError(f"{stack}: {path.name}: 'config' must be a mapping of key names")
    config: dict[str, str] = {}
    secret_keys: set[str] = set()
    for key, value in raw.items():
        short = key.split(":", 1)[1] if key.startswith(f"{PROJECT}:") else key
        found_secret = False

        def resolve(node: Any, path: str) -> Any:
            nonlocal found_secret
            if isinstance(node, dict) and set(node) == {"secure"}:
                found_secret = True
                return (secret_values or {}).get(path, placeholder(stack, path))
            if isinstance(node, dict):
                return {k: resolve(v, f"{path}.{k}") for k, v in node.items()}
            if isinstance(node, list):
                return [resolve(v, f"{path}[{i}]") for i, v in enumerate(node)]
            return node

        resolved = resolve(value, short)
        if found_secret:
            secret_keys.add(key)
        config[key] = _as_config_string(resolved)
    return StackFile(stack, config, frozenset(secret_keys))


def _parse(text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree and its value: libyaml's parser when it is there (a tenth of the
    time), PyYAML's own when it fails, for its words of what is wrong."""
    fast = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.compose(text, Loader=fast), yaml.load(text, Loader=fast)
    except yaml.YAMLError:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


def _first_duplicate_key(node: yaml.Node | None, path: str = "") -> str | None:
    """`duplicate key kbs.url (line 9; first on line 4)` for the first key a mapping repeats.

    The Pulumi CLI refuses such a file (go-yaml: "mapping key ... already defined"); a YAML loader
    would silently keep the last value.
    """
    if isinstance(node, yaml.SequenceNode):
        return next(filter(None, (_first_duplicate_key(item, f"{path}[{i}]") for i, item in enumerate(node.value))), None)
    if not isinstance(node, yaml.MappingNode):
        return None
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        line = key_node.start_mark.line + 1
        name = _config_key(f"{path}.{key}" if path else key)
        if key in seen:
            return f"duplicate key {name} (line {line}; first on line {seen[key]})"
        seen[key] = line
        if found := _first_duplicate_key(value_node, f"{path}.{key}" if path else key):
            return found
    return None


def _config_key(path: str) -> str:
    """`config.confidential-ai:kbs.url` as the config key people write: `kbs.url`."""
    return path.removeprefix("config.").removeprefix(f"{PROJECT}:")


def _yaml_problem(err: yaml.YAMLError) -> str:
    """What is wrong and where (`expected ',' or ']' (line 3, column 1)`), on one line."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else problem


def _as_config_string(value: Any) -> str:
    """How the Pulumi CLI passes config to a program: strings as-is, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))
