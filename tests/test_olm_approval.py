"""The InstallPlan approval that holds an operator pin, against recorded OLM API objects (tests/fixtures/olm)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from components.olm import hold_pin
from components.olm_approval import Decision, approval_step, choose_install_plan, installed_csv

OLM = Path(__file__).parent / "fixtures" / "olm"
RHODS, RHODS_CSV = "rhods-operator", "rhods-operator.3.4.3"
OSC, OSC_CSV = "sandboxed-containers-operator", "sandboxed-containers-operator.v1.12.1"


def recorded(name: str) -> Any:
    return json.loads((OLM / name).read_text())


def plans(name: str) -> list[dict[str, Any]]:
    return recorded(name)["items"]


@pytest.mark.parametrize("name", sorted(p.name for p in OLM.glob("*.json")))
def test_recorded_objects_are_valid_olm_objects(name, crd_validator):
    body = recorded(name)
    for item in body.get("items", [body]):
        assert crd_validator(item) == [], name


def test_a_fresh_install_approves_the_plan_that_lists_the_pinned_csv():
    assert choose_install_plan(plans("first-install.json"), OSC, OSC_CSV) == Decision("approve", "install-7xk2p", f"InstallPlan install-7xk2p installs {OSC_CSV}")


def test_a_plan_bundling_two_subscriptions_is_approved_for_the_pinned_csv_it_contains():
    decision = choose_install_plan(plans("bundled-subscriptions.json"), RHODS, RHODS_CSV)
    assert (decision.action, decision.plan) == ("approve", "install-q9w4m")
    # The same plan is chosen by its CSV list, whichever of the two Subscriptions asks.
    assert choose_install_plan(plans("bundled-subscriptions.json"), "authorino-operator", "authorino-operator.v1.2.1").plan == "install-q9w4m"


def test_a_plan_offering_a_newer_csv_is_never_approved():
    recorded_plans = plans("newer-offered.json")
    decision = choose_install_plan(recorded_plans, RHODS, RHODS_CSV)
    assert (decision.action, decision.plan) == ("approved", "install-b8r5t")
    step = approval_step(recorded_plans, recorded("csv-succeeded.json"), RHODS, RHODS_CSV)
    assert (step.action, step.plan) == ("done", "install-b8r5t")


def test_an_upgrade_is_a_change_of_the_pin_to_the_csv_olm_offers():
    decision = choose_install_plan(plans("newer-offered.json"), RHODS, "rhods-operator.3.4.4")
    assert (decision.action, decision.plan) == ("approve", "install-z3n6c")


def test_a_pin_olm_does_not_offer_is_refused_with_what_it_offers():
    step = approval_step(plans("only-newer.json"), None, RHODS, RHODS_CSV)
    assert step.action == "fail" and step.plan is None
    assert step.reason.startswith(f"OLM offers rhods-operator.3.4.4, not the pinned {RHODS_CSV}: pin the version it offers")
    # Skipping a version: OLM offers the next one only.
    assert approval_step(plans("only-newer.json"), None, RHODS, "rhods-operator.3.4.5").action == "fail"


def test_a_plan_that_would_also_change_the_pinned_package_is_not_approved():
    both = copy.deepcopy(plans("bundled-subscriptions.json"))
    both[0]["spec"]["clusterServiceVersionNames"].append("rhods-operator.3.4.4")
    assert choose_install_plan(both, RHODS, RHODS_CSV).action == "refuse"


def test_a_succeeded_pin_is_done_even_when_its_plan_was_garbage_collected():
    step = approval_step(plans("only-newer.json"), recorded("csv-succeeded.json"), RHODS, RHODS_CSV)
    assert (step.action, step.plan) == ("done", None)


def test_no_plan_yet_means_wait():
    step = approval_step([], None, OSC, OSC_CSV)
    assert step.action == "wait" and "no InstallPlan lists" in step.reason


def test_a_failed_csv_stops_with_its_reason():
    step = approval_step(plans("newer-offered.json"), recorded("csv-failed.json"), RHODS, RHODS_CSV)
    assert step.action == "fail" and step.reason == f"{RHODS_CSV} phase Failed (InstallCheckFailed: install timeout)"


class FakeOlm:
    """The cluster as the approval sees it: recorded plans, a CSV that installs once its plan is approved."""

    def __init__(self, install_plans: list[dict[str, Any]], csv_name: str):
        self.plans = copy.deepcopy(install_plans)
        self.csv_name = csv_name
        self.approved: list[str] = []
        self.polls = 0

    def install_plans(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.plans)

    def cluster_service_version(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.polls += 1
        holding = [p for p in self.plans if p["spec"]["approved"] and name in p["spec"]["clusterServiceVersionNames"]]
        if name != self.csv_name or not holding:
            return None
        return recorded("csv-succeeded.json") if self.polls > 2 else recorded("csv-installing.json")

    def approve(self, namespace: str, name: str) -> None:
        self.approved.append(name)
        next(p for p in self.plans if p["metadata"]["name"] == name)["spec"]["approved"] = True


def test_hold_pin_approves_exactly_the_pinned_plan_once_then_waits_for_the_csv():
    olm = FakeOlm(plans("newer-offered.json")[1:] + plans("bundled-subscriptions.json"), RHODS_CSV)
    sleeps: list[int] = []
    assert hold_pin(olm, "redhat-ods-operator", RHODS, RHODS_CSV, 600, sleep=sleeps.append) == "install-q9w4m"
    assert olm.approved == ["install-q9w4m"]
    assert not olm.plans[0]["spec"]["approved"], "the plan offering rhods-operator.3.4.4 stays unapproved"
    assert len(sleeps) >= 2


def test_hold_pin_stops_on_a_pin_olm_does_not_offer():
    olm = FakeOlm(plans("only-newer.json"), RHODS_CSV)
    with pytest.raises(RuntimeError, match="OLM offers rhods-operator.3.4.4, not the pinned rhods-operator.3.4.3"):
        hold_pin(olm, "redhat-ods-operator", RHODS, RHODS_CSV, 600, sleep=lambda _: None)
    assert olm.approved == []


def test_hold_pin_times_out_with_the_last_reason():
    with pytest.raises(RuntimeError, match=r"not installed after 0 s: no InstallPlan lists"):
        hold_pin(FakeOlm([], OSC_CSV), "ns", OSC, OSC_CSV, 0, sleep=lambda _: None)


# --- refresh: which CSV the namespace really runs ------------------------------------------------


def csv_named(name: str, phase: str = "Succeeded", copied_from: str | None = None) -> dict[str, Any]:
    csv = recorded("csv-succeeded.json")
    csv["metadata"]["name"] = name
    csv["status"]["phase"] = phase
    if copied_from:
        csv["metadata"].setdefault("labels", {})["olm.copiedFrom"] = copied_from
    return csv


@pytest.mark.parametrize(
    "csvs, expected",
    [
        ([csv_named(RHODS_CSV)], RHODS_CSV),
        ([csv_named("rhods-operator.3.4.4")], "rhods-operator.3.4.4"),
        ([csv_named(RHODS_CSV, "Replacing"), csv_named("rhods-operator.3.4.4")], "rhods-operator.3.4.4"),
        ([csv_named("rhods-operator.3.4.10"), csv_named("rhods-operator.3.4.9")], "rhods-operator.3.4.10"),
        ([csv_named(RHODS_CSV, "Failed")], ""),
        ([csv_named("rhods-operator.3.4.4", copied_from="other-namespace")], ""),
        ([csv_named(OSC_CSV)], ""),
        ([], ""),
    ],
    ids=["pin-running", "moved", "moved-pin-replacing", "newest-by-version", "pin-failed", "copied-csv", "other-package", "none"],
)
def test_installed_csv_is_what_the_namespace_runs(csvs, expected):
    assert installed_csv(csvs, RHODS, RHODS_CSV) == expected


class FakeCsvApi:
    def __init__(self, csvs: list[dict[str, Any]]):
        self.csvs = csvs

    def cluster_service_versions(self, namespace: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.csvs)


def test_a_refresh_sees_a_csv_that_moved_and_the_next_up_shows_it(monkeypatch):
    from components import olm

    provider = olm._InstallPlanApprover()
    state = {"namespace": "redhat-ods-operator", "package": RHODS, "csv": RHODS_CSV, "installPlan": "install-q9w4m",
             "kubeconfig": "apiVersion: v1", "timeoutSeconds": 1800}
    inputs = {k: v for k, v in state.items() if k != "installPlan"}
    monkeypatch.setattr(olm, "_OlmApi", lambda kubeconfig: FakeCsvApi([csv_named(RHODS_CSV)]))
    read = provider.read("redhat-ods-operator/rhods-operator", state)
    assert read.outs == state and not provider.diff(read.id, read.outs, inputs).changes
    monkeypatch.setattr(olm, "_OlmApi", lambda kubeconfig: FakeCsvApi([csv_named("rhods-operator.3.4.4")]))
    read = provider.read("redhat-ods-operator/rhods-operator", state)
    assert read.outs["csv"] == "rhods-operator.3.4.4"
    diff = provider.diff(read.id, read.outs, inputs)
    assert diff.changes and not diff.replaces, "an update holds the pin again (and fails with OLM's reason if it cannot)"
