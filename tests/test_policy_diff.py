"""`python -m scripts.policy_diff`: in a scratch git repository (the project's tracked files, committed),
a change to a stack file, a template or a policy shows as exactly the releases, reference values and
attestation decisions it changes, decided by regorus on the planned documents.

The base is the scratch working tree (`main`) planned once in this process, as the tool plans the
working tree; stack-file changes are planned the same way. The template change is planned at its
commit, in a subprocess running that commit's own `scripts.plan`, as the tool plans any ref.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import scripts.policy_diff as policy_diff_package
from scripts.policy_diff import compare, corpus
from scripts.policy_diff import __main__ as cli
from scripts.policy_diff.planning import plan_at, plan_here
from scripts.policy_diff.plans import TrustedPlan
from scripts.policy_diff.releases import Release
from scripts.policy_diff.report import text
from tests.stack_edits import stacks_with

ROOT = Path(__file__).resolve().parents[1]
ENV = "dev"
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
RESOURCE_POLICY = "templates/trustee/resource-policy.rego.j2"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


@dataclasses.dataclass(frozen=True)
class Scratch:
    repo: Path
    base: TrustedPlan
    """dev-trusted of `main`, the working tree, planned in this process."""
    no_gpu: TrustedPlan
    """dev-trusted planned at the commit whose resource policy template no longer counts GPUs."""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    repo = tmp_path_factory.mktemp("policy-diff-repo")
    for name in git(ROOT, "ls-files", "-z").split("\0"):
        if name and (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    template = repo / RESOURCE_POLICY
    original = template.read_text()
    weakened = "\n".join(line for line in original.splitlines() if "count(attested_gpus) >=" not in line) + "\n"
    assert weakened != original
    git(repo, "checkout", "-q", "-b", "no-gpu")
    template.write_text(weakened)
    git(repo, "commit", "-q", "-am", "the resource policy no longer requires GPUs")
    no_gpu_commit = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")  # the working tree has the original template again
    with ThreadPoolExecutor(1) as pool:  # the subprocess plans while this process plans the working tree
        no_gpu = pool.submit(plan_at, repo, no_gpu_commit, ENV)
        return Scratch(repo, plan_here(ENV, repo / "stacks"), no_gpu.result())


def planned_with(tmp_path: Path, edits: dict[str, Any]) -> TrustedPlan:
    """The working tree's dev-trusted with these stack file edits, planned in this process."""
    return plan_here(ENV, stacks_with(tmp_path / "stacks", {f"{ENV}-trusted": edits}))


def releases(entries: list[Release]) -> list[dict[str, Any]]:
    return [r.as_json() for r in entries]


def test_no_change_shows_nothing(scratch: Scratch) -> None:
    diff = compare(ENV, "main", scratch.base, plan_here(ENV, scratch.repo / "stacks"))
    assert diff.empty, diff.as_json()
    assert text(diff).endswith(": no change in who receives which secret, in reference values or in attestation decisions.\n")


def test_giving_a_workload_a_resource_is_exactly_that_gain(scratch: Scratch, tmp_path: Path) -> None:
    diff = compare(ENV, "main", scratch.base, planned_with(tmp_path, {"workloads.1.resources": ["ngc-api-key", "model-key"]}))
    assert releases(diff.gains) == [{"workload": "mistral-7b", "resource": "model-key", "gpus": 1}]
    assert (diff.losses, diff.added, diff.removed, diff.newly_refused, diff.newly_affirmed) == ([], [], [], [], [])


def test_taking_a_resource_away_is_exactly_that_loss(scratch: Scratch, tmp_path: Path) -> None:
    diff = compare(ENV, "main", scratch.base, planned_with(tmp_path, {"workloads.0.resources": ["ngc-api-key"]}))
    assert releases(diff.losses) == [{"workload": "llama-3-1-8b", "resource": "model-key", "gpus": 1}]
    assert (diff.gains, diff.added, diff.removed, diff.newly_refused, diff.newly_affirmed) == ([], [], [], [], [])


