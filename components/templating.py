"""Render the Jinja2 templates in `templates/`: formats live there, values are escaped by these filters."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# What a TOML string may carry besides printable characters: newlines (multi-line strings) and tabs.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def toml_str(value: str) -> str:
    """A TOML basic string; JSON string escapes are valid TOML escapes for these characters."""
    if _UNSAFE.search(value) or "\n" in value:
        raise ValueError(f"refusing to render a control character into a TOML string: {value[:40]!r}")
    return json.dumps(value)


def toml_ml_str(value: str) -> str:
    """A TOML multi-line basic string holding `value` exactly (the newline after the opener is trimmed)."""
    if _UNSAFE.search(value):
        raise ValueError("refusing to render a control character into a TOML string")
    return '"""\n' + value.replace("\\", "\\\\").replace('"', '\\"') + '"""'


def toml_literal_block(value: str) -> str:
    """A TOML multi-line literal string holding `value` byte for byte: readable embedded documents."""
    if "'''" in value or _UNSAFE.search(value):
        raise ValueError("a TOML literal string cannot hold ''' or control characters")
    return "'''\n" + value + "'''"


def rego_json(value: Any) -> str:
    """A JSON value is a Rego term: data rendered into a policy, never concatenated by hand."""
    return json.dumps(value, indent=2, sort_keys=True)


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)
_ENV.filters.update(toml_str=toml_str, toml_ml_str=toml_ml_str, toml_literal_block=toml_literal_block, rego_json=rego_json)


def render(template: str, **values: Any) -> str:
    """Render `templates/<template>` with `values`; a missing value is an error, never blank."""
    return _ENV.get_template(template).render(**values)
