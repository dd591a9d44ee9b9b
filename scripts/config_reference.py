"""Write docs/configuration.md, every config key, from the config models: `python -m scripts.config_reference`.

The models in `stacks/config/` are the reference: key names (their camelCase aliases), types,
constraints, defaults and the field docstrings. `--check` exits 1 when the committed file differs
from what the models give (the test does the same), so the page cannot drift from the code.
"""

from __future__ import annotations

import importlib
import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from scripts.cli import ArgumentParser
from stacks.config import CloudConfig, TrustedConfig

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "configuration.md"
MODULES = ("stacks.config.base", "stacks.config.trusted", "stacks.config.cloud", "stacks.config.workloads")
# Keys the loader fills in itself, never written in a stack file.
INJECTED = {"stack"}


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def named_types() -> dict[tuple[int, ...], str]:
    """The config modules' named constrained types (`Guid`, `Cidr`, ...) by the identity of their validators."""
    found = {}
    for module in map(importlib.import_module, MODULES):
        for name, value in vars(module).items():
            if typing.get_origin(value) is Annotated and not name.startswith("_"):
                found[tuple(id(m) for m in value.__metadata__)] = name
    return found


def constraints(metadata: list[Any]) -> str:
    """`1024–65535`, `at least 1`, `pattern ^...$` from pydantic's field metadata."""
    def bound(kind: type, attribute: str) -> Any:
        return next((getattr(m, attribute) for m in metadata if isinstance(m, kind)), None)

    parts = []
    low, high = bound(annotated_types.Ge, "ge"), bound(annotated_types.Le, "le")
    if low is not None and high is not None:
        parts.append(f"{low}–{high}")
    elif low is not None:
        parts.append(f"≥ {low}")
    elif high is not None:
        parts.append(f"≤ {high}")
    if (length := bound(annotated_types.MinLen, "min_length")) is not None:
        parts.append(f"at least {length}")
    parts += [f"pattern `{m.pattern}`" for m in metadata if getattr(m, "pattern", None)]
    return ", ".join(parts)


def type_name(annotation: Any, names: dict[tuple[int, ...], str]) -> str:
    if annotation is SecretStr:
        return "**secret**"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        named = names.get(tuple(id(m) for m in annotation.__metadata__))
        return named or type_name(args[0], names)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" if isinstance(a, str) else f"`{str(a).lower()}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a, names) for a in args if a is not type(None))
    if origin is list:
        return f"list of {type_name(args[0], names)}"
    if origin is dict:
        return f"map of {type_name(args[1], names)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ([], {}):
        return "empty"
    if isinstance(value, list):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The config sections a field holds, however wrapped (optional, list, map)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _suffix(annotation: Any) -> str:
    """How a key path continues into a list item (`[]`) or a map value (`.<name>`)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return next((_suffix(a) for a in args if a is not type(None)), "")
    if origin is list:
        return "[]"
    if origin is dict:
        return ".<name>"
    return ""


def rows(model: type[BaseModel], prefix: str, names: dict[tuple[int, ...], str]) -> Iterator[Row]:
    for name, field in model.model_fields.items():
        if not prefix and name in INJECTED:
            continue
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        description = " ".join((field.description or "").split())
        sections = _models_in(annotation)
        if sections and not description:
            description = " ".join((sections[0].__doc__ or "").split()) if sections[0].__doc__ != BaseModel.__doc__ else ""
        # A required field's Annotated type arrives unwrapped: its validators are in field.metadata.
        named = names.get(tuple(id(m) for m in field.metadata))
        kind = named or type_name(annotation, names)
        limits = "" if named else constraints(field.metadata)
        yield Row(key, f"{kind} ({limits})" if limits else kind, default_text(field), description)
        for section in sections:
            yield from rows(section, f"{key}{_suffix(annotation)}.", names)


def markdown(text: str) -> str:
    """Text for a table cell: `<` and `|` escaped outside code spans (GitHub would drop `<guid>`)."""
    spans = text.split("`")
    return "`".join(span if i % 2 else re.sub(r"[<|]", lambda m: {"<": "&lt;", "|": "\\|"}[m[0]], span) for i, span in enumerate(spans))


def render() -> str:
    names = named_types()
    lines = [
        "# Configuration reference",
        "",
        "Generated from the config models in `stacks/config/` by `python -m scripts.config_reference`; a test",
        "keeps it current. Keys go under `config:` in `stacks/Pulumi.<stack>.yaml`, prefixed `confidential-ai:`",
        "(`confidential-ai:kbs:` then `url:` for `kbs.url`). **secret** keys are set with",
        "`pulumi config set --secret KEY VALUE -s <stack>` (`--path 'kbsSecrets.<name>'` for a map entry).",
        "`key[]` is each item of a list, `key.<name>` each entry of a map. Rules across keys (CIDRs that",
        "must not overlap, sizes a model must be allowed to use, ...) are in the models' `rules()`; a broken",
        "one is reported with its key before anything is deployed.",
        "",
        "Named value types:",
        "",
    ]
    used = set()
    sections = []
    for title, model in (("`<env>-trusted` stacks (on-premises Trustee)", TrustedConfig), ("`<env>-cloud` stacks (Azure)", CloudConfig)):
        found = list(rows(model, "", names))
        sections += ["", f"## {title}", "", "| key | type | default | what |", "| --- | --- | --- | --- |"]
        sections += [f"| `{r.key}` | {r.type} | {r.default} | {markdown(r.description)} |" for r in found]
        used |= {name for r in found for name in names.values() if name in r.type.split()}
    lines += [f"- `{name}`: {markdown(_accepts(name))}" for name in sorted(used)]
    return "\n".join(lines + sections) + "\n"


def _accepts(name: str) -> str:
    """What a named type accepts, from its validator's own error text where it has one."""
    for module in map(importlib.import_module, MODULES):
        value = vars(module).get(name)
        if typing.get_origin(value) is Annotated:
            for meta in value.__metadata__:
                check = getattr(meta, "func", None)
                cells = dict(zip(check.__code__.co_freevars, check.__closure__ or (), strict=True)) if check else {}
                if "expected" in cells:
                    return cells["expected"].cell_contents
                if check is not None and check.__doc__:
                    return " ".join(check.__doc__.split())
                for part in getattr(meta, "metadata", [meta]):  # Field(pattern=...) keeps it one level down
                    if getattr(part, "pattern", None):
                        return f"matches `{part.pattern}`"
    return name


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m scripts.config_reference", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current, writing nothing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not REFERENCE.is_file() or REFERENCE.read_text() != text:
            print(f"{REFERENCE.relative_to(ROOT)} is stale: run python -m scripts.config_reference", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
