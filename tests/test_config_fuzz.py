"""Config fuzzing: random damage to the example stack configs either plans or fails cleanly.

Every case runs the real program under mocks. It either registers its resources, or raises
`ConfigError` before registering anything, with one single-line `<stack>: <key.path>: <message>` per
problem; never any other exception. Through the CLI, the same damage exits 2 with those lines on stderr.
Derandomized, so CI sees the same cases every run.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.offline import StackRun
from scripts.offline.fakes import StackOutputs
from scripts.offline.stackfile import stack_path
from scripts.plan import main as plan_main
from scripts.plan import reads_bundle
from stacks.config import ConfigError
from tests.conftest import Runner, example_config, handed_bundle

STACKS = ["dev-trusted", "dev-cloud", "prod-trusted", "prod-cloud"]
# Derandomized draws repeat some configs exactly: each distinct run runs once (copies returned).
RUNS = Runner(memo={})
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

WRONG_TYPES = st.one_of(
    st.integers(-(10**15), 10**15),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.sampled_from(["a", "url", "name", ""]), st.integers(0, 9), max_size=2),
    st.text(max_size=12),
)
OUT_OF_RANGE = st.sampled_from([-1, 0, 1, 1023, 65536, 99999, 2**31, -(2**63), 10**30])
MALFORMED = st.sampled_from(
    [
        # GUIDs and IDs
        "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c2",
        "3F2C8A1E-6B4D-4E2A-9C7F-1D5E8B0A4C21",
        "not-a-guid",
        "/subscriptions/x/resourceGroups/",
        "",
        " ",
        "a" * 300,
        # CIDRs
        "10.0.0.0/33",
        "10.0.0.1/16",
        "300.0.0.0/8",
        "10.0.0.0",
        "::1/128",
        "10.10.0.0/16",
        # URLs
        "http://kbs.example.com",
        "https://",
        "https://kbs..example.com",
        "https://KBS.example.com",
        "ftp://kbs.example.com",
        "https://kbs.example.com/path?q=1",
        "https://kbs.example.com:99999",
        "https://-kbs.example.com",
        # sizes, CSVs, regions
        "Standard_D4s_v5",
        "Standard_DC4es_v5",
        "trustee-operator",
        "eastus9",
        # hostile text: line breaks must never split a reported line
        "line\nbreak",
        "http://kbs\n.example.com",
        "Standard_D4s\nv5",
        "carriage\rreturn",
        "separator\u2028here",
        "nul\x00byte",
        "{not json",
        "[1,",
    ]
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a config tree, at any depth."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


def parent_of(tree: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        tree = tree[part]
    return tree


def damage(data: st.DataObject, tree: dict[str, Any]) -> None:
    """Apply one to three random edits to `tree` in place."""
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        targets = paths(tree)
        if not targets:
            return
        path = data.draw(st.sampled_from(targets), label="path")
        parent, leaf = parent_of(tree, path), path[-1]
        kind = data.draw(st.sampled_from(["delete", "wrong-type", "out-of-range", "malformed", "unknown-key"]), label="kind")
        if kind == "delete":
            del parent[leaf]
        elif kind == "unknown-key":
            target = parent[leaf] if isinstance(parent[leaf], dict) else parent if isinstance(parent, dict) else tree
            target[data.draw(st.sampled_from(["extra", "zzUnknown", "vxlanport", "line\nkey"]), label="key")] = 1
        else:
            strategy = {"wrong-type": WRONG_TYPES, "out-of-range": OUT_OF_RANGE, "malformed": MALFORMED}[kind]
            parent[leaf] = data.draw(strategy, label="value")


def as_config(tree: dict[str, Any]) -> dict[str, str]:
    """How Pulumi hands config to the program: top-level strings as-is, everything else as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in tree.items()}


@functools.cache
def trusted_outputs(stack: str) -> StackOutputs:
    config, secret_keys = example_config(stack)
    return RUNS(stack, config, secret_keys).stack_outputs


