"""Every kind of bad input ends with one-line errors and exit status 2, and no traceback ever reaches
the terminal, not even while the interpreter shuts down.

The cases run in a real interpreter (one for all of them, `tests/bad_input_driver.py`), with
ResourceWarning raised as an error: an event loop left for the garbage collector then shows up as
"Exception ignored ... Traceback" at exit every time, instead of now and then.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.bad_input_driver import MARK
from tests.stack_edits import DELETE, UNKNOWN_ENV, known_environments, stacks_with

ROOT = Path(__file__).resolve().parents[1]
PYTHON = [sys.executable, "-W", "error::ResourceWarning"]

PLAN, POLICY, PREFLIGHT, PREVIEW, UP, VERIFY, PIN = (
    f"python -m scripts.{m}" for m in ("plan", "offline.policy", "preflight", "preview_pr", "up", "verify_endpoint", "pin_workload")
)

# id: (command, arguments, edits per stack file). "{stacks}" is a copy of stacks/ with the edits,
# "{tmp}" a scratch directory. An edit maps a key path (`models.0.gpus`) to a value, or is a whole file.
CASES: dict[str, tuple[str, list[str], dict[str, dict[str, Any] | str]]] = {
    "cloud-cidr-overlap": (PLAN, [], {"dev-cloud": {"network.podVmSubnetCidr": "10.10.0.0/22"}}),
    "cloud-cidr-malformed": (PLAN, [], {"dev-cloud": {"network.podVmSubnetCidr": "10.10.8.0/33"}}),
    "cloud-subnet-outside-vnet": (PLAN, [], {"dev-cloud": {"network.workerSubnetCidr": "10.20.2.0/23"}}),
    "cloud-not-confidential-size": (PLAN, [], {"dev-cloud": {"peerPods.instanceSizes": ["Standard_D4s_v5"]}}),
    "cloud-lower-case-size": (PLAN, [], {"dev-cloud": {"models.0.machineType": "standard_ncc40ads_h100_v5"}}),
    "cloud-region": (PLAN, [], {"dev-cloud": {"azure.location": "East US 2"}}),
    "cloud-line-break": (PLAN, [], {"dev-cloud": {"peerPods.instanceSizes": ["Standard_D4s\nv5"]}}),
    "cloud-wrong-type": (PLAN, [], {"dev-cloud": {"models": {"name": 3}}}),
    "cloud-missing-key": (PLAN, [], {"dev-cloud": {"azure": DELETE}}),
    # found only after the StackReference is registered
    "cloud-unknown-kbs-resource": (PLAN, [], {"dev-cloud": {"models.0.ngcApiKeyResource": "nope"}}),
    "cloud-short-trusted-stack": (PLAN, [], {"dev-cloud": {"trustedStack": "dev-trusted"}}),
    "trusted-http-kbs": (PLAN, [], {"dev-trusted": {"kbs.url": "http://kbs.example.com"}}),
    "trusted-role": (PLAN, [], {"dev-trusted": {"role": "cloud"}}),
    "trusted-secret-without-resource": (PLAN, [], {"dev-trusted": {"kbsResources": [{"name": "ngc-api-key", "secret": "ngc-api-key", "key": "api-key"}]}}),
    "trusted-unknown-key": (PLAN, [], {"dev-trusted": {"zzUnknown": 1}}),
    "trusted-unpinned-process": (PLAN, [], {"dev-trusted": {"workloads.1.args": DELETE}}),
    "duplicate-key": (PLAN, [], {"dev-trusted": "config:\n  confidential-ai:role: trusted\n  confidential-ai:role: trusted\n"}),
    "invalid-yaml": (PLAN, [], {"dev-trusted": "config:\n  confidential-ai:role: [trusted\n"}),
    "not-utf8": (PLAN, [], {"dev-cloud": "config:\n  confidential-ai:role: \udcff\n"}),
    "unknown-environment": (PLAN, [UNKNOWN_ENV], {}),
    "out-is-a-file": (PLAN, ["dev", "--out", "{tmp}/taken/out"], {}),
    "unknown-option": (PLAN, ["dev", "--bogus"], {}),
    "policy-unknown-environment": (POLICY, [UNKNOWN_ENV], {}),
    "preflight-config": (PREFLIGHT, ["dev", "--stacks-dir", "{stacks}"], {"dev-cloud": {"network.podVmSubnetCidr": "10.10.0.0/22"}}),
    "preflight-trusted-outputs": (PREFLIGHT, ["dev", "--trusted-outputs", "{tmp}/missing.json"], {}),
    "preview-no-recording": (PREVIEW, ["--recorded", "{tmp}/nothing"], {}),
    "up-unknown-environment": (UP, [UNKNOWN_ENV], {}),
    "up-destroy-unconfirmed": (UP, ["dev", "--destroy"], {}),
    "verify-unknown-environment": (VERIFY, [UNKNOWN_ENV, "llama-3-1-8b"], {}),
    "verify-unknown-model": (VERIFY, ["dev", "gpt-9"], {}),
    "pin-unreachable-registry": (PIN, ["127.0.0.1:9/nim/llm:1.0", "--env", "dev", "--workload", "llama-3-1-8b", "--plain-http"], {}),
    "pin-unknown-workload": (PIN, ["nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3", "--env", "dev", "--workload", "gpt-9"], {}),
    "pin-bad-platform": (PIN, ["nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3", "--env", "dev", "--workload", "llama-3-1-8b", "--platform", "amd64"], {}),
    "pin-no-tag": (PIN, ["nvcr.io/nim/meta/llama-3.1-8b-instruct", "--env", "dev", "--workload", "llama-3-1-8b"], {}),
    "verify-trusted-outputs": (VERIFY, ["dev", "llama-3-1-8b", "--trusted-outputs", "{tmp}/missing.json"], {}),
}


def command_line(case: str, tmp: Path) -> tuple[str, list[str]]:
    prog, argv, edits = CASES[case]
    stacks = stacks_with(tmp / case / "stacks", edits)
    scratch = tmp / case
    (scratch / "taken").write_text("")
    argv = [a.format(stacks=stacks, tmp=scratch) for a in argv]
    if prog == PLAN:
        argv = [*(argv or ["dev"]), "--stacks-dir", str(stacks), "--out", str(scratch / "out")] if "--out" not in argv else [*argv, "--stacks-dir", str(stacks)]
    return prog, argv


def sections(stderr: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current = None
    for line in stderr.splitlines():
        if line.startswith(MARK):
            current = line[len(MARK):]
            found[current] = []
        elif current is None:
            raise AssertionError(f"printed before the first case: {line!r}")
        else:
            found[current].append(line)
    return found


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, int], dict[str, list[str]], str]:
    tmp = tmp_path_factory.mktemp("bad-input")
    cases = [dict(zip(("prog", "argv"), command_line(case, tmp), strict=True), id=case) for case in CASES]
    (tmp / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([*PYTHON, "-m", "tests.bad_input_driver", str(tmp / "cases.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), sections(done.stderr), done.stderr


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_per_problem_and_exit_2(driven, case: str) -> None:
    statuses, printed, _ = driven
    assert statuses[case] == 2, printed[case]
    assert printed[case], "exit 2 without saying why"
    for line in printed[case]:
        assert line.strip() and not line.startswith((" ", "\t")) and "Traceback" not in line, printed[case]


def test_no_traceback_anywhere_not_even_at_exit(driven) -> None:
    _, printed, stderr = driven
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert printed["exit"] == [], "printed while the interpreter shut down"


def test_the_reported_cloud_cidr_error_through_the_real_entry_point(tmp_path: Path) -> None:
    stacks = stacks_with(tmp_path / "stacks", CASES["cloud-cidr-overlap"][2])
    done = subprocess.run([*PYTHON, "-m", "scripts.plan", "dev", "--stacks-dir", str(stacks), "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "dev-cloud: network.podVmSubnetCidr: 10.10.0.0/22 overlaps masterSubnetCidr (10.10.0.0/23)",
        "dev-cloud: network.podVmSubnetCidr: 10.10.0.0/22 overlaps workerSubnetCidr (10.10.2.0/23)",
    ]


def test_what_the_messages_tell(driven) -> None:
    _, printed, _ = driven
    # an unknown environment lists the known ones, in every command
    known = known_environments()
    assert printed["policy-unknown-environment"] == [f"{UNKNOWN_ENV}-trusted: no stack file stacks/Pulumi.{UNKNOWN_ENV}-trusted.yaml (environments there: {known})"]
    assert printed["up-unknown-environment"] == [f"error: unknown environment '{UNKNOWN_ENV}': expected one of {known}"]
    assert printed["verify-unknown-environment"] == [f"error: unknown environment '{UNKNOWN_ENV}': expected one of {known}"]
    assert printed["verify-unknown-model"] == ["error: unknown model 'gpt-9' in dev-cloud: expected one of llama-3-1-8b, mistral-7b"]
    assert printed["pin-no-tag"] == [
        "error: 'nvcr.io/nim/meta/llama-3.1-8b-instruct' names no tag or digest: give the release to pin, like nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"]
    # a workload given secrets with no pinned process is told the command that pins it
    assert printed["trusted-unpinned-process"] == [
        "dev-trusted: workloads[1].args: is unset, but workload mistral-7b receives KBS resources: pin its image's process with "
        "`python -m scripts.pin_workload nvcr.io/nim/mistralai/mistral-7b-instruct-v0.3@sha256:5de10d5a6f4253c86eb3e62b3a0e39db0dafc65bc2d4d8f193cd44673c62cace "
        "--env dev --workload mistral-7b --write`"]
    # the right size in the wrong case is told its spelling, not that it is no confidential size
    assert printed["cloud-lower-case-size"] == [
        "dev-cloud: models[0].machineType: standard_ncc40ads_h100_v5 is written in the wrong case: write Standard_NCC40ads_H100_v5"]
