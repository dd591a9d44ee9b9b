"""Reference values added to and removed from each list RVPS holds; a single value (a minimum TCB) that
changes is its old value removed and its new one added."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def reference_value_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(added, removed), each entry {"name", "value"}, by name then in list order."""
    added, removed = [], []
    for name in sorted(set(old) | set(new)):
        before = _values(old[name]) if name in old else []
        after = _values(new[name]) if name in new else []
        had, has = {_key(v) for v in before}, {_key(v) for v in after}
        added += [{"name": name, "value": v} for v in after if _key(v) not in had]
        removed += [{"name": name, "value": v} for v in before if _key(v) not in has]
    return added, removed