def assert_plans_or_fails_cleanly(stack: str, config: dict[str, str], secret_keys: tuple[str, ...]) -> StackRun | ConfigError:
    references = {}
    if stack.endswith("-cloud"):
        trusted = stack.rsplit("-", 1)[0] + "-trusted"
        references = {trusted: trusted_outputs(trusted)}
        if reads_bundle(config):  # handed its bundle as scripts.plan does, whatever the fuzzer left of trustBundle
            config = handed_bundle(config, references[trusted].values["trustBundles"][stack])
    try:
        return RUNS(stack, config, secret_keys, references)
    except ConfigError as err:
        assert err.registered == [], f"resources registered before the config error: {[r.urn for r in err.registered]}"
        assert_clean_lines(stack, err.lines())
        assert str(err).splitlines() == err.lines()
        return err


def assert_clean_lines(stack: str, lines: list[str]) -> None:
    assert lines, "a ConfigError with no problem"
    for line in lines:
        assert re.fullmatch(rf"{re.escape(stack)}: \S.*: .+", line) and line.splitlines() == [line], f"not one clear line: {line!r}"
        assert "Traceback" not in line and "pydantic" not in line.lower(), line


def example_tree(stack: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    config, secret_keys = example_config(stack)
    return {k: json.loads(v) if v[:1] in "{[" else v for k, v in config.items()}, secret_keys


@pytest.mark.parametrize("stack", STACKS)
@FUZZ
@given(data=st.data())
def test_damaged_config_plans_or_fails_with_one_line_per_problem(stack, data):
    tree, secret_keys = example_tree(stack)
    damage(data, tree)
    if data.draw(st.booleans(), label="toggle a secret"):
        # A secret stored in plain text, or a plain setting stored as a secret.
        secret_keys = tuple(sorted(set(secret_keys) ^ {data.draw(st.sampled_from(sorted(tree) or ["role"]), label="secret key")}))
    assert_plans_or_fails_cleanly(stack, as_config(tree), secret_keys)


@pytest.mark.parametrize(
    "stack, edits",
    [
        ("dev-cloud", {"network.vxlanPort": 80}),
        ("dev-cloud", {"azure.subscriptionId": "NOT-A-GUID"}),
        ("dev-cloud", {"peerPods.instanceSizes": ["Standard_D4s\nv5"], "peerPods.defaultInstanceSize": "x\ny"}),
        ("dev-trusted", {"kbs.url": "http://kbs\n.example.com"}),
    ],
)
def test_known_bad_values_fail_cleanly(stack, edits):
    """Fixed cases, among them the multi-line messages the fuzzer once found."""
    config, secret_keys = example_config(stack, set=edits)
    assert isinstance(assert_plans_or_fails_cleanly(stack, config, secret_keys), ConfigError)


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_cli_exits_2_with_one_line_per_problem(data, tmp_path_factory, capsys, monkeypatch):
    monkeypatch.setattr("scripts.plan.run_stack", RUNS)
    stacks_dir: Path = tmp_path_factory.mktemp("stacks")
    stack = data.draw(st.sampled_from(["dev-trusted", "dev-cloud"]), label="stack")
    for name in ("dev-trusted", "dev-cloud"):
        document = yaml.load(stack_path(name).read_text(), Loader=yaml.CSafeLoader)
        if name == stack:
            damage(data, document["config"])
        stack_path(name, stacks_dir).write_text(yaml.safe_dump(document))
    capsys.readouterr()
    code = plan_main(["dev", "--stacks-dir", str(stacks_dir), "--out", str(stacks_dir / "out")])
    captured = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        failed = captured.err.splitlines()[0].split(":", 1)[0]
        assert_clean_lines(failed, captured.err.splitlines())
        assert not (stacks_dir / "out").exists(), "files written for an invalid config"


def test_fuzzing_reaches_both_outcomes():
    """Guards the fuzzer itself: its edits must produce both valid and invalid configs."""
    outcomes = set()

    @settings(FUZZ, max_examples=40)
    @given(data=st.data())
    def probe(data):
        tree, secret_keys = example_tree("dev-cloud")
        damage(data, tree)
        outcomes.add(type(assert_plans_or_fails_cleanly("dev-cloud", as_config(tree), secret_keys)).__name__)

    probe()
    assert outcomes == {"StackRun", "ConfigError"}

