"""Mutants of a Rego template (`templates/**/*.rego.j2`), line by line on the template's own text.

Every mutant stays syntactically valid Rego and keeps every variable safe, so the product's engine
(regorus, in Trustee and in the Kata agent) would load it; the runner checks that on the rendered text
and says so when it would not. Kinds:

- `delete`: a condition of a rule body (one expression, or a whole `every` block) becomes `true`.
  Bindings (`x := ...`, `some x in ...`) are not conditions: deleting one leaves its variable unsafe,
  a policy no engine loads, which no test needs to catch.
- `flip`: a comparison operator: `==`/`!=` negated, `<`/`<=` and `>`/`>=` moved across the boundary.
- `empty` / `widen`: a literal collection of constants (an allow-list) emptied or widened; a regex
  pattern widened to match anything. A membership test's list (`x in {...}`) is widened to admit the
  very value tested, whatever it is: one more member of our choosing would be killed only by a test
  sending that member. A list used otherwise (compared, iterated) gains one member.
- `default`: a rule's failing `default` value replaced by the value its rule affirms with.
- `drop`: one definition of a rule never applies (`false` before its body): a refusal no test triggers,
  or an allowance no request needs, is a line no test holds in place.
"""

from __future__ import annotations

import re

from scripts.mutation import Mutant, number_duplicates

_HEAD = re.compile(r"^\S.*\bif\s*\{\s*$")
_ELSE_HEAD = re.compile(r"^\}\s*else\b.*\{\s*$")  # `} else := value if {`: ends one body, opens the next
_INLINE = re.compile(r"^(?P<head>[a-z_][^#]*?)\s+if\s+(?P<body>[^{\s].*?)\s*$")  # `head if condition` on one line
_JINJA = re.compile(r"^\s*\{[%#]")
_OPERATOR = re.compile(r"==|!=|>=|<=|(?<![:<>=!])[<>](?!=)")
_FLIPS = {"==": "!=", "!=": "==", ">=": ">", ">": ">=", "<=": "<", "<": "<="}
_CONSTANT = r'(?:"\x00*"|`\x00*`|-?\d+(?:\.\d+)?|true|false)'
_LITERAL = re.compile(r"(?<![\w\]\).])(?P<open>[\[{])(?P<body>\s*" + _CONSTANT + r"(?:\s*,\s*" + _CONSTANT + r")*\s*,?\s*)(?P<close>[\]}])")
# The operand of `x in <literal>` (a reference, no call), unless `some`/`every` binds it there.
_MEMBER = re.compile(r"(?<![\w.\]])(?<!some )(?<!every )(?P<operand>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*|\[\x00*\])*)\s+in\s+$")
_REGEX_CALL = re.compile(r"regex\.match\(\s*(?P<quote>[`\"])")
_DEFAULT = re.compile(r"^default (?P<name>[a-z_][a-z0-9_]*) := (?P<value>.+?)\s*$")


