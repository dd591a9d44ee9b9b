"""Mutants of a trust-deciding Python module, found with `ast` and applied to the source text in place.

Each mutant edits one node's source span and leaves every other byte alone. Kinds:

- `remove`: a guard's verdict is dropped: a `raise`, a `return False`, a `yield Problem(...)` (config
  validation), a `report_violation(...)` call (the policy pack) and a `return <reason string>` under an
  `if` (a `*_problem` helper). A removed `yield` becomes `yield from ()`, so a generator stays one.
- In the test of an `if` whose body holds such a verdict: each operand of `and`/`or` dropped, and each
  ordering comparison moved across its boundary (`<` to `<=`, `>=` to `>`...).
- `constant`: a non-zero integer a `return` decides (a count or a default) becomes 0.
"""

from __future__ import annotations

import ast
import copy

from scripts.mutation import Mutant, number_duplicates

_FLIPS = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def _is_call_to(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == name) or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
    )


def _verdict(stmt: ast.stmt, in_if: bool) -> str | None:
    """What kind of guard verdict `stmt` is, if it is one; `in_if`: directly under an `if`/`else`."""
    if isinstance(stmt, ast.Raise):
        return "raise"
    if isinstance(stmt, ast.Return) and isinstance(stmt.value, ast.Constant) and stmt.value.value is False:
        return "return False"
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Yield) and _is_call_to(stmt.value.value, "Problem"):
        return "yield"
    if isinstance(stmt, ast.Expr) and _is_call_to(stmt.value, "report_violation"):
        return "report"
    if in_if and isinstance(stmt, ast.Return) and (
        isinstance(stmt.value, ast.JoinedStr) or (isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str))
    ):
        return "return reason"
    return None


class _Source:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.offsets = [0]
        for line in self.lines:
            self.offsets.append(self.offsets[-1] + len(line.encode()))
        self.raw = text.encode()

    def _pos(self, line: int, col: int) -> int:
        return self.offsets[line - 1] + col

    def replace(self, node: ast.AST, replacement: str) -> str:
        start = self._pos(node.lineno, node.col_offset)
        end = self._pos(node.end_lineno, node.end_col_offset)
        return (self.raw[:start] + replacement.encode() + self.raw[end:]).decode()

    def shown(self, node: ast.AST) -> str:
        text = " ".join(ast.get_source_segment(self.text, node).split())
        return text if len(text) <= 90 else text[:87] + "..."


def mutants(file: str, text: str) -> list[Mutant]:
    source = _Source(text)
    tree = ast.parse(text)
    found: list[Mutant] = []

    functions: dict[str, bool] = {"<module>": False}  # scope -> is (inside) a function

    def add(node: ast.AST, description: str, replacement: str, where: str) -> None:
        scope = where if functions[where] else None
        found.append(Mutant(file, node.lineno, f"{description} in {where}", source.replace(node, replacement), scope))

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            scope = where
            # Nested functions keep the scope of the outermost one: its code object holds theirs.
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not functions[where]:
                scope = f"{where}.{child.name}" if where != "<module>" else child.name
                functions[scope] = not isinstance(child, ast.ClassDef)
            if isinstance(child, ast.If):
                guarded = [s for s in child.body + child.orelse if _verdict(s, True)]
                for s in child.body + child.orelse:
                    kind = _verdict(s, True)
                    if kind:
                        add(s, f"remove `{source.shown(s)}`", "yield from ()" if kind == "yield" else "pass", scope)
                if guarded:
                    _condition_mutants(child.test, source, scope, add)
                visit(child, scope)
                continue
            if isinstance(child, ast.stmt) and not isinstance(getattr(node, "body", None), type(None)):
                kind = _verdict(child, False) if not isinstance(node, ast.If) else None
                if kind in ("raise", "return False", "yield", "report"):
                    add(child, f"remove `{source.shown(child)}`", "yield from ()" if kind == "yield" else "pass", scope)
            if isinstance(child, ast.Return) and child.value is not None:
                decided = [child.value.body, child.value.orelse] if isinstance(child.value, ast.IfExp) else [child.value]
                for constant in decided:
                    if isinstance(constant, ast.Constant) and type(constant.value) is int and constant.value != 0:
                        add(constant, f"return constant {constant.value} becomes 0 in `{source.shown(child)}`", "0", scope)
            visit(child, scope)

    visit(tree, "<module>")
    return number_duplicates(sorted(found, key=lambda m: m.line))


def _logic(test: ast.expr) -> list[ast.expr]:
    """The operands of a guard's condition: through `and`, `or` and `not`, not into calls or generators."""
    found, pending = [], [test]
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, ast.BoolOp):
            pending += node.values
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            pending.append(node.operand)
    return found


def _condition_mutants(test: ast.expr, source: _Source, where: str, add) -> None:
    shown = source.shown(test)
    for node in _logic(test):
        if isinstance(node, ast.BoolOp):
            for i, operand in enumerate(node.values):
                if any(isinstance(n, ast.NamedExpr) for n in ast.walk(operand)):
                    continue  # its name is used later: dropping it is a NameError, not a weaker guard
                rest = copy.deepcopy(node)
                del rest.values[i]
                kept = rest.values[0] if len(rest.values) == 1 else rest
                add(node, f"drop `{source.shown(operand)}` from `{shown}`", f"({ast.unparse(kept)})", where)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _FLIPS:
                    flipped = copy.deepcopy(node)
                    flipped.ops[i] = _FLIPS[type(op)]()
                    add(node, f"flip {_SYMBOL[type(op)]} to {_SYMBOL[_FLIPS[type(op)]]} in `{shown}`", f"({ast.unparse(flipped)})", where)
