"""Bad input on the command lines: one line on stderr, a non-zero exit, no traceback, and before any slow work."""

from __future__ import annotations

import importlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts import plan, preflight, preview_pr, up
from scripts.offline import policy
from scripts.policy_diff import __main__ as policy_diff
from scripts.offline.stackfile import STACKS_DIR, StackFileError, read_stack_file

ROOT = Path(__file__).resolve().parents[1]
RECORDED_PR = ROOT / "tests" / "fixtures" / "preview" / "pr"

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "python -m scripts.plan": plan.main,
    "python -m scripts.preflight": preflight.main,
    "python -m scripts.offline.policy": policy.main,
    "python -m scripts.preview_pr": preview_pr.main,
    "python -m scripts.up": up.main,
    "python -m scripts.policy_diff": policy_diff.main,
}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def usage_error(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return one_error_line(capsys)


@pytest.mark.parametrize("prog", COMMANDS)
def test_an_unknown_option_is_one_line(prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--bogus"] if prog.endswith("preview_pr") else ["dev", "--bogus"]
    assert usage_error(COMMANDS[prog], argv, capsys) == f"{prog}: error: unrecognized arguments: --bogus (see --help)"


@pytest.mark.parametrize("prog", [p for p in COMMANDS if not p.endswith("preview_pr")])
def test_a_missing_environment_is_one_line(prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(COMMANDS[prog], [], capsys) == f"{prog}: error: the following arguments are required: env (see --help)"


@pytest.mark.parametrize("prog", ["python -m scripts.plan", "python -m scripts.preflight", "python -m scripts.offline.policy", "python -m scripts.policy_diff"])
@pytest.mark.parametrize("env", ["../dev", "", "dev/x"])
def test_an_environment_that_is_no_stack_name_is_refused(prog: str, env: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = usage_error(COMMANDS[prog], [env], capsys)
    assert line.startswith(f"{prog}: error: argument env: {env!r} is not an environment name")


# --- plan --out ----------------------------------------------------------------------------------


def never_planned(*args: object) -> list:
    raise AssertionError("a bad --out must fail before the plan runs")


def test_plan_out_that_is_a_file_fails_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plan, "plan_environment", never_planned)
    taken = tmp_path / "taken"
    taken.write_text("")
    for out in (taken, taken / "out"):
        assert plan.main(["dev", "--out", str(out)]) == 2
        assert one_error_line(capsys) == f"--out {out}: {taken} is not a directory"


def test_plan_out_in_a_read_only_directory_fails_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plan, "plan_environment", never_planned)
    monkeypatch.setattr(plan.os, "access", lambda path, mode: Path(path) != tmp_path)  # root may write anywhere
    assert plan.main(["dev", "--out", str(tmp_path / "a" / "b")]) == 2
    assert one_error_line(capsys) == f"--out {tmp_path / 'a' / 'b'}: {tmp_path} is not writable"
    assert not (tmp_path / "a").exists()


def test_plan_out_that_cannot_take_a_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plan, "plan_environment", lambda *args: [])
    (tmp_path / "topology.md").mkdir()
    assert plan.main(["dev", "--out", str(tmp_path)]) == 2
    assert one_error_line(capsys) == f"--out {tmp_path}: cannot write {tmp_path / 'topology.md'}: Is a directory"


# --- stack files ---------------------------------------------------------------------------------


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    copy = tmp_path / "stacks"
    shutil.copytree(STACKS_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config"))
    return copy


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"config:\n  confidential-ai:role: [trusted\n",
         "dev-trusted: Pulumi.dev-trusted.yaml is not valid YAML: expected ',' or ']', but got '<stream end>' (line 3, column 1)"),
        (b"- config\n", "dev-trusted: Pulumi.dev-trusted.yaml must be a mapping with a 'config' section"),
        (b"config:\n  123: x\n", "dev-trusted: Pulumi.dev-trusted.yaml: 'config' must be a mapping of key names"),
        (b"config:\n  confidential-ai:role: \xff\n",
         "dev-trusted: cannot read Pulumi.dev-trusted.yaml: 'utf-8' codec can't decode byte 0xff in position 32: invalid start byte"),
        (b"config:\n  confidential-ai:role: trusted\n  confidential-ai:role: cloud\n",
         "dev-trusted: Pulumi.dev-trusted.yaml: duplicate key role (line 3; first on line 2)"),
        (b"config:\n  confidential-ai:kbs:\n    url: https://a.example\n    exposure: route\n    url: https://b.example\n",
         "dev-trusted: Pulumi.dev-trusted.yaml: duplicate key kbs.url (line 5; first on line 3)"),
        (b"config:\n  confidential-ai:kbsResources:\n    - {name: a, name: b}\n",
         "dev-trusted: Pulumi.dev-trusted.yaml: duplicate key kbsResources[0].name (line 3; first on line 3)"),
    ],
    ids=["yaml-syntax", "not-a-mapping", "non-string-key", "not-utf8", "duplicate-key", "duplicate-nested-key", "duplicate-in-list"],
)
def test_a_broken_stack_file_is_one_line(stacks: Path, content: bytes, message: str) -> None:
    (stacks / "Pulumi.dev-trusted.yaml").write_bytes(content)
    with pytest.raises(StackFileError) as raised:
        read_stack_file("dev-trusted", stacks)
    assert str(raised.value) == message


