"""The edge: read a stack's raw Pulumi config once, validate it, and return a typed model.

`load` never registers a resource and never raises anything but `ConfigError`, whose `lines()` name
each offending key: `dev-cloud: peerPods.instanceSizes[1]: Standard_D4s_v5 is not a confidential VM size`.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable, Mapping

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import SecretStr, TypeAdapter, ValidationError

from stacks.config.base import Model, Problem, nested, section_problems
from stacks.config.cloud import CloudConfig
from stacks.config.trusted import TrustedConfig

PROJECT = "confidential-ai"
_STACK_NAME = re.compile(r"^(?P<env>[a-z][a-z0-9]{0,11})-(?P<role>trusted|cloud)$")

StackConfig = TrustedConfig | CloudConfig


class ConfigError(Exception):
    """A stack's config is invalid; one line per problem, each naming its key."""

    def __init__(self, stack: str, problems: Iterable[Problem]):
        self.stack = stack
        self.problems = list(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.stack}: {_key(p.path)}: {_one_line(p.message)}" for p in self.problems]


def _one_line(text: str) -> str:
    """Escape every character that would break a reported line (messages may quote raw config values)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _key(path: str) -> str:
    """A key path as reported: quoted when it is empty or has surrounding whitespace."""
    return _one_line(path if path and path == path.strip() else repr(path))


def load(stack: str, raw: Mapping[str, str], secret_keys: Iterable[str] = ()) -> StackConfig:
    """Validate one stack's config (keys without the project prefix, values as Pulumi passes them)."""
    name = _STACK_NAME.match(stack)
    if not name:
        raise ConfigError(stack, [Problem("(stack name)", "must be <env>-trusted or <env>-cloud, env lowercase and at most 12 characters")])
    role = name["role"]
    declared = raw.get("role")
    if declared != role:
        found = "is missing" if declared is None else f"is {declared!r}"
        raise ConfigError(stack, [Problem("role", f"{found} but stack {stack} is a {role} stack; set role: {role}")])

    model: type[StackConfig] = TrustedConfig if role == "trusted" else CloudConfig
    secrets = set(secret_keys)
    values: dict[str, object] = {}
    problems: list[Problem] = []
    secret_fields = {f.alias for f in model.model_fields.values() if _holds_secret(f.annotation)}
    for key, value in sorted(raw.items()):
        if key in secret_fields and key not in secrets:
            problems.append(Problem(key, f"must be stored as a secret: pulumi config set --secret {key} ... -s {stack}"))
        elif key in secrets and key not in secret_fields and key in _aliases(model):
            problems.append(Problem(key, "is stored as a secret but is a plain setting; store it in plain text"))
        values[key] = _decode(value)
    values["stack"] = {"name": stack, "env": name["env"], "role": role}
    if "stack" in raw:
        problems.append(Problem("stack", "unknown key (the stack identity comes from the stack name)"))
    if problems:
        raise ConfigError(stack, problems)

    # Each section is validated on its own, so one broken section does not hide another's problems.
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in values:
            if field.is_required():
                problems.append(Problem(key, "required key is missing"))
            continue
        try:
            section = TypeAdapter(field.annotation).validate_python(values[key])
        except ValidationError as err:
            problems.extend(nested(key, _from_pydantic(err)))
            continue
        problems.extend(nested(key, section_problems(section)))
    problems.extend(Problem(key, "unknown key") for key in values if key not in _aliases(model))
    if problems:
        raise ConfigError(stack, problems)
    config = model.model_validate(values)
    problems = list(config.rules())
    if problems:
        raise ConfigError(stack, problems)
    return config


def load_from_pulumi() -> StackConfig:
    """The current stack's config as the Pulumi runtime passes it (CLI env vars or mocks)."""
    prefix = f"{PROJECT}:"
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    raw = {k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}
    env_secrets = set(runtime_config.get_config_secret_keys_env())
    secret_keys = {k[len(prefix):] for k in merged if k.startswith(prefix) and (k in env_secrets or runtime_config.is_config_secret(k))}
    return load(pulumi.get_stack(), raw, secret_keys)


def _decode(value: object) -> object:
    """Structured config arrives as JSON text; scalars stay strings for pydantic to coerce."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _aliases(model: type[Model]) -> set[str]:
    return {f.alias for f in model.model_fields.values()}


def _holds_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


_PYDANTIC_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
}


def _from_pydantic(err: ValidationError) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False, include_input=False):
        path = ""
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif not part.startswith(("function-", "tagged-union[")):
                path += f".{part}" if path else part
        message = _PYDANTIC_MESSAGES.get(e["type"], e["msg"].removeprefix("Value error, "))
        problems.append(Problem(path, message))
    return problems


__all__ = ["CloudConfig", "ConfigError", "StackConfig", "TrustedConfig", "load", "load_from_pulumi", "PROJECT"]
