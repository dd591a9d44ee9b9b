"""Mechanical mutants of the security-deciding sources and a runner that asks the tests about each one.

`scripts.mutation_check` is the command; `rego` and `python` make mutants, `runner` runs the tests
against each in a scratch copy of the repository.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One defect in one file: `text` is the whole mutated file."""

    file: str
    """Path relative to the repository root."""
    line: int
    """1-based line of the original file the defect is on."""
    description: str
    """Stable across unrelated edits (no line numbers): what `tests/mutation_equivalents.toml` names."""
    text: str
    scope: str | None = None
    """Python: the qualified name of the outermost function holding the defect, whose code the fast
    path swaps in place; None when the defect is outside any function (a fresh import is needed)."""


def number_duplicates(mutants: list[Mutant]) -> list[Mutant]:
    """Give the second and later mutants with one description a ` (#k)` suffix, so each name is unique."""
    seen: dict[str, int] = {}
    named = []
    for m in mutants:
        seen[m.description] = seen.get(m.description, 0) + 1
        k = seen[m.description]
        named.append(m if k == 1 else Mutant(m.file, m.line, f"{m.description} (#{k})", m.text, m.scope))
    return named
