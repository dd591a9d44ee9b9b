"""The edge: read a stack's raw Pulumi config once, validate it, and return a typed model.

`load` never registers a resource and never raises anything but `ConfigError`, whose `lines()` name
each offending key: `dev-cloud: peerPods.instanceSizes[1]: Standard_D4s_v5 is not a confidential VM size`.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping

import pulumi
from pulumi.runtime import config as runtime_config
from pydantic import SecretStr, TypeAdapter, ValidationError

from stacks.config.base import SPOKE_NAME, Model, Problem, nested, section_problems
from stacks.config.cloud import CloudConfig
from stacks.config.trusted import TrustedConfig

PROJECT = "confidential-ai"
_STACK_NAME = re.compile(rf"^(?P<env>[a-z][a-z0-9]{{0,11}})-(?P<role>trusted|cloud(-{SPOKE_NAME})?)$")

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
        raise ConfigError(stack, [Problem("(stack name)", "must be <env>-trusted, <env>-cloud or <env>-cloud-<name>: env lowercase letters and digits, "
                                                          "name lowercase letters, digits and '-', each at most 12 characters")])
    role = "cloud" if name["role"].startswith("cloud") else "trusted"
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

    # Each section is validated on its own, so neither a wrongly stored value nor one broken section
    # hides another's problems.
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in values:
            if field.is_required():
                problems.append(Problem(key, "required key is missing"))
            continue
        try:
            section = TypeAdapter(field.annotation).validate_python(values[key])
        except ValidationError as err:
            problems.extend(nested(key, _from_pydantic(err, field.annotation)))
            continue
        problems.extend(nested(key, section_problems(section)))
    problems.extend(_unknown_key(key, model) for key in values if key not in _aliases(model))
    problems = _without_missing_explained_by_typos(problems)
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
_UNKNOWN_KEY = "unknown key"
_SUGGESTION = re.compile(r"did you mean (?P<key>\S+)\?$")


def _from_pydantic(err: ValidationError, annotation: object) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        path = ""
        parts: list[str | int] = []
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part.startswith(("function-", "tagged-union[")):
                continue
            else:
                path += f".{part}" if path else part
            parts.append(part)
        if e["type"] == "extra_forbidden":
            problems.append(_unknown_key(path, _model_at(annotation, parts[:-1]), str(parts[-1])))
            continue
        if e["type"] == "string_type" and isinstance(e["input"], (int, float)):
            # YAML reads `version: 4.20` as the number 4.2; the value itself is not echoed (it may be a secret).
            kind = "true/false" if isinstance(e["input"], bool) else "a number"
            problems.append(Problem(path, f"is {kind} in YAML, but text is expected: put the value in quotes (\"4.20\", not 4.20)"))
            continue
        message = _PYDANTIC_MESSAGES.get(e["type"], e["msg"].removeprefix("Value error, "))
        problems.append(Problem(path, message))
    return problems


def _unknown_key(path: str, model: type[Model] | None, key: str | None = None) -> Problem:
    """`unknown key`, with the closest key the section does have when one is close (a typo)."""
    known = sorted(_aliases(model)) if model else []
    close = difflib.get_close_matches(key if key is not None else path, known, n=1, cutoff=0.75)
    return Problem(path, f"{_UNKNOWN_KEY}; did you mean {close[0]}?" if close else _UNKNOWN_KEY)


def _without_missing_explained_by_typos(problems: list[Problem]) -> list[Problem]:
    """Drop `x: required key is missing` where a misspelt sibling key already says `did you mean x?`."""
    meant = set()
    for problem in problems:
        if match := _SUGGESTION.search(problem.message):
            parent = problem.path.rsplit(".", 1)[0] + "." if "." in problem.path else ""
            meant.add(parent + match["key"])
    return [p for p in problems if not (p.message == _PYDANTIC_MESSAGES["missing"] and p.path in meant)]


def _model_at(annotation: object, loc: list[str | int]) -> type[Model] | None:
    """The config model a pydantic error location points into (through lists, maps and optionals)."""
    node = _model_or_container(annotation)
    for part in loc:
        if node is None:
            return None
        if isinstance(node, type) and issubclass(node, Model):
            field = next((f for n, f in node.model_fields.items() if (f.alias or n) == part), None)
            node = _model_or_container(field.annotation) if field else None
        else:
            origin, args = typing.get_origin(node), typing.get_args(node)
            if origin in (list, tuple) and isinstance(part, int) and args:
                node = _model_or_container(args[0])
            elif origin is dict and isinstance(part, str) and len(args) == 2:
                node = _model_or_container(args[1])
            else:
                return None
    return node if isinstance(node, type) and issubclass(node, Model) else None


def _model_or_container(annotation: object) -> object:
    """`annotation` without Annotated or an Optional/Union wrapper around one model or container."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _model_or_container(members[0]) if len(members) == 1 else None
    return annotation


__all__ = ["CloudConfig", "ConfigError", "StackConfig", "TrustedConfig", "load", "load_from_pulumi", "PROJECT"]
