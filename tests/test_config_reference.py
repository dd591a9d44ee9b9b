"""docs/configuration.md is generated from the config models and must be current."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
import yaml

from scripts import config_reference
from scripts.offline.stackfile import STACKS_DIR

REGENERATE = "docs/configuration.md is stale: run python -m scripts.config_reference"


def test_the_committed_reference_is_what_the_models_give():
    assert config_reference.REFERENCE.read_text() == config_reference.render(), REGENERATE


@functools.cache
def reference() -> str:
    return config_reference.render()


def documented_keys() -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", reference(), re.M))


def key_paths(node: Any, prefix: str) -> list[str]:
    """Key paths as the reference writes them: list items as `[]`."""
    if isinstance(node, dict) and set(node) != {"secure"}:
        return [p for k, v in node.items() for p in [f"{prefix}{k}", *key_paths(v, f"{prefix}{k}.")]]
    if isinstance(node, list):
        return [p for item in node for p in key_paths(item, prefix.rstrip(".") + "[].")]
    return []


@pytest.mark.parametrize("stack_file", sorted(STACKS_DIR.glob("Pulumi.*.yaml")), ids=lambda p: p.stem)
def test_every_key_the_example_stacks_use_is_documented(stack_file):
    config = yaml.safe_load(stack_file.read_text())["config"]
    used = [p for key, value in config.items() if key.startswith("confidential-ai:")
            for p in key_paths({key.removeprefix("confidential-ai:"): value}, "")]
    keys = documented_keys()
    maps = {k.removesuffix(".<name>") for k in keys if k.endswith(".<name>")} | {k for k in keys if f"| `{k}` | map of" in reference()}
    undocumented = [p for p in used if p not in keys and not any(p.startswith(f"{m}.") for m in maps)]
    assert undocumented == []


def test_check_mode_fails_on_a_stale_file(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text(config_reference.render().replace("| `kbs.url` |", "| `kbs.address` |"))
    monkeypatch.setattr(config_reference, "REFERENCE", stale)
    monkeypatch.setattr(config_reference, "ROOT", tmp_path)
    assert config_reference.main(["--check"]) == 1
    assert capsys.readouterr().err == "configuration.md is stale: run python -m scripts.config_reference\n"
    assert config_reference.main([]) == 0 and config_reference.main(["--check"]) == 0


def test_a_key_added_to_a_model_shows_up(monkeypatch):
    from pydantic import create_model

    from stacks.config.trusted import AgentPolicy

    extended = create_model("AgentPolicy", __base__=AgentPolicy, allow_debug=(bool, False))
    extended.model_fields["allow_debug"].description = "Lets the guest be debugged."
    monkeypatch.setattr(config_reference.TrustedConfig.model_fields["agent_policy"], "annotation", extended)
    assert "| `agentPolicy.allowDebug` | bool | `false` | Lets the guest be debugged. |" in config_reference.render()


def test_every_named_value_type_says_what_a_value_looks_like():
    types = dict(re.findall(r"^- `([^`]+)`: (.*)$", reference(), re.M))
    assert types, "the reference lists its named value types"
    assert [name for name, text in types.items() if text.strip() in ("", name)] == []