def test_raising_a_minimum_tcb_refuses_genuine_evidence_below_it(scratch: Scratch, tmp_path: Path) -> None:
    # Upstream's Genoa evidence reports SNP firmware 23, and dev's floor is Genoa's (corpus/SOURCES.md); its Milan
    # evidence (bootloader 4) is refused on hardware by that floor already, so only the Genoa cases change.
    diff = compare(ENV, "main", scratch.base, planned_with(tmp_path, {"referenceValues.minimumTcb.snp": 24}))
    refused = {(e["case"], e["policy"]): (e["claims"], e["verdict"]) for e in diff.newly_refused}
    # Every Genoa case not refused on hardware already (the low-TCB cases are).
    genoa = {case["name"] for case in corpus.CASES["cpu"]
             if case["name"] == "genuine-genoa" or (case["name"].startswith("genoa-") and not case["name"].startswith("genoa-low-tcb-"))}
    assert refused == {(name, "cpu"): (["hardware"], "refused") for name in genoa}
    assert (diff.added, diff.removed) == ([{"name": "snp_min_tcb_snp", "value": 24}], [{"name": "snp_min_tcb_snp", "value": 23}])
    assert (diff.gains, diff.losses, diff.newly_affirmed) == ([], [], [])


def test_a_template_that_stops_requiring_the_gpu_gains_every_gpu_gated_release_without_one(scratch: Scratch) -> None:
    """Planned at the commit with the edited template: that commit's own code renders the policy. Nothing
    else differs, so the two ways of planning (a ref's `scripts.plan`, the working tree here) agree."""
    diff = compare(ENV, "main", scratch.base, scratch.no_gpu)
    assert releases(diff.gains) == [
        {"workload": "llama-3-1-8b", "resource": "llama-3-1-8b-tls-key", "gpus": 0},
        {"workload": "llama-3-1-8b", "resource": "model-key", "gpus": 0},
        {"workload": "llama-3-1-8b", "resource": "ngc-api-key", "gpus": 0},
        {"workload": "mistral-7b", "resource": "mistral-7b-tls-key", "gpus": 0},
        {"workload": "mistral-7b", "resource": "ngc-api-key", "gpus": 0},
    ]
    assert (diff.losses, diff.added, diff.removed, diff.newly_refused, diff.newly_affirmed) == ([], [], [], [], [])


def test_a_release_to_a_pod_vm_measuring_no_workload_is_a_danger_listed_first(scratch: Scratch) -> None:
    unbound = 'package policy\nimport rego.v1\ndefault allow := false\nallow if data.plugin == "resource"\n'
    diff = compare(ENV, "main", scratch.base, dataclasses.replace(scratch.base, resource_policy=unbound))
    assert diff.gains[0].dangerous and diff.dangers and all(not g.dangerous for g in diff.gains[len(diff.dangers):])
    assert {(g.resource, g.gpus) for g in diff.dangers} == {(r, n) for r in scratch.base.resources for n in (0, 1)}
    assert text(diff).splitlines()[2].startswith("  DANGER a pod VM measuring no declared workload now receives ")


def test_a_cpu_policy_that_stops_checking_debug_affirms_that_claim_of_the_debug_case(scratch: Scratch) -> None:
    """dev's floor is Genoa's, so a debuggable Genoa pod VM is refused on its debug flag alone: dropping that check affirms it."""
    lax = scratch.base.cpu_policy.replace('evidence.policy_debug_allowed == "false"', "true")
    assert lax != scratch.base.cpu_policy
    diff = compare(ENV, "main", scratch.base, dataclasses.replace(scratch.base, cpu_policy=lax))
    assert diff.newly_affirmed == [{"case": "genoa-debug-allowed", "policy": "cpu", "verdict": "affirmed", "claims": ["configuration"]}]
    assert "genoa-debug-allowed (the SNP guest policy lets the host debug the VM) by the CPU policy: configuration now affirmed" in text(diff)


def test_a_weakened_check_shows_even_while_the_case_stays_refused_on_another_claim(scratch: Scratch, tmp_path: Path) -> None:
    """A Milan-derived microcode minimum (209) refuses every Genoa case on hardware, yet the weakened debug check shows."""
    milan_floor = planned_with(tmp_path, {"referenceValues.minimumTcb.microcode": 209})
    lax = milan_floor.cpu_policy.replace('evidence.policy_debug_allowed == "false"', "true")
    diff = compare(ENV, "main", milan_floor, dataclasses.replace(milan_floor, cpu_policy=lax))
    assert diff.newly_affirmed == [{"case": "genoa-debug-allowed", "policy": "cpu", "verdict": "refused", "claims": ["configuration"]}]
    assert "genoa-debug-allowed (the SNP guest policy lets the host debug the VM) by the CPU policy: configuration now affirmed (still refused on another claim)" in text(diff)


