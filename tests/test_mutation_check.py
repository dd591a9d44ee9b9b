"""The mutation check's own contract: what it mutates, and that its list of equivalents stays true.

Running mutants is the check's job (`python -m scripts.mutation_check`, docs/benchmarks.md), too slow
for the suite; these tests cover the generators and the configuration in milliseconds.
"""

from __future__ import annotations

import ast
from pathlib import Path

from scripts import mutation_check
from scripts.mutation import python, rego
from tests.rego_engines import evaluate

REPO = Path(__file__).resolve().parents[1]

REGO = """package policy

import rego.v1

default allow := false

allow if {
\tinput.kind == "pod"
\tcount(input.gpus) >= 1
\tinput.name in {"a", "b"}
\tobject.keys(input.labels) == {"app"}
\tevery c in input.containers {
\t\tc.privileged == false
\t}
\tx := input.tier
}
"""


def descriptions(mutants) -> list[str]:
    return [m.description for m in mutants]


def test_every_shipped_rego_template_is_a_target():
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "templates").rglob("*.rego.j2")}
    assert templates and templates <= set(mutation_check.targets([]))


def test_every_target_has_tests_that_exist():
    for file, tests in mutation_check.targets([]).items():
        assert tests and all((REPO / t).is_file() for t in tests), file


def test_equivalents_name_existing_mutants_and_say_why():
    for entry in mutation_check.equivalents():
        assert entry.reason.strip(), entry
        assert entry.mutant in descriptions(mutation_check.mutants_of(entry.file)), f"stale equivalent: {entry}"


def test_rego_conditions_become_true_and_bindings_stay():
    mutated = {m.description: m.text for m in rego.mutants("p.rego.j2", REGO)}
    assert '\ttrue\n' in mutated['delete: input.kind == "pod"']
    assert "c.privileged" not in mutated["delete: every c in input.containers { ... }"]
    assert not [d for d in mutated if "x := input.tier" in d and d.startswith("delete")]


def test_rego_operators_literals_and_defaults():
    found = descriptions(rego.mutants("p.rego.j2", REGO))
    assert 'flip == to !=: input.kind == "pod"' in found
    assert "flip >= to >: count(input.gpus) >= 1" in found
    assert 'empty {"a", "b"}' in found and 'empty {"app"}' in found
    assert "default allow := false becomes true" in found


def test_a_membership_list_widens_to_admit_what_it_tests_and_other_lists_gain_a_member():
    mutated = {m.description: m.text for m in rego.mutants("p.rego.j2", REGO)}
    assert 'object.keys(input.labels) == {"app", "mutant-widened"}' in mutated['widen {"app"}']
    admit_any = mutated['widen {"a", "b"} to admit any input.name']
    # Any name, not one more of our choosing: a test that sends some name outside the list kills it.
    request = {"kind": "pod", "gpus": [0], "name": "neither", "labels": {"app": "x"}, "containers": [], "tier": 1}
    assert evaluate({"p.rego": REGO}, "data.policy.allow", request) is False
    assert evaluate({"p.rego": admit_any}, "data.policy.allow", request) is True


def test_a_list_that_some_or_every_iterates_is_not_a_membership_test():
    text = REGO.replace("\tx := input.tier\n", '\tsome n in {"p", "q"}\n\tn != input.kind\n\tx := input.tier\n')
    assert 'widen {"p", "q"}' in descriptions(rego.mutants("p.rego.j2", text))


PYTHON = '''
from pydantic import BaseModel, Field

class Resource(BaseModel):
    gpus: int = Field(default=1, ge=0)

    def required(self) -> int:
        return 1 if self.gated else 0

    def rules(self):
        if self.gated and self.gpus == 0:
            yield Problem("gpus", "needs a GPU")

def check(size):
    if size < 0 or size > 8:
        raise ValueError("bad size")
    return True
'''


def test_python_guards_are_removed_and_conditions_weakened():
    mutants = {m.description: m for m in python.mutants("m.py", PYTHON)}
    for text in (m.text for m in mutants.values()):
        ast.parse(text)
    removed_yield = mutants['remove `yield Problem("gpus", "needs a GPU")` in Resource.rules']
    assert "yield from ()" in removed_yield.text and removed_yield.scope == "Resource.rules"
    assert mutants['remove `raise ValueError("bad size")` in check'].scope == "check"
    assert "drop `size > 8` from `size < 0 or size > 8` in check" in mutants
    assert "flip < to <= in `size < 0 or size > 8` in check" in mutants
    assert "return constant 1 becomes 0 in `return 1 if self.gated else 0` in Resource.required" in mutants


ELSE_AND_INLINE = """package policy

import rego.v1

names := found if {
\tfound := object.get(input, "names", [])
\tis_array(found)
} else := []

allowed_name(name) if name == "a"

allow if {
\tevery name in names {
\t\tallowed_name(name)
\t}
\tinput.kind == "pod"
}
"""


def test_rules_after_an_else_are_rules_and_one_line_rules_have_a_condition():
    mutated = {m.description: m.text for m in rego.mutants("p.rego.j2", ELSE_AND_INLINE)}
    assert "delete: is_array(found)" in mutated
    assert 'delete: input.kind == "pod"' in mutated  # a condition of the rule after the else, not a rule of its body
    assert not [d for d in mutated if d.startswith("delete: allow if") or d.startswith("delete: } else")]
    assert "allowed_name(name) if true\n" in mutated['delete: allowed_name(name) if name == "a"']
    assert 'allowed_name(name) if name != "a"\n' in mutated['flip == to !=: allowed_name(name) if name == "a"']


def test_each_rule_definition_can_be_dropped():
    mutated = {m.description: m.text for m in rego.mutants("p.rego.j2", ELSE_AND_INLINE)}
    assert "allow if {\n\tfalse\n\tevery name in names {" in mutated["drop: allow if {"]
    assert 'allowed_name(name) if {\n\tfalse\n\tname == "a"\n}\n' in mutated['drop: allowed_name(name) if name == "a"']
    request = {"names": ["a"], "kind": "pod"}
    assert evaluate({"p.rego": ELSE_AND_INLINE}, "data.policy.allow", request) is True
    for dropped in ("drop: allow if {", 'drop: allowed_name(name) if name == "a"'):
        assert evaluate({"p.rego": mutated[dropped]}, "data.policy.allow", request) is not True, dropped
    # Dropped, the first definition gives way to its `else`: no names, so none is checked.
    assert evaluate({"p.rego": mutated["drop: names := found if {"]}, "data.policy.allow", {"names": ["b"], "kind": "pod"}) is True