def mask(text: str) -> str:
    """`text` with string contents as NUL and comments as spaces, same length: operators and brackets
    found in the mask are code."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
        elif c in "\"`":
            i += 1
            while i < n and text[i] != c:
                if c == '"' and text[i] == "\\":
                    out[i] = "\x00"
                    i += 1
                out[i] = "\x00"
                i += 1
            i += 1
        else:
            i += 1
    return "".join(out)


def _depth_change(masked_line: str) -> int:
    return sum(masked_line.count(o) for o in "([{") - sum(masked_line.count(c) for c in ")]}")


def _is_binding(statement: str) -> bool:
    return statement.startswith("some ") or re.search(r":=|(?<![=!<>]) = (?!=)", statement) is not None


def _statements(lines: list[str], masked: list[str]) -> list[tuple[str, int, int]]:
    """(kind, first, last) of each rule and of each statement in its body. A rule spanning lines is kind
    `rule` (its head and closing lines), and each statement of its body `condition`, `binding` or `every`;
    a one-line rule (`head if body`) is kind `inline`, or `inline binding` when its body binds."""
    found = []
    i = 0
    while i < len(lines):
        if _JINJA.match(lines[i]) or not (_HEAD.match(masked[i]) or _ELSE_HEAD.match(masked[i])):
            inline = _INLINE.match(masked[i]) if not _JINJA.match(lines[i]) else None
            if inline and _depth_change(masked[i]) == 0:
                found.append(("inline binding" if _is_binding(inline["body"]) else "inline", i, i))
            i += 1
            continue
        head = i
        i += 1
        blocks: list[int] = []  # first line of each open `every` block
        while i < len(lines) and not (masked[i].startswith("}") and not blocks):
            stripped = masked[i].strip()
            if not stripped or _JINJA.match(lines[i]):
                i += 1
                continue
            if stripped == "}":
                found.append(("every", blocks.pop(), i))
                i += 1
                continue
            if stripped.startswith("every ") and stripped.endswith("{"):
                blocks.append(i)
                i += 1
                continue
            first, depth = i, _depth_change(masked[i])
            while depth > 0 and i + 1 < len(lines):
                i += 1
                depth += _depth_change(masked[i])
            found.append(("binding" if _is_binding(stripped) else "condition", first, i))
            i += 1
        found.append(("rule", head, i))
        if i < len(lines) and not _ELSE_HEAD.match(masked[i]):
            i += 1
    return found


def _replace_lines(lines: list[str], first: int, last: int, replacement: str) -> str:
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    return "".join(lines[:first] + [f"{indent}{replacement}\n"] + lines[last + 1 :])


def _summary(lines: list[str], first: int, last: int) -> str:
    text = " ".join(line.strip() for line in lines[first : last + 1])
    return text if len(text) <= 90 else text[:87] + "..."


def mutants(file: str, text: str) -> list[Mutant]:
    lines = text.splitlines(keepends=True)
    masked_text = mask(text)
    masked = masked_text.splitlines(keepends=True)
    found: list[Mutant] = []
    for kind, first, last in _statements(lines, masked):
        before, after = "".join(lines[:first]), "".join(lines[first + 1 :])
        if kind == "rule":
            found.append(Mutant(file, first + 1, f"drop: {_summary(lines, first, first)}", before + lines[first] + "\tfalse\n" + after))
            continue
        if kind in ("condition", "every"):
            what = _summary(lines, first, first) + (" ... }" if kind == "every" else "")
            found.append(Mutant(file, first + 1, f"delete: {what}", _replace_lines(lines, first, last, "true")))
        elif kind.startswith("inline"):
            start, end = _INLINE.match(masked[first]).span("body")
            line = lines[first]
            found.append(Mutant(file, first + 1, f"drop: {_summary(lines, first, first)}", before + f"{line[:start]}{{\n\tfalse\n\t{line[start:end]}\n}}{line[end:]}" + after))
            if kind == "inline":
                found.append(Mutant(file, first + 1, f"delete: {_summary(lines, first, first)}", before + line[:start] + "true" + line[end:] + after))
        for k in range(first, last + 1 if kind != "every" else first + 1):
            for op in _OPERATOR.finditer(masked[k]):
                flipped = lines[k][: op.start()] + _FLIPS[op.group()] + lines[k][op.end() :]
                found.append(Mutant(file, k + 1, f"flip {op.group()} to {_FLIPS[op.group()]}: {lines[k].strip()}", "".join(lines[:k] + [flipped] + lines[k + 1 :])))
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def line_of(pos: int) -> int:
        return next(k for k in range(len(lines)) if offsets[k + 1] > pos) + 1

    for lit in _LITERAL.finditer(masked_text):
        if _JINJA.match(lines[line_of(lit.start()) - 1]):
            continue
        original = text[lit.start() : lit.end()]
        shown = " ".join(original.split())
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        empty = "[]" if lit["open"] == "[" else "set()"
        member = _MEMBER.search(masked_text, max(0, lit.start() - 200), lit.start())
        if member:
            operand = text[member.start("operand") : member.end("operand")]
            widened = f"array.concat({original}, [{operand}])" if lit["open"] == "[" else f"({original} | {{{operand}}})"
            widen = f"widen {shown} to admit any {operand}"
        else:
            extra = '"mutant-widened"' if re.search(r"[\"`]", lit["body"]) else "999999"
            widened = original[:-1].rstrip().rstrip(",") + f", {extra}" + original[-1]
            widen = f"widen {shown}"
        for description, replacement in ((f"empty {shown}", empty), (widen, widened)):
            found.append(Mutant(file, line_of(lit.start()), description, text[: lit.start()] + replacement + text[lit.end() :]))
    for call in _REGEX_CALL.finditer(masked_text):
        start = call.end()
        end = masked_text.index(call["quote"], start)
        pattern = text[start:end]
        found.append(Mutant(file, line_of(start), f"widen regex {pattern} to .*", text[:start] + ".*" + text[end:]))
    for k, line in enumerate(lines):
        default = _DEFAULT.match(line)
        if not default:
            continue
        name, value = default["name"], default["value"]
        affirming = set()
        for other in lines:
            rule = re.match(rf"^{name}(?: := (?P<value>.+?))? if \{{\s*$", other)
            if rule:
                affirming.add(rule["value"] or "true")
        for new in sorted(affirming - {value}):
            found.append(Mutant(file, k + 1, f"default {name} := {value} becomes {new}", "".join(lines[:k] + [f"default {name} := {new}\n"] + lines[k + 1 :])))
    return number_duplicates(sorted(found, key=lambda m: m.line))