def test_a_policy_that_fails_to_evaluate_refuses_and_says_why(scratch: Scratch) -> None:
    broken = scratch.base.gpu_policy + "\nconfiguration := upper(1)\n"
    diff = compare(ENV, "main", scratch.base, dataclasses.replace(scratch.base, gpu_policy=broken))
    genuine = next(e for e in diff.newly_refused if e["case"] == "genuine-h100")
    assert genuine["verdict"] == "error" and "upper" in genuine["error"]


def test_the_cli_prints_the_json_document_and_a_short_report(scratch: Scratch, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    planned_at = []
    monkeypatch.setattr(policy_diff_package, "plan_at", lambda root, commit, env: planned_at.append((root, commit, env)) or scratch.base)
    stack_file = scratch.repo / "stacks" / f"Pulumi.{ENV}-trusted.yaml"
    original = stack_file.read_text()
    git(scratch.repo, "checkout", "-q", "-b", "feature")
    try:
        stack_file.write_text(original.replace("resources: [ngc-api-key, model-key]", "resources: [ngc-api-key]"))
        assert cli.main([ENV, "--json"], root=scratch.repo) == 0
        document = json.loads(capsys.readouterr().out)
        assert planned_at == [(scratch.repo, git(scratch.repo, "rev-parse", "main"), ENV)]
        assert set(document) == {"environment", "base", "releases", "referenceValues", "attestation"}
        assert document["base"].startswith("merge base with main (")
        assert document["releases"] == {"gains": [], "losses": [{"workload": "llama-3-1-8b", "resource": "model-key", "gpus": 1}]}
        assert cli.main([ENV, "--base", "main"], root=scratch.repo) == 0
        assert capsys.readouterr().out.splitlines()[1:] == ["Losses (1):", "  llama-3-1-8b no longer receives model-key with 1 GPU attested"]
    finally:
        stack_file.write_text(original)
        git(scratch.repo, "checkout", "-q", "main")


@pytest.mark.parametrize(("argv", "message"), [
    (["dev", "--base", "no-such-ref"], re.compile(r"^error: --base no-such-ref names no commit in .*\n$")),
    (["nope"], re.compile(r"^error: nope: no stack file stacks/Pulumi.nope-trusted.yaml, neither at merge base with main nor in the working tree\n$")),
])
def test_bad_input_is_one_line(scratch: Scratch, argv: list[str], message: re.Pattern[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv, root=scratch.repo) == 2
    assert message.match(capsys.readouterr().err)


def test_pod_vms_are_read_per_cloud_stack_once_a_fleet_names_them() -> None:
    from scripts.policy_diff.plans import PodVm, pod_vms

    today = {"workloads": {"llama": {"initdataPcr8": "aa", "gpus": 1}, "mistral": {"initdataPcr8": "bb", "gpus": 2}}}
    assert pod_vms(today) == [PodVm("llama", "aa", 1), PodVm("mistral", "bb", 2)]
    fleet = {"spokes": {"prod-cloud-east": {"workloads": {"llama": {"initdataPcr8": "cc", "gpus": 1}}},
                        "prod-cloud-west": {"llama": {"initdataPcr8": "dd", "gpus": 1}}}}
    assert [(vm.cloud_stack, vm.workload, vm.pcr8) for vm in pod_vms(fleet)] == [
        ("prod-cloud-east", "llama", "cc"), ("prod-cloud-west", "llama", "dd")]
    assert Release("prod-cloud-east", "llama", "model-key", 1).as_json() == {
        "cloudStack": "prod-cloud-east", "workload": "llama", "resource": "model-key", "gpus": 1}


# What each corpus case exists to show: the claim its policy refuses (none for a genuine case).
TARGETED = {
    "genuine-milan": set(), "genoa-debug-allowed": {"configuration"}, "genoa-migration-agent-allowed": {"configuration"},
    "genoa-13-pcr-quote": {"executables"}, "genoa-unlisted-measurement": {"executables"},
    **{f"genoa-low-tcb-{c}": {"hardware"} for c in ("bootloader", "snp", "microcode")},
    **{f"genoa-wrong-pcr{n}": {"executables"} for n in ("03", "04", "07", "08", "09", "11", "12")},
    "genuine-h100": set(), "h100-debug-enabled": {"configuration"}, "h100-secure-boot-off": {"configuration"},
    "h100-unknown-driver": {"configuration"}, "h100-unknown-vbios": {"configuration"}, "h100-measurement-mismatch": {"executables"},
    "h100-nonce-mismatch": {"hardware"}, "h100-revoked-device-certificate": {"hardware"}, "h100-unsigned-driver-rim": {"executables"},
}


def test_each_corpus_case_is_refused_for_what_it_shows_and_both_engines_agree(scratch: Scratch) -> None:
    """With dev's policies and reference values (its launch measurement pinned, Genoa's TCB as the minimum),
    genuine cases affirm and each refusal is refused on its claim; regopy decides as regorus."""

    from tests.rego_engines import evaluate

    genoa, milan = (json.loads((corpus.CORPUS / f"az-snp-vtpm-{cpu}.json").read_text())["az-snp-vtpm"] for cpu in ("genoa", "milan"))
    # The floor of a fleet of both processors: the weaker of their TCBs, component by component (docs/operations.md).
    values = dict(scratch.base.reference_values) | {"measurement": [genoa["measurement"]]} | {
        f"snp_min_tcb_{c}": min(int(genoa[f"reported_tcb_{c}"]), int(milan[f"reported_tcb_{c}"]), scratch.base.reference_values[f"snp_min_tcb_{c}"])
        for c in ("bootloader", "tee", "snp", "microcode")}
    plan = dataclasses.replace(scratch.base, reference_values=values, cpu_policy=scratch.base.cpu_policy.replace(
        "launch_measurement_approved := true", 'launch_measurement_approved if evidence.measurement in query_reference_value("measurement")'))
    pcr8 = corpus.reference_pcr8(plan, plan)
    decided = corpus.statuses(plan, values, pcr8)
    cases = {(kind, case["name"]) for kind in ("cpu", "gpu") for case in corpus.CASES[kind]}
    assert {name for _, name in cases} == set(TARGETED) | {"genuine-genoa"}
    for kind, name in sorted(cases):
        claims = evaluate({"policy.rego": getattr(plan, f"{kind}_policy"), "shim.rego": corpus.SHIM}, "data.policy.trust_claims",
                          corpus.case_input(next(c for c in corpus.CASES[kind] if c["name"] == name), kind, values, pcr8), {"rv": values})
        refused = {c for c in corpus.APPRAISED if claims[c] not in corpus.AFFIRMING}
        assert refused == set(decided[kind, name].refused) == TARGETED.get(name, set()), name


def test_asking_for_every_resource_at_once_decides_as_asking_for_each(scratch: Scratch) -> None:
    """The release matrix asks the policy about all resources in one evaluation (`with data["resource-path"]`);
    that is what KBS decides asking for one resource at a time."""
    from scripts.policy_diff.releases import UNKNOWN, PROBE_PCR8, PodVm, _allowed, ear_for, released
    from scripts.policy_diff.rego import Policy

    plan = scratch.base
    matrix = [(vm, n) for vm in (*plan.pod_vms, PodVm(UNKNOWN, PROBE_PCR8, 1)) for n in (0, 1, 2)]
    one = Policy(plan.resource_policy)
    each = {Release("", vm.workload, name, n) for vm, n in matrix for name, path in plan.resources.items()
            if _allowed(one, ear_for(vm.pcr8, n), path)}
    assert released(plan, matrix, dict(plan.resources)) == each and len(each) > 5


def test_a_policy_that_fails_on_one_resource_still_decides_the_others(scratch: Scratch) -> None:
    """KBS denies the request the policy fails on, and only that one."""
    from scripts.policy_diff.releases import released

    failing = ('package policy\nimport rego.v1\ndefault allow := false\nallow if data["resource-path"][1] == "ngc-api-key"\n'
               'allow if {\n\tdata["resource-path"][1] == "model-decryption"\n\tupper(1) == "1"\n}\n')
    plan = dataclasses.replace(scratch.base, resource_policy=failing)
    matrix = [(vm, 0) for vm in plan.pod_vms]
    assert released(plan, matrix, dict(plan.resources)) == {Release("", vm.workload, "ngc-api-key", 0) for vm in plan.pod_vms}
