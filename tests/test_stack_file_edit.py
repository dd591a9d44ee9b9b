"""The stack-file round trip the `--write` tools share: only the named values change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scripts.offline.stackfile import STACKS_DIR, StackFileError, read_stack_file
from scripts.stack_file_edit import StackFileEdit, parse_path


@pytest.mark.parametrize("stack_file", sorted(STACKS_DIR.glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_an_untouched_stack_file_is_written_back_byte_for_byte(stack_file: Path) -> None:
    edit = StackFileEdit.read(stack_file)
    assert edit.text() == stack_file.read_text()
    assert not edit.changed


def _copy(tmp_path: Path, stack: str = "dev-trusted") -> Path:
    target = tmp_path / f"Pulumi.{stack}.yaml"
    shutil.copy(STACKS_DIR / target.name, target)
    return target


def test_set_changes_only_that_value_and_keeps_comments_and_list_style(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    before = path.read_text().splitlines()
    edit = StackFileEdit.read(path)
    old = edit.get("referenceValues.pcrs.pcr03")
    edit.set("referenceValues.pcrs.pcr03", [*old, "ab" * 32])
    edit.write()
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [(f'      pcr03: ["{old[0]}"]', f'      pcr03: ["{old[0]}", "{"ab" * 32}"]')]
    # What the program reads is the edited value.
    assert "ab" * 32 in read_stack_file("dev-trusted", tmp_path).config["confidential-ai:referenceValues"]


def test_set_creates_a_new_key_at_the_end_of_its_map_and_a_list_in_block_style_when_long(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    edit = StackFileEdit.read(path)
    # The examples pin args and workingDir already: new keys are ones the dev workload does not set.
    retiring = ["ab" * 32, "cd" * 32]
    edit.set("workloads[0].retiringPcr08", retiring)
    edit.set("workloads[0].registryCredentials", "ngc-api-key")
    edit.write()
    text = path.read_text()
    assert f"      retiringPcr08:\n        - {'ab' * 32}\n" in text
    assert StackFileEdit.read(path).get("workloads[0]")["registryCredentials"] == "ngc-api-key"
    assert list(StackFileEdit.read(path).get("workloads[0]"))[-2:] == ["retiringPcr08", "registryCredentials"]
    assert text.count("#") == (STACKS_DIR / path.name).read_text().count("#")


def test_append_unique_adds_once(tmp_path: Path) -> None:
    edit = StackFileEdit.read(_copy(tmp_path))
    value = "cd" * 32
    assert edit.append_unique("referenceValues.pcrs.pcr04", value)
    assert not edit.append_unique("referenceValues.pcrs.pcr04", value)
    assert edit.get("referenceValues.pcrs.pcr04")[-1] == value
    assert edit.append_unique("referenceValues.measurements", "m")
    assert edit.get("referenceValues.measurements") == ["m"]


def test_get_of_an_absent_key_is_none(tmp_path: Path) -> None:
    edit = StackFileEdit.read(_copy(tmp_path))
    assert edit.get("workloads[9].args") is None
    assert edit.get("noSuchKey.below") is None


@pytest.mark.parametrize("text, problem", [("config: [1]\n", "'config' section"), ("config: {a: [}\n", "not valid YAML")])
def test_a_file_that_is_not_a_stack_file_is_one_line(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "Pulumi.x-trusted.yaml"
    path.write_text(text)
    with pytest.raises(StackFileError, match=problem) as err:
        StackFileEdit.read(path)
    assert "\n" not in str(err.value)
    with pytest.raises(StackFileError, match="no such stack file"):
        StackFileEdit.read(tmp_path / "missing.yaml")


def test_paths_parse_as_config_errors_print_them() -> None:
    assert parse_path("workloads[0].args") == ["workloads", 0, "args"]
    assert parse_path("pulumi:disable-default-providers") == ["pulumi:disable-default-providers"]
    for bad in ("", "[0]", "a..b", "a[x]", "a.[0]"):
        with pytest.raises(ValueError):
            parse_path(bad)
