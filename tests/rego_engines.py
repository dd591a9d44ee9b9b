"""Evaluate Rego under two independent engines and insist they decide the same.

Trustee (and the Kata agent) evaluate with regorus (microsoft/regorus, here the `celine-regorus`
wheel); `regopy` is rego-cpp. The two differ on mixed-type comparisons and on builtin errors, so a
policy tested on one engine alone may decide differently where it runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import regorus
from regopy import Interpreter

UNDEFINED = "<undefined>"
"""What a query whose result is undefined evaluates to (the rule did not apply and has no default)."""


_LOADED: dict[tuple[str, str], Any] = {}
"""(engine, policy modules and data as JSON) -> that engine with them loaded: the suite asks the same policy
about one input after another, and loading (parsing) a policy costs as much as a query."""


def _loaded(engine: str, modules: Mapping[str, str], data: Any, load: Callable[[], Any]) -> Any:
    key = (engine, json.dumps([sorted(modules.items()), data], sort_keys=True))
    if key not in _LOADED:
        if len(_LOADED) >= 64:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load()
    return _LOADED[key]


def _regopy_loaded(modules: Mapping[str, str], data: Any) -> Interpreter:
    interpreter = Interpreter()
    for name, text in modules.items():
        interpreter.add_module(name, text)
    interpreter.add_data_json(json.dumps(data))
    return interpreter


def _regopy(modules: Mapping[str, str], rule: str, input_: Any, data: Any) -> Any:
    interpreter = _loaded("regopy", modules, data, lambda: _regopy_loaded(modules, data))
    interpreter.set_input(input_)
    output = interpreter.query(f"result := {rule}")
    if not output.ok():
        _LOADED.clear()  # nothing of a failed evaluation carries over to the next
    assert output.ok(), f"regopy: {output}"
    text = str(output)
    # rego-cpp answers an undefined query with the bare word `undefined`.
    return UNDEFINED if text == "undefined" else json.loads(text)["bindings"]["result"]


def _regorus(modules: Mapping[str, str], rule: str, input_: Any, data: Any) -> Any:
    # As Trustee evaluates a policy: `eval_rule` on the rule path; an evaluation error (a builtin
    # given the wrong type, `some .. in null`) fails the whole attestation there, and raises here
    # (confidential-containers/trustee deps/policy-engine/src/policy/rego.rs evaluate_sync).
    engine = _loaded("regorus", modules, data, lambda: _regorus_loaded(modules, data))
    try:
        engine.set_input_json(json.dumps(input_))
        value = json.loads(engine.eval_rule_as_json(rule))
    except Exception:
        _LOADED.clear()  # nothing of a failed evaluation carries over to the next
        raise
    return UNDEFINED if value == "<undefined>" else value


def _regorus_loaded(modules: Mapping[str, str], data: Any) -> regorus.Engine:
    engine = regorus.Engine()
    for name, text in modules.items():
        engine.add_policy(name, text)
    engine.add_data_json(json.dumps(data))
    return engine


ENGINES = {"regopy": _regopy, "regorus": _regorus}


def evaluate(modules: Mapping[str, str], rule: str, input_: Any, data: Any = None) -> Any:
    """The value of `rule` (a path such as `data.policy.allow`), identical under both engines, else an AssertionError."""
    decisions = {name: run(modules, rule, input_, data or {}) for name, run in ENGINES.items()}
    assert decisions["regopy"] == decisions["regorus"], f"the Rego engines decide {rule} differently: {decisions}"
    return decisions["regorus"]


class Engines:
    """One policy loaded once into both engines, queried with one input after another (module-scoped
    fixtures keep a suite of many requests fast; rego-cpp compiles each rule once, into a bundle): each
    decision identical under both, else an AssertionError."""

    def __init__(self, modules: Mapping[str, str], data: Any = None):
        self._regorus = regorus.Engine()
        self._regorus.set_gather_prints(True)  # as the agent's engine (kata-containers src/agent/policy/src/policy.rs)
        self._regopy = Interpreter()
        for name, text in modules.items():
            self._regorus.add_policy(name, text)
            self._regopy.add_module(name, text)
        self._regorus.add_data_json(json.dumps(data or {}))
        self._regopy.add_data_json(json.dumps(data or {}))
        self._bundles: dict[str, Any] = {}
        self._ahead: tuple[str, dict[str, Any]] = ("", {})
        """(input as canonical JSON, rule -> rego-cpp's value): rules rego-cpp decided in the last evaluation
        for a following `evaluate` of the same input (`also`)."""

    def prepare(self, rules: list[str]) -> None:
        """Compile `rules` into one rego-cpp bundle up front (one compilation instead of one per rule)."""
        entrypoints = [rule.removeprefix("data.").replace(".", "/") for rule in rules]
        bundle = self._regopy.build(None, entrypoints)
        self._bundles.update(dict.fromkeys(entrypoints, bundle))

    def evaluate(self, rule: str, input_: Any, also: tuple[str, ...] = ()) -> Any:
        """`rule`'s value for `input_`. `also`: rules the caller may ask about the same input next, which
        rego-cpp then decides in this same evaluation (a request's decision counts its refusals: one pass
        over the policy instead of two, about 50 ms for a NIM container); regorus decides each rule when
        it is asked, and the two values are compared then, as always."""
        input_json = json.dumps(input_, sort_keys=True)
        self._regorus.set_input_json(input_json)
        by_regorus = json.loads(self._regorus.eval_rule_as_json(rule))
        self._regorus.take_prints()
        by_regorus = UNDEFINED if by_regorus == "<undefined>" else by_regorus
        ahead_input, ahead = self._ahead
        self._ahead = ("", {})
        if ahead_input == input_json and rule in ahead:
            by_regopy = ahead[rule]
        elif also:
            by_regopy = self._regopy_together(input_json, input_, (rule, *also))
        else:
            by_regopy = self._regopy_rule(rule, input_)
        if isinstance(by_regopy, list) and isinstance(by_regorus, list):
            by_regopy, by_regorus = sorted(by_regopy, key=json.dumps), sorted(by_regorus, key=json.dumps)
        assert by_regopy == by_regorus, f"the Rego engines decide {rule} differently: regopy {by_regopy}, regorus {by_regorus}"
        return by_regorus

    def _regopy_rule(self, rule: str, input_: Any) -> Any:
        entrypoint = rule.removeprefix("data.").replace(".", "/")
        if entrypoint not in self._bundles:
            self._bundles[entrypoint] = self._regopy.build(None, [entrypoint])
        self._regopy.set_input(input_)
        output = self._regopy.query_bundle_entrypoint(self._bundles[entrypoint], entrypoint)
        assert output.ok(), f"regopy: {output}"
        text = str(output)
        # rego-cpp answers an undefined rule with the bare word `undefined` (or no expression).
        return UNDEFINED if text == "undefined" else json.loads(text).get("expressions", [UNDEFINED])[0]

    def _regopy_together(self, input_json: str, input_: Any, rules: tuple[str, ...]) -> Any:
        """rego-cpp's value of `rules[0]`, the others' kept for the next `evaluate`: one query binding each
        rule (rules within one query are evaluated once). A query with an undefined rule has no bindings:
        then each rule alone."""
        query = "; ".join(f"r{i} := {rule}" for i, rule in enumerate(rules))
        if query not in self._bundles:
            self._bundles[query] = self._regopy.build(query, [])
        self._regopy.set_input(input_)
        output = self._regopy.query_bundle(self._bundles[query])
        assert output.ok(), f"regopy: {output}"
        text = str(output)
        bindings = {} if text == "undefined" else json.loads(text).get("bindings", {})
        if len(bindings) != len(rules):
            return self._regopy_rule(rules[0], input_)
        self._ahead = (input_json, {rule: bindings[f"r{i}"] for i, rule in enumerate(rules[1:], 1)})
        return bindings["r0"]