def test_plan_reports_a_broken_stack_file_with_exit_2(stacks: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (stacks / "Pulumi.dev-trusted.yaml").write_text("config:\n  confidential-ai:role: trusted\n   bad: [\n")
    assert plan.main(["dev", "--stacks-dir", str(stacks), "--out", str(tmp_path / "out")]) == 2
    assert one_error_line(capsys) == "dev-trusted: Pulumi.dev-trusted.yaml is not valid YAML: mapping values are not allowed here (line 3, column 7)"


# --- preflight --trusted-outputs -----------------------------------------------------------------


def no_azure(config: object) -> None:
    raise AssertionError("a bad --trusted-outputs must fail before signing in to Azure")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, ": No such file or directory"),
        ("{not json", " is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (json.dumps(["kbsUrl"]), " is not a JSON object of stack outputs (like out/<env>-trusted/outputs.json)"),
    ],
    ids=["missing", "not-json", "not-an-object"],
)
def test_preflight_bad_trusted_outputs_is_one_line_before_azure(tmp_path: Path, content: str | None, reason: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    outputs = tmp_path / "outputs.json"
    if content is not None:
        outputs.write_text(content)
    assert preflight.main(["dev", "--trusted-outputs", str(outputs)], clients=no_azure) == 2
    assert one_error_line(capsys) == f"dev-cloud: --trusted-outputs {outputs}{reason}"


# --- preview_pr --output -------------------------------------------------------------------------


def test_preview_output_in_a_missing_directory_fails_before_any_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "missing" / "comment.md"
    # No recorded run at all: the --output check must come first.
    assert preview_pr.main(["--recorded", str(tmp_path / "nothing"), "--output", str(output)]) == 2
    assert one_error_line(capsys) == f"error: --output {output}: no directory {output.parent}"


def test_preview_output_that_cannot_be_written_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert preview_pr.main(["--recorded", str(RECORDED_PR), "--output", str(tmp_path)]) == 2
    assert one_error_line(capsys) == f"error: --output {tmp_path}: Is a directory"


def _commands() -> list[str]:
    """Every `python -m scripts.…` command: the modules under scripts/ with a `main`."""
    found = []
    for path in sorted((ROOT / "scripts").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if path.name != "__init__.py" and re.search(r"^def main\(", path.read_text(), re.M):
            found.append(module)
    return found


@pytest.mark.parametrize("module", _commands())
def test_every_option_of_every_command_says_what_it_does(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    lines = help_text.splitlines()
    # argparse lists each argument on a line of its own, its description beside it or on the next,
    # more indented line; an argument followed by another argument or a section break has none.
    listed = [i for i, line in enumerate(lines) if re.match(r"^  \S", line) and not line.startswith("  -h, --help")]
    assert listed, help_text
    bare = [lines[i].strip() for i in listed if not re.match(r"^  \S+(?: \S+)*  +\S", lines[i])
            and not (i + 1 < len(lines) and re.match(r"^ {5,}\S", lines[i + 1]))]
    assert bare == [], f"{module} --help lists arguments without a description"


def test_bench_counts_in_words() -> None:
    from scripts.bench import render

    assert render([], "dev", 1).splitlines()[0].startswith("scripts.bench: dev, 1 pair per size,")
    assert render([], "dev", 5).splitlines()[0].startswith("scripts.bench: dev, 5 pairs per size,")


def test_commands_run_from_outside_the_repository(tmp_path: Path) -> None:
    # requirements-dev.txt installs the project (`-e .`): the README's commands work from any directory and
    # still find the stack files of the clone.
    import subprocess
    import sys

    from tests.stack_edits import UNKNOWN_ENV, known_environments

    done = subprocess.run([sys.executable, "-m", "scripts.plan", UNKNOWN_ENV], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert (done.returncode, done.stderr.strip()) == (
        2, f"{UNKNOWN_ENV}-trusted: no stack file stacks/Pulumi.{UNKNOWN_ENV}-trusted.yaml (environments there: {known_environments()})")
