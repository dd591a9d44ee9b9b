"""Audit mode: a trusted-config choice the plan notes, and the policy pack refuses on production."""

from __future__ import annotations

from typing import Any

from policies.agent_policy_mode import AGENT_POLICY_ENFORCED, INITDATA_ANNOTATION, production_reason
from pulumi_policy import PolicyResource, StackValidationArgs
from pulumi_policy.proxy import unknown_checking_proxy
from scripts.offline.policy import evaluate
from tests.agent_requests import IMAGE
from tests.conftest import Runner
from tests.test_policy_pack import CLOUD_PROVIDER, options, urn

from components.initdata import AgentPolicyArgs, InitdataArgs, render_initdata

INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def inference_service(mode: str) -> dict[str, Any]:
    initdata = render_initdata(InitdataArgs("https://kbs.example.com", PEM, AgentPolicyArgs(IMAGE, mode=mode))).annotation
    return {"metadata": {"name": "llama"}, "spec": {"predictor": {"annotations": {INITDATA_ANNOTATION: initdata}}}}


def violations(resources: list[tuple[str, dict[str, Any]]], stack: str = "dev-cloud", tags: dict[str, str] | None = None) -> list[str]:
    found: list[str] = []
    policy_resources = [PolicyResource(t, unknown_checking_proxy(p), urn(stack, t, f"r{i}"), f"r{i}", options(), CLOUD_PROVIDER, None, [], {})
                        for i, (t, p) in enumerate(resources)]
    AGENT_POLICY_ENFORCED.validate(StackValidationArgs(policy_resources, {}, tags or {}), lambda message, _urn=None: found.append(message))
    return found


def test_audit_is_refused_on_a_stack_named_production():
    (message,) = violations([(INFERENCE_SERVICE, inference_service("audit"))], stack="prod-cloud")
    assert message.startswith("spec.predictor runs an agent policy in audit mode") and "stack prod-cloud" in message
    assert violations([(INFERENCE_SERVICE, inference_service("enforce"))], stack="prod-cloud") == []


def test_audit_is_allowed_elsewhere():
    assert violations([(INFERENCE_SERVICE, inference_service("audit"))], stack="dev-cloud") == []


def test_a_resource_tagged_with_another_environment_is_not_production():
    staging = ("azure-native:redhatopenshift:OpenShiftCluster", {"tags": {"environment": "staging"}})
    assert violations([(INFERENCE_SERVICE, inference_service("audit")), staging]) == []


def test_an_annotation_that_holds_no_readable_initdata_is_no_audit_policy():
    unreadable = {"spec": {"predictor": {"annotations": {INITDATA_ANNOTATION: "not gzip+base64 initdata"}}}}
    assert violations([(INFERENCE_SERVICE, unreadable)], stack="prod-cloud") == []


def test_a_stack_tagged_or_configured_as_production_is_production():
    audit = (INFERENCE_SERVICE, inference_service("audit"))
    assert len(violations([audit], tags={"environment": "production"})) == 1
    tagged = ("azure-native:redhatopenshift:OpenShiftCluster", {"tags": {"environment": "prod"}})
    assert len(violations([audit, tagged])) == 1
    args = StackValidationArgs([], {}, {"environment": "staging"})
    assert production_reason(args) is None


def test_the_plan_notes_audit_and_the_pack_refuses_it_on_the_prod_example():
    """End to end: the prod example's trusted stack in audit mode notes it (no warning); its cloud stack, carrying
    that initdata in each InferenceService, is refused by the pack."""
    runner = Runner()
    trusted = runner.example("prod-trusted", set={"agentPolicy.mode": "audit"})
    assert [n for n in trusted.notes if n.startswith("agentPolicy.mode is audit")]
    assert not [w for w in trusted.warnings if "audit" in w]
    cloud = runner.example("prod-cloud", stack_outputs={"prod-trusted": trusted.stack_outputs})
    found = evaluate(cloud, [AGENT_POLICY_ENFORCED])
    assert {v.urn.rsplit("::", 1)[-1] for v in found} == {"model-llama-3-1-8b-inference-service", "model-llama-ft-inference-service"}
    assert all(v.level == "mandatory" for v in found)
