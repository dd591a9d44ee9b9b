"""The CrossGuard pack (policies/): each policy on hand-built args, then over the real plans of `dev` and
`prod` (all pass) and over mutated plans (each policy fires on its violation).

Plan-level tests iterate over whatever the stacks register. Where a stack does not yet register a
policy's target, the contract-shaped resource is added to the real plan (bound to the stack's real
provider) so the policy still runs over a plan; `test_policy_targets_exist_in_plan` then insists that
the real stacks provide every target once they manage Kubernetes objects or Azure resources.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import re
import runpy
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policies import rules
from policies.agent_policy_mode import INITDATA_ANNOTATION as INITDATA
from scripts.offline import PROJECT, Registered, StackRun
from scripts.offline.policy import Violation, evaluate
from stacks.config import base as config_base
from tests.conftest import plan_once

ROOT = Path(__file__).resolve().parents[1]
POLICIES = {p.name: p for p in rules.POLICIES}
NCC = "Standard_NCC40ads_H100_v5"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
ROUTE = "kubernetes:route.openshift.io/v1:Route"
SUBSCRIPTION = "kubernetes:operators.coreos.com/v1alpha1:Subscription"


# --- Contract-shaped resources (what the stacks register, per the contracts the policies inspect) ---


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


SEALED_HEADER = {"alg": "ES256", "kid": "kbs:///default/sealed-secret-key/public-jwk"}


def sealed(uri: str = "kbs:///default/ngc/api-key", provider: str = "kbs", signed: bool = True,
           header: dict[str, Any] = SEALED_HEADER, signature: bytes = bytes(range(64))) -> str:
    """A sealed secret shaped as CDH parses it; the policy checks its form, not the signature itself."""
    document = {"version": "0.1.0", "type": "vault", "name": uri, "provider": provider, "provider_settings": {}, "annotations": {}}
    payload = _b64url(json.dumps(document).encode())
    if not signed:
        return f"sealed.fakejwsheader.{payload}.fakesignature"
    return f"sealed.{_b64url(json.dumps(header).encode())}.{payload}.{_b64url(signature)}"


def peer_pods_cm(**data: str) -> dict[str, Any]:
    values = {"CLOUD_PROVIDER": "azure", "AZURE_INSTANCE_SIZES": f"{NCC},Standard_DC4as_v5", "AZURE_INSTANCE_SIZE": "Standard_DC4as_v5", "DISABLECVM": "false"}
    values.update(data)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "peer-pods-cm", "namespace": "openshift-sandboxed-containers-operator"}, "data": values}


def inference_service(machine_type: str | None = NCC, runtime: str | None = "kata-remote", gpus: int = 1, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "model": {
            "modelFormat": {"name": "nim"},
            "resources": {"limits": {rules.GPU_RESOURCE: str(gpus)}} if gpus else {},
            "env": env or [{"name": "NGC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "ngc-api-key", "key": "NGC_API_KEY"}}}],
        }
    }
    if runtime:
        predictor["runtimeClassName"] = runtime
    annotations = {rules.MACHINE_TYPE_ANNOTATION: machine_type} if machine_type else {}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "llm", "annotations": annotations}, "spec": {"predictor": predictor}}


def kbs_secret(value: str | None = None, labelled: bool = True, key: str = "NGC_API_KEY") -> dict[str, Any]:
    labels = {rules.KBS_RESOURCE_LABEL: "true"} if labelled else {}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ngc-api-key", "labels": labels}, "stringData": {key: value or sealed()}}


KBS_CONFIG = """\
[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = false
private_key = "/etc/https-key/privateKey"
certificate = "/etc/https-cert/certificate"

[admin]
authorization_mode = "DenyAll"

[attestation_token]
insecure_header_jwk = false
trusted_certs_paths = ["/etc/attestation-cert/token.crt"]
"""

# openshift/trustee-operator config/templates/kbs-config-permissive.toml (head): the profile the pack must refuse.
PERMISSIVE_KBS_CONFIG = """\
[http_server]
sockets = ["0.0.0.0:8080"]
insecure_http = true
worker_count = 4

[admin]
authorization_mode = "DenyAll"

[attestation_token]
insecure_header_jwk = true
"""


def kbs_configmap(toml: str = KBS_CONFIG) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kbs-config", "namespace": "trustee-operator-system"}, "data": {rules.KBS_CONFIG_KEY: toml}}


def kbs_route(termination: str = "passthrough", **tls: str) -> dict[str, Any]:
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": "kbs", "namespace": "trustee-operator-system"},
        "spec": {"host": "kbs.example.com", "to": {"kind": "Service", "name": rules.KBS_SERVICE}, "tls": {"termination": termination, **tls}},
    }


def aro_cluster(visibility: str = "Private") -> dict[str, Any]:
    return {"resourceName": "aro", "apiserverProfile": {"visibility": visibility}, "ingressProfiles": [{"name": "default", "visibility": "Public"}]}


def subscription(approval: str = "Manual", csv: str | None = "trustee-operator.v1.2.1") -> dict[str, Any]:
    spec = {"name": "trustee-operator", "channel": "stable", "installPlanApproval": approval, **({"startingCSV": csv} if csv else {})}
    return {"apiVersion": "operators.coreos.com/v1alpha1", "kind": "Subscription", "metadata": {"name": "trustee-operator"}, "spec": spec}


# --- Hand-built validation args ----------------------------------------------------------------


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{type_}::{name}"


def options(protect: bool = False) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def provider(name: str, cluster: str | None = None, package: str = "kubernetes", stack: str = "dev-cloud") -> PolicyProviderResource:
    type_ = f"pulumi:providers:{package}"
    props = {"clusterIdentifier": cluster} if cluster else {}
    return PolicyProviderResource(type_, unknown_checking_proxy(props), urn(stack, type_, name), name)


CLOUD_PROVIDER = provider("cloud-cluster", "dev-cloud")
TRUSTED_PROVIDER = provider("trusted-cluster", "dev-trusted", stack="dev-trusted")


def check(policy: str, type_: str, props: dict[str, Any], *, stack: str = "dev-cloud", name: str = "r", protect: bool = False, prov: PolicyProviderResource | None = None, config: dict[str, Any] | None = None) -> list[str]:
    """Messages `policy` reports for one resource, called exactly as the analyzer calls it."""
    messages: list[str] = []
    default_provider = TRUSTED_PROVIDER if stack.endswith("-trusted") else CLOUD_PROVIDER
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), urn(stack, type_, name), name, options(protect), prov or default_provider, config or {})
    POLICIES[policy].validate(args, lambda message, _urn=None: messages.append(message))
    return messages


def check_stack(policy: str, resources: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    policy_resources = [PolicyResource(t, unknown_checking_proxy(p), urn("dev-cloud", t, f"r{i}"), f"r{i}", options(), CLOUD_PROVIDER, None, [], {}) for i, (t, p) in enumerate(resources)]
    POLICIES[policy].validate(StackValidationArgs(policy_resources, {}), lambda message, u=None: found.append((message, u)))
    return found


def assert_messages(found: list[str], expected: list[str]) -> None:
    """One message per expected part, in order, each containing its part."""
    assert len(found) == len(expected), found
    for message, part in zip(found, expected, strict=True):
        assert part in message


# --- The pack itself --------------------------------------------------------------------------

MANDATORY = {
    "peer-pods-confidential-vms",
    "confidential-gpu-workloads",
    "pod-vm-sizes-listed",
    "kbs-secrets-sealed",
    "kbs-config-hardened",
    "kbs-route-passthrough",
    "critical-resources-protected",
    "cluster-trust-boundary",
    "agent-policy-enforced-in-production",
    "confidential-model-tls-in-tee",
}
ADVISORY = {"aro-api-server-private", "operator-upgrades-reviewed", "inference-in-confidential-vm", "snp-launch-measurement-pinned"}


def test_pack_main_builds_one_pack_of_every_policy(monkeypatch):
    built: list[dict[str, Any]] = []
    monkeypatch.setattr("pulumi_policy.PolicyPack", lambda **kwargs: built.append(kwargs))
    monkeypatch.syspath_prepend(str(ROOT / "policies"))
    monkeypatch.delitem(sys.modules, "rules", raising=False)
    runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="__main__")
    assert len(built) == 1
    assert built[0]["name"] == "confidential-ai-guardrails"
    assert [p.name for p in built[0]["policies"]] == [p.name for p in rules.POLICIES]


def test_policies_have_explicit_levels_and_descriptions():
    assert len(POLICIES) == len(rules.POLICIES), "policy names must be unique"
    assert {n for n, p in POLICIES.items() if p.enforcement_level == EnforcementLevel.MANDATORY} == MANDATORY
    assert {n for n, p in POLICIES.items() if p.enforcement_level == EnforcementLevel.ADVISORY} == ADVISORY
    for name, policy in POLICIES.items():
        assert re.fullmatch(r"[a-z0-9-]+", name) and policy.description.strip()


def test_pack_project_files_pin_the_program_versions():
    pack = yaml.safe_load((ROOT / "policies" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["name"] == "python"
    assert re.fullmatch(r"\d+\.\d+\.\d+", pack["version"]), "Python packs take their version from PulumiPolicy.yaml"
    pins = {line.split("==")[0]: line for line in (ROOT / "policies" / "requirements.txt").read_text().splitlines() if "==" in line}
    repo = (ROOT / "requirements.txt").read_text() + (ROOT / "requirements-dev.txt").read_text()
    assert set(pins) == {"pulumi", "pulumi-policy"}
    for line in pins.values():
        assert re.search(rf"^{re.escape(line)}$", repo, re.M), f"{line} differs from the program's pin"


@pytest.mark.parametrize(
    "size",
    [NCC, "Standard_DC4as_v5", "Standard_EC16ads_v5", "Standard_DC4es_v5", "Standard_D4s_v5", "Standard_NC40ads_H100_v5", "Standard_DC2s_v3", ""],
)
def test_pack_and_config_agree_on_confidential_sizes(size):
    """The pack restates the size rule on purpose (defence in depth); the two must not drift apart."""
    assert (rules.confidential_size_problem(size) is None) == (config_base.confidential_size_problem(size) is None)


# --- Each policy on hand-built args -----------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        ({}, []),
        ({"DISABLECVM": "False"}, []),
        ({"DISABLECVM": "true"}, ["DISABLECVM='true'"]),
        ({"DISABLECVM": "1"}, ["DISABLECVM='1'"]),
        ({"DISABLECVM": "no"}, ["DISABLECVM='no'"]),
        ({"AZURE_INSTANCE_SIZES": f"{NCC},Standard_D4s_v5", "AZURE_INSTANCE_SIZE": NCC}, ["'Standard_D4s_v5' is not an AMD SEV-SNP confidential VM size"]),
        ({"AZURE_INSTANCE_SIZES": f"{NCC},Standard_DC4es_v5", "AZURE_INSTANCE_SIZE": NCC}, ["'Standard_DC4es_v5' is not"]),
        ({"AZURE_INSTANCE_SIZES": ""}, ["no AZURE_INSTANCE_SIZES"]),
        ({"AZURE_INSTANCE_SIZE": "Standard_D2s_v5"}, ["AZURE_INSTANCE_SIZE: 'Standard_D2s_v5' is not"]),
        ({"AZURE_INSTANCE_SIZE": "Standard_DC8as_v5"}, ["'Standard_DC8as_v5' is not in AZURE_INSTANCE_SIZES"]),
    ],
)
def test_peer_pods_keep_confidential_vms(data, expected):
    found = check("peer-pods-confidential-vms", CONFIGMAP, peer_pods_cm(**data))
    assert_messages(found, expected)


def test_peer_pods_cm_without_disablecvm_keeps_confidential_vms():
    """CAA creates confidential VMs unless DISABLECVM turns them off: a ConfigMap without the key passes."""
    props = peer_pods_cm()
    del props["data"]["DISABLECVM"]
    assert check("peer-pods-confidential-vms", CONFIGMAP, props) == []


def test_peer_pods_policy_looks_only_at_peer_pods_cm():
    other = peer_pods_cm(DISABLECVM="true")
    other["metadata"]["name"] = "something-else"
    assert check("peer-pods-confidential-vms", CONFIGMAP, other) == []


@pytest.mark.parametrize(
    "props, expected",
    [
        (inference_service(), []),
        (inference_service(gpus=0, machine_type="Standard_DC4as_v5"), []),
        (inference_service(gpus=0, machine_type=None, runtime=None), []),
        (inference_service(runtime=None), ["runtimeClassName is None"]),
        (inference_service(runtime="kata"), ["runtimeClassName is 'kata'"]),
        (inference_service(machine_type=None), ["names no pod VM size"]),
        (inference_service(machine_type="Standard_DC4as_v5"), ["'Standard_DC4as_v5', which is not an allowed confidential GPU size"]),
        (inference_service(machine_type="Standard_NC40ads_H100_v5"), ["is not an AMD SEV-SNP", "not an allowed confidential GPU size"]),
        (inference_service(gpus=0, machine_type="Standard_D4s_v5"), ["'Standard_D4s_v5' is not an AMD SEV-SNP"]),
    ],
)
def test_gpu_workloads_run_on_allowed_confidential_gpu_sizes(props, expected):
    found = check("confidential-gpu-workloads", rules.INFERENCE_SERVICE, props)
    assert_messages(found, expected)


def test_component_annotation_overrides_the_inference_service_annotation():
    props = inference_service(machine_type="Standard_DC4as_v5")
    props["spec"]["predictor"]["annotations"] = {rules.MACHINE_TYPE_ANNOTATION: NCC}
    assert check("confidential-gpu-workloads", rules.INFERENCE_SERVICE, props) == []


@pytest.mark.parametrize("type_", ["kubernetes:core/v1:Pod", "kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:CronJob"])
def test_gpu_policy_reads_every_pod_template(type_):
    spec = {"runtimeClassName": "kata-remote", "containers": [{"name": "nim", "resources": {"limits": {rules.GPU_RESOURCE: 1}}}]}
    template = {"metadata": {"annotations": {rules.MACHINE_TYPE_ANNOTATION: "Standard_DC4as_v5"}}, "spec": spec}
    props = {
        "kubernetes:core/v1:Pod": template,
        "kubernetes:apps/v1:Deployment": {"spec": {"template": template}},
        "kubernetes:batch/v1:CronJob": {"spec": {"jobTemplate": {"spec": {"template": template}}}},
    }[type_]
    [message] = check("confidential-gpu-workloads", type_, props)
    assert "not an allowed confidential GPU size" in message
    assert check("confidential-gpu-workloads", type_, props, config={"gpuMachineTypes": ["Standard_DC4as_v5"]}) == []


def test_pod_vm_sizes_must_be_listed_in_peer_pods_cm():
    listed = check_stack("pod-vm-sizes-listed", [(CONFIGMAP, peer_pods_cm()), (rules.INFERENCE_SERVICE, inference_service())])
    assert listed == []
    [(message, urn_)] = check_stack("pod-vm-sizes-listed", [(CONFIGMAP, peer_pods_cm(AZURE_INSTANCE_SIZES="Standard_DC4as_v5")), (rules.INFERENCE_SERVICE, inference_service())])
    assert f"asks for pod VM size {NCC}" in message and urn_ == urn("dev-cloud", rules.INFERENCE_SERVICE, "r1")
    [(message, _)] = check_stack("pod-vm-sizes-listed", [(rules.INFERENCE_SERVICE, inference_service())])
    assert "has no peer-pods-cm" in message
    assert check_stack("pod-vm-sizes-listed", [(rules.INFERENCE_SERVICE, inference_service(runtime=None, gpus=0))]) == []


@pytest.mark.parametrize(
    "props, stack, expected",
    [
        (kbs_secret(), "dev-cloud", []),
        (kbs_secret("nvapi-plaintext"), "dev-trusted", []),
        (kbs_secret("nvapi-plaintext"), "dev-cloud", ["stringData.NGC_API_KEY is not a sealed secret"]),
        (kbs_secret("nvapi-plaintext", labelled=False), "dev-cloud", ["the toolkit keeps that key in KBS"]),
        (kbs_secret("nvapi-plaintext", labelled=False, key="token"), "dev-cloud", []),
        (kbs_secret("plain", key="token"), "dev-cloud", ["labelled confidential-ai/kbs-resource"]),
        (kbs_secret(sealed(provider="vault")), "dev-cloud", ["does not point into KBS"]),
        (kbs_secret("sealed.h.!!!.s"), "dev-cloud", ["is not a sealed secret"]),
        (kbs_secret("sealed.h.bm90LWpzb24.s"), "dev-cloud", ["payload is not base64url JSON"]),
        (kbs_secret(sealed(signed=False)), "dev-cloud", ["is an unsigned sealed secret"]),
    ],
)
def test_kbs_managed_values_reach_the_cloud_only_sealed(props, stack, expected):
    found = check("kbs-secrets-sealed", SECRET, props, stack=stack)
    assert_messages(found, expected)


def test_a_kbs_sealed_secret_naming_no_kbs_resource_does_not_point_into_kbs():
    value = sealed(uri="https://kbs.example.com/default/ngc/api-key")
    assert_messages(check("kbs-secrets-sealed", SECRET, kbs_secret(value)), ["does not point into KBS"])


def test_a_sealed_secret_whose_payload_is_not_an_object_does_not_point_into_kbs():
    payload = _b64url(json.dumps(["kbs:///default/ngc/api-key"]).encode())
    value = f"sealed.{_b64url(json.dumps(SEALED_HEADER).encode())}.{payload}.{_b64url(bytes(range(64)))}"
    assert_messages(check("kbs-secrets-sealed", SECRET, kbs_secret(value)), ["does not point into KBS"])


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(sealed(header={"alg": "ES256"}), id="no-kid"),
        pytest.param(sealed(header={"alg": "ES256", "kid": ""}), id="empty-kid"),
        pytest.param(sealed(header={**SEALED_HEADER, "alg": "none"}), id="alg-none"),
        pytest.param(sealed(signature=bytes(range(63))), id="short-signature"),
        pytest.param(sealed(signature=b""), id="no-signature"),
    ],
)
def test_a_sealed_secret_missing_one_signing_part_is_unsigned(value):
    """CDH (guest-components v0.18.0+) verifies ES256 under the `kid` key with a raw 64-byte signature:
    a pointer lacking any one of them is refused in the pod VM, so the policy refuses it first."""
    found = check("kbs-secrets-sealed", SECRET, kbs_secret(value))
    assert_messages(found, ["is an unsigned sealed secret"])


def test_sealed_policy_decodes_base64_data_and_reads_container_env():
    encoded = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"NGC_API_KEY": base64.b64encode(sealed().encode()).decode()}}
    assert check("kbs-secrets-sealed", SECRET, encoded) == []
    encoded["data"]["NGC_API_KEY"] = base64.b64encode(b"nvapi-plaintext").decode()
    assert len(check("kbs-secrets-sealed", SECRET, encoded)) == 1
    literal = inference_service(env=[{"name": "NGC_API_KEY", "value": "nvapi-plaintext"}])
    [message] = check("kbs-secrets-sealed", rules.INFERENCE_SERVICE, literal)
    assert "env NGC_API_KEY is not a sealed secret" in message
    assert check("kbs-secrets-sealed", rules.INFERENCE_SERVICE, inference_service(env=[{"name": "NGC_API_KEY", "value": sealed()}])) == []
    assert check("kbs-secrets-sealed", SECRET, kbs_secret("x", labelled=False, key="MODEL_KEY"), config={"kbsManagedKeys": ["MODEL_KEY"]})


@pytest.mark.parametrize(
    "toml, expected",
    [
        (KBS_CONFIG, []),
        (KBS_CONFIG.replace("insecure_http = false", "insecure_http = true"), ["insecure_http must be false"]),
        (KBS_CONFIG.replace("insecure_http = false\n", ""), ["insecure_http must be false"]),
        (KBS_CONFIG.replace('"DenyAll"', '"InsecureAllowAll"'), ["authorization_mode is 'InsecureAllowAll'"]),
        (KBS_CONFIG.replace('[admin]\nauthorization_mode = "DenyAll"\n', ""), ["authorization_mode is None"]),
        (KBS_CONFIG.replace('authorization_mode = "DenyAll"', 'authorization_mode = "DenyAll"\ninsecure_api = true'), ["authorization_mode is 'DenyAll'"]),
        (KBS_CONFIG.replace("insecure_header_jwk = false", "insecure_header_jwk = true"), ["insecure_header_jwk must be false"]),
        (KBS_CONFIG + "[broken\n", ["is not valid TOML"]),
        (PERMISSIVE_KBS_CONFIG, ["insecure_http must be false", "insecure_header_jwk must be false"]),
    ],
)
def test_kbs_config_is_hardened(toml, expected):
    found = check("kbs-config-hardened", CONFIGMAP, kbs_configmap(toml), stack="dev-trusted")
    assert_messages(found, expected)


@pytest.mark.parametrize(
    "props, stack, expected",
    [
        (kbs_route(), "dev-trusted", []),
        (kbs_route(insecureEdgeTerminationPolicy="None"), "dev-trusted", []),
        (kbs_route("edge"), "dev-trusted", ["tls.termination is 'edge'"]),
        (kbs_route("reencrypt"), "dev-cloud", ["tls.termination is 'reencrypt'"]),
        (kbs_route(insecureEdgeTerminationPolicy="Allow"), "dev-trusted", ["must not be \"Allow\""]),
        ({**kbs_route("edge"), "spec": {"to": {"name": "inference"}, "tls": {"termination": "edge"}}}, "dev-cloud", []),
    ],
)
def test_kbs_route_is_passthrough(props, stack, expected):
    found = check("kbs-route-passthrough", ROUTE, props, stack=stack)
    assert_messages(found, expected)


# --- A confidential model's TLS ends in its pod VM ----------------------------------------------

SERVICE = rules.SERVICE
INGRESS = rules.INGRESS


def model_namespace(confidential: bool = True, name: str = "llm") -> dict[str, Any]:
    labels = {rules.CONFIDENTIAL_MODEL_LABEL: "true"} if confidential else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def model_route(termination: str | None = "passthrough", namespace: str = "llm", **tls: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": "llm-llm.apps.example.com", "to": {"kind": "Service", "name": "llm-predictor"}, "port": {"targetPort": "https"}}
    if termination:
        spec["tls"] = {"termination": termination, **tls}
    return {"apiVersion": "route.openshift.io/v1", "kind": "Route", "metadata": {"name": "llm", "namespace": namespace}, "spec": spec}


def model_service(type_: str = "LoadBalancer", target_port: Any = "https", namespace: str = "llm") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "llm-external", "namespace": namespace},
            "spec": {"type": type_, "selector": {"app": "llm"}, "ports": [{"name": "api", "port": 443, "targetPort": target_port}]}}


def model_ingress() -> dict[str, Any]:
    rule = {"host": "llm.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "llm-predictor", "port": {"number": 80}}}}]}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "llm", "namespace": "llm"}, "spec": {"rules": [rule]}}


def exposed_inference_service(confidential_label: bool = False) -> dict[str, Any]:
    props = inference_service()
    labels = {rules.KSERVE_VISIBILITY_LABEL: "exposed", **({rules.CONFIDENTIAL_MODEL_LABEL: "true"} if confidential_label else {})}
    props["metadata"] = {**props["metadata"], "namespace": "llm", "labels": labels}
    return props


@pytest.mark.parametrize(
    "exposure, expected",
    [
        ((ROUTE, model_route()), []),
        ((ROUTE, model_route(insecureEdgeTerminationPolicy="Redirect")), []),
        ((ROUTE, model_route("edge")), ["Route llm tls.termination is 'edge': TLS would end at the cloud's router"]),
        ((ROUTE, model_route("reencrypt")), ["tls.termination is 'reencrypt'"]),
        ((ROUTE, model_route(None)), ["Route llm has no TLS"]),
        ((ROUTE, model_route(insecureEdgeTerminationPolicy="Allow")), ["allows plain HTTP"]),
        ((SERVICE, model_service()), []),
        ((SERVICE, model_service(target_port=8000)), ["Service llm-external of type LoadBalancer forwards port api to something other than the model's TLS port 'https'"]),
        ((SERVICE, model_service(target_port="http")), ["a plain-HTTP port outside the cluster"]),
        ((SERVICE, model_service("NodePort", target_port="http")), ["of type NodePort"]),
        ((SERVICE, model_service("ClusterIP", target_port="http")), []),
        ((INGRESS, model_ingress()), ["Ingress llm: an ingress controller terminates TLS outside the pod VM"]),
        ((rules.INFERENCE_SERVICE, exposed_inference_service()), ["labelled networking.kserve.io/visibility=exposed: OpenShift AI would create an edge Route"]),
    ],
    ids=["passthrough", "passthrough-redirect", "edge", "reencrypt", "plain-http-route", "allow-http", "lb-to-tls", "lb-to-8000",
         "lb-to-http", "nodeport-to-http", "clusterip", "ingress", "kserve-exposed"],
)
def test_a_confidential_model_is_exposed_only_with_tls_ending_in_its_pod_vm(exposure, expected):
    found = check_stack("confidential-model-tls-in-tee", [(rules.NAMESPACE, model_namespace()), exposure])
    assert_messages([message for message, _ in found], expected)
    assert all(u == urn("dev-cloud", exposure[0], "r1") and "(namespace llm holds a confidential model)" in m for m, u in found)


def test_a_model_in_a_confidential_pod_vm_is_confidential_without_any_label():
    found = check_stack("confidential-model-tls-in-tee", [(rules.NAMESPACE, model_namespace(confidential=False)), (rules.INFERENCE_SERVICE, exposed_inference_service())])
    assert_messages([m for m, _ in found], ["InferenceService llm is labelled networking.kserve.io/visibility=exposed"])


def test_exposure_rules_apply_only_to_namespaces_holding_a_confidential_model():
    plain_model = inference_service(runtime=None, gpus=0)
    plain_model["metadata"] = {"name": "llm", "namespace": "llm", "labels": {rules.KSERVE_VISIBILITY_LABEL: "exposed"}}
    exposures = [(ROUTE, model_route("edge")), (SERVICE, model_service(target_port=8000)), (INGRESS, model_ingress()), (rules.INFERENCE_SERVICE, plain_model)]
    assert check_stack("confidential-model-tls-in-tee", [(rules.NAMESPACE, model_namespace(confidential=False)), *exposures]) == []
    # An edge Route elsewhere does not matter; the model's own namespace does.
    assert check_stack("confidential-model-tls-in-tee", [(rules.NAMESPACE, model_namespace()), (ROUTE, model_route("edge", namespace="other"))]) == []


def test_a_confidential_label_on_the_inference_service_marks_its_namespace():
    found = check_stack("confidential-model-tls-in-tee", [(rules.INFERENCE_SERVICE, exposed_inference_service(confidential_label=True)), (ROUTE, model_route("edge"))])
    assert_messages([m for m, _ in found], ["InferenceService llm is labelled", "Route llm tls.termination is 'edge'"])


@pytest.mark.parametrize(
    "type_, stack, protect, config, fires",
    [
        (rules.ARO_CLUSTER, "dev-cloud", True, {}, False),
        (rules.ARO_CLUSTER, "dev-cloud", False, {}, True),
        (rules.PRIVATE_KEY, "dev-trusted", False, {}, True),
        (rules.PRIVATE_KEY, "dev-trusted", True, {}, False),
        (rules.PRIVATE_KEY, "dev-cloud", False, {}, False),
        (rules.PRIVATE_KEY, "dev-trusted", False, {"allowUnprotected": ["r"]}, False),
        (rules.PRIVATE_KEY, "dev-trusted", False, {"allowUnprotected": ["other-key"]}, True),
    ],
)
def test_critical_resources_are_protected(type_, stack, protect, config, fires):
    found = check("critical-resources-protected", type_, {}, stack=stack, protect=protect, config=config)
    assert bool(found) == fires, found
    if fires:
        assert "must be protected" in found[0] and "allowUnprotected" in found[0]


@pytest.mark.parametrize(
    "type_, props, stack, prov, expected",
    [
        (CONFIGMAP, {}, "dev-cloud", CLOUD_PROVIDER, None),
        (CONFIGMAP, {}, "dev-trusted", TRUSTED_PROVIDER, None),
        (rules.PRIVATE_KEY, {}, "dev-trusted", provider("tls", package="tls", stack="dev-trusted"), None),
        (CONFIGMAP, {}, "dev-cloud", TRUSTED_PROVIDER, "bound to provider trusted-cluster of the trusted side"),
        (CONFIGMAP, {}, "dev-cloud", provider("k8s", "dev-trusted"), "of the trusted side"),
        (CONFIGMAP, {}, "dev-trusted", provider("cloud-cluster", "dev-cloud"), "of the cloud side"),
        (rules.ARO_CLUSTER, {}, "dev-trusted", provider("azure", package="azure-native"), "of the cloud side"),
        (CONFIGMAP, {}, "dev-cloud", provider("default_4_34_2"), "uses the default provider"),
        (rules.KUBERNETES_PROVIDER, {"clusterIdentifier": "dev-trusted"}, "dev-cloud", None, "declares provider r for the trusted side"),
        (rules.KUBERNETES_PROVIDER, {"clusterIdentifier": "dev-cloud"}, "dev-trusted", None, "declares provider r for the cloud side"),
        (rules.STACK_REFERENCE, {"name": "organization/confidential-ai/dev-cloud"}, "dev-trusted", None, "takes nothing from the cloud side"),
        (rules.STACK_REFERENCE, {"name": "organization/confidential-ai/dev-trusted"}, "dev-cloud", provider("default", package="pulumi"), None),
        # Only a trusted stack's reading of a cloud stack is refused: it may read a trusted stack, a
        # cloud stack may read another cloud stack, and only a StackReference reads a stack.
        (rules.STACK_REFERENCE, {"name": "organization/confidential-ai/shared-trusted"}, "dev-trusted", provider("default", package="pulumi"), None),
        (CONFIGMAP, {"name": "settings-of-dev-cloud"}, "dev-trusted", TRUSTED_PROVIDER, None),
        (rules.STACK_REFERENCE, {"name": "organization/confidential-ai/prod-cloud"}, "dev-cloud", provider("default", package="pulumi"), None),
        (rules.ARO_CLUSTER, {}, "dev-cloud", provider("default_3_29_0", package="azure-native"), "uses the default provider"),
    ],
)
def test_each_stack_manages_only_its_own_cluster(type_, props, stack, prov, expected):
    messages: list[str] = []
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), urn(stack, type_, "r"), "r", options(), prov, {})
    POLICIES["cluster-trust-boundary"].validate(args, lambda message, _urn=None: messages.append(message))
    assert len(messages) == (0 if expected is None else 1), messages
    if expected:
        assert expected in messages[0]


def test_kubernetes_object_without_explicit_provider_is_refused():
    messages: list[str] = []
    args = ResourceValidationArgs(CONFIGMAP, unknown_checking_proxy({}), urn("dev-cloud", CONFIGMAP, "cm"), "cm", options(), None, {})
    POLICIES["cluster-trust-boundary"].validate(args, lambda message, _urn=None: messages.append(message))
    assert messages == ["cm has no explicit provider: every Kubernetes object names its cluster's provider"]


@pytest.mark.parametrize(
    "policy, type_, good, bad",
    [
        ("aro-api-server-private", rules.ARO_CLUSTER, aro_cluster(), aro_cluster("Public")),
        ("operator-upgrades-reviewed", SUBSCRIPTION, subscription(), subscription("Automatic", csv=None)),
        ("inference-in-confidential-vm", rules.INFERENCE_SERVICE, inference_service(), inference_service(gpus=0, runtime=None)),
    ],
)
def test_advisory_policies(policy, type_, good, bad):
    assert check(policy, type_, good) == []
    assert check(policy, type_, bad)


@pytest.mark.parametrize(
    "props, expected",
    [(subscription("Automatic"), "approves install plans automatically"), (subscription(csv=None), "pins no startingCSV")],
)
def test_each_unreviewed_operator_upgrade_is_its_own_advisory(props, expected):
    assert_messages(check("operator-upgrades-reviewed", SUBSCRIPTION, props), [expected])


def test_the_aro_api_server_advisory_looks_only_at_aro_clusters():
    assert check("aro-api-server-private", CONFIGMAP, peer_pods_cm()) == []


def test_unknown_values_surface_as_the_analyzer_reports_them():
    """During preview a computed value is unknown; the analyzer turns the policy's UnknownValueError into an advisory note."""
    with pytest.raises(UnknownValueError):
        check("peer-pods-confidential-vms", CONFIGMAP, peer_pods_cm(AZURE_INSTANCE_SIZES="04da6b54-80e4-46f7-96ec-b56ff0331ba9"))
    run = StackRun("dev-cloud", [registered("dev-cloud", CONFIGMAP, "peer-pods-cm", peer_pods_cm(AZURE_INSTANCE_SIZES="[unknown]"))], {}, frozenset())
    [violation] = evaluate(run, [POLICIES["peer-pods-confidential-vms"]])
    assert violation.level == "advisory" and "can't run during preview" in violation.message


# --- Over the real plans ----------------------------------------------------------------------


def registered(stack: str, type_: str, name: str, props: dict[str, Any], provider_urn: str = "", protect: bool = False) -> Registered:
    root = urn(stack, "pulumi:pulumi:Stack", f"{PROJECT}-{stack}")
    return Registered(urn(stack, type_, name), type_, name, True, root, provider_urn, [], protect, props)


def k8s_objects(run: StackRun) -> list[Registered]:
    return [r for r in run.resources if r.custom and r.type.startswith("kubernetes:")]


def workload_targets(run: StackRun) -> list[Registered]:
    return [r for r in run.resources if any(w.gpus and w.runtime_class == rules.KATA_REMOTE for w in rules.workloads(r.type, r.inputs))]


def _named_configmap(name: str) -> Callable[[StackRun], list[Registered]]:
    return lambda run: [r for r in run.of_type(CONFIGMAP) if rules.dig(r.inputs, "metadata", "name") == name]


# Target -> (side, how to find it in a plan): what the policies guard, which each stack must register.
TARGETS: dict[str, tuple[str, Callable[[StackRun], list[Registered]]]] = {
    "peer-pods-cm": ("cloud", _named_configmap("peer-pods-cm")),
    "gpu-workload": ("cloud", workload_targets),
    "kbs-secret": ("cloud", lambda run: [r for r in run.of_type(SECRET) if rules.KBS_RESOURCE_LABEL in (rules.dig(r.inputs, "metadata", "labels") or {})]),
    "aro-cluster": ("cloud", lambda run: run.of_type(rules.ARO_CLUSTER)),
    "kbs-config": ("trusted", lambda run: [r for r in run.of_type(CONFIGMAP) if rules.KBS_CONFIG_KEY in (r.inputs.get("data") or {})]),
    "kbs-route": ("trusted", lambda run: [r for r in run.of_type(ROUTE) if rules.dig(r.inputs, "spec", "to", "name") == rules.KBS_SERVICE]),
    "kbs-keys": ("trusted", lambda run: run.of_type(rules.PRIVATE_KEY)),
    "model-namespace": ("cloud", lambda run: [r for r in run.of_type(rules.NAMESPACE) if any(
        rules.dig(i.inputs, "metadata", "namespace") == rules.dig(r.inputs, "metadata", "name") for i in run.of_type(rules.INFERENCE_SERVICE))]),
    "kbs-reference-values": ("trusted", lambda run: [r for r in run.of_type(CONFIGMAP) if rules.REFERENCE_VALUES_KEY in (r.inputs.get("data") or {})]),
}


def required_targets(env: str, role: str) -> list[str]:
    # prod brings its own cluster: no ARO cluster in its plan.
    return [t for t, (side, _) in TARGETS.items() if side == role and not (t == "aro-cluster" and env != "dev")]


def planned(env: str) -> dict[str, StackRun]:
    """The environment's plan by role: the session's shared plan, a copy per call."""
    return {run.stack.rsplit("-", 1)[1]: run for run in plan_once(env)}


@pytest.fixture(scope="module", params=["dev", "prod"])
def plan(request) -> tuple[str, dict[str, StackRun]]:
    return request.param, planned(request.param)


def mandatory(violations: list[Violation]) -> list[str]:
    return [str(v) for v in violations if v.level == "mandatory" or "can't run" in v.message]


def test_every_policy_passes_the_plan(plan):
    _, runs = plan
    for run in runs.values():
        assert mandatory(evaluate(run, rules.POLICIES)) == [], run.stack


@pytest.mark.parametrize("role", ["trusted", "cloud"])
def test_policy_targets_exist_in_plan(plan, role):
    """Each stack registers what the policies guard, so the pack keeps covering it."""
    env, runs = plan
    run = runs[role]
    missing = [t for t in required_targets(env, role) if not TARGETS[t][1](run)]
    assert missing == [], f"{run.stack} registers no {missing}: the pack's contract (docs/security-model.md) names them"


def _edit(r: Registered, change: Callable[[dict[str, Any]], None]) -> None:
    inputs = copy.deepcopy(r.inputs)
    change(inputs)
    r.raw_inputs = inputs


def _sub(pattern: str, replacement: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        text = inputs["data"][rules.KBS_CONFIG_KEY]
        inputs["data"][rules.KBS_CONFIG_KEY], count = re.subn(pattern, replacement, text)
        assert count, f"kbs-config.toml has no {pattern!r} to mutate"

    return change


def _set_data(**values: str) -> Callable[[dict[str, Any]], None]:
    return lambda inputs: inputs.setdefault("data", {}).update(values)


def _strip_machine_type(inputs: dict[str, Any]) -> None:
    for found in (rules.dig(inputs, "metadata", "annotations"), rules.dig(inputs, "spec", "predictor", "annotations"), rules.dig(inputs, "spec", "template", "metadata", "annotations")):
        if isinstance(found, dict):
            found.pop(rules.MACHINE_TYPE_ANNOTATION, None)


def _plaintext_values(inputs: dict[str, Any]) -> None:
    for field, value in (("stringData", "nvapi-plaintext"), ("data", base64.b64encode(b"nvapi-plaintext").decode())):
        for key in inputs.get(field) or {}:
            inputs[field][key] = value


def _bind_to_other_side(run: StackRun, target: Registered) -> None:
    other = "cloud" if run.stack.endswith("-trusted") else "trusted"
    env = run.stack.rsplit("-", 1)[0]
    intruder = registered(run.stack, rules.KUBERNETES_PROVIDER, f"{other}-cluster-intruder", {"clusterIdentifier": f"{env}-{other}"})
    run.resources.append(intruder)
    target.provider = intruder.urn


def _drop_reference_value(name: str) -> Callable[[dict[str, Any]], None]:
    def change(inputs: dict[str, Any]) -> None:
        records = json.loads(inputs["data"][rules.REFERENCE_VALUES_KEY])
        records.pop(name, None)
        inputs["data"][rules.REFERENCE_VALUES_KEY] = json.dumps(records)

    return change


def _unprotect(run: StackRun, target: Registered) -> None:
    target.protect = False


def _edge_route_to_model(run: StackRun, namespace: Registered) -> None:
    """An edge Route in the model's namespace, bound to the cluster's own provider."""
    route = model_route("edge", namespace=rules.dig(namespace.inputs, "metadata", "name"))
    run.resources.append(registered(run.stack, ROUTE, "model-edge-route", route, provider_urn=namespace.provider))


def _audit_in_production(run: StackRun, workload: Registered) -> None:
    """The workload's initdata with its agent policy in audit mode, on a stack made production (prod by name;
    dev by the `environment: prod` tag its config puts on the cloud resources)."""
    def audit(inputs: dict[str, Any]) -> None:
        annotations = rules.dig(inputs, "spec", "predictor", "annotations")
        document = gzip.decompress(base64.b64decode(annotations[INITDATA])).decode()
        audited = document.replace("default AllowRequestsFailingPolicy := false", "AllowRequestsFailingPolicy := true")
        assert audited != document
        annotations[INITDATA] = base64.b64encode(gzip.compress(audited.encode(), mtime=0)).decode()
    _edit(workload, audit)
    if not run.stack.startswith("prod-"):
        tagged = next(r for r in run.resources if isinstance(r.inputs.get("tags"), dict))
        _edit(tagged, lambda i: i["tags"].update(environment="prod"))


# name -> (side, target, mutation of the target, policy that must fire, on the target's URN?)
MUTATIONS: dict[str, tuple[str, str, Callable[[StackRun, Registered], None], str, bool]] = {
    "disable-cvm": ("cloud", "peer-pods-cm", lambda run, r: _edit(r, _set_data(DISABLECVM="true")), "peer-pods-confidential-vms", True),
    "general-purpose-size-listed": ("cloud", "peer-pods-cm", lambda run, r: _edit(r, lambda i: i["data"].update(AZURE_INSTANCE_SIZES=i["data"]["AZURE_INSTANCE_SIZES"] + ",Standard_D4s_v5")), "peer-pods-confidential-vms", True),
    "gpu-without-machine-type": ("cloud", "gpu-workload", lambda run, r: _edit(r, _strip_machine_type), "confidential-gpu-workloads", True),
    "gpu-size-not-listed": ("cloud", "peer-pods-cm", lambda run, r: _edit(r, _set_data(AZURE_INSTANCE_SIZES="Standard_DC4as_v5", AZURE_INSTANCE_SIZE="Standard_DC4as_v5")), "pod-vm-sizes-listed", False),
    "plaintext-ngc-key": ("cloud", "kbs-secret", lambda run, r: _edit(r, _plaintext_values), "kbs-secrets-sealed", True),
    "kbs-plain-http": ("trusted", "kbs-config", lambda run, r: _edit(r, _sub(r"insecure_http\s*=\s*false", "insecure_http = true")), "kbs-config-hardened", True),
    "kbs-admin-open": ("trusted", "kbs-config", lambda run, r: _edit(r, _sub(r"authorization_mode\s*=\s*\"DenyAll\"", 'authorization_mode = "InsecureAllowAll"')), "kbs-config-hardened", True),
    "kbs-header-jwk": ("trusted", "kbs-config", lambda run, r: _edit(r, _sub(r"insecure_header_jwk\s*=\s*false", "insecure_header_jwk = true")), "kbs-config-hardened", True),
    "kbs-route-edge": ("trusted", "kbs-route", lambda run, r: _edit(r, lambda i: i["spec"]["tls"].update(termination="edge")), "kbs-route-passthrough", True),
    "kbs-key-unprotected": ("trusted", "kbs-keys", _unprotect, "critical-resources-protected", True),
    "aro-unprotected": ("cloud", "aro-cluster", _unprotect, "critical-resources-protected", True),
    "cloud-object-on-trusted-provider": ("cloud", "peer-pods-cm", _bind_to_other_side, "cluster-trust-boundary", True),
    "trusted-object-on-cloud-provider": ("trusted", "kbs-config", _bind_to_other_side, "cluster-trust-boundary", True),
    "confidential-model-edge-route": ("cloud", "model-namespace", _edge_route_to_model, "confidential-model-tls-in-tee", False),
    "measurement-unpinned": ("trusted", "kbs-reference-values", lambda run, r: _edit(r, _drop_reference_value(rules.MEASUREMENT_REFERENCE)), "snp-launch-measurement-pinned", True),
    "agent-policy-audit-in-production": ("cloud", "gpu-workload", _audit_in_production, "agent-policy-enforced-in-production", True),
    "aro-public-api": ("cloud", "aro-cluster", lambda run, r: _edit(r, lambda i: i.setdefault("apiserverProfile", {}).update(visibility="Public")), "aro-api-server-private", True),
}


@pytest.mark.parametrize(
    ("env", "mutation"),
    # prod brings its own cluster: its plan has no ARO cluster to mutate.
    [(env, m) for env in ("dev", "prod") for m in sorted(MUTATIONS) if env == "dev" or MUTATIONS[m][1] != "aro-cluster"],
)
def test_each_policy_fires_on_its_violation_in_the_plan(env, mutation):
    side, target, mutate, policy, on_target = MUTATIONS[mutation]
    run = planned(env)[side]
    victim = TARGETS[target][1](run)[0]
    mutate(run, victim)
    fired = [v for v in evaluate(run, rules.POLICIES) if v.policy == policy]
    assert fired, f"{policy} did not fire on {mutation}"
    assert {v.level for v in fired} == {POLICIES[policy].enforcement_level.value}
    if on_target:
        assert victim.urn in {v.urn for v in fired}


def test_unpinned_launch_measurement_is_one_advisory_for_that_stack():
    """dev pins no SNP launch measurement, prod does (and requires it)."""
    for env, expected in (("dev", 1), ("prod", 0)):
        for run in planned(env).values():
            fired = [v for v in evaluate(run, rules.POLICIES) if v.policy == "snp-launch-measurement-pinned"]
            assert len(fired) == (expected if run.stack.endswith("-trusted") else 0), run.stack
            assert all(v.level == "advisory" and "referenceValues.measurements" in v.message for v in fired)


def test_every_policy_has_a_plan_level_demonstration():
    demonstrated = {policy for _, _, _, policy, _ in MUTATIONS.values()}
    assert demonstrated >= MANDATORY, f"no mutated plan demonstrates {MANDATORY - demonstrated}"


def test_offline_policy_command_exits_1_on_a_mandatory_violation(monkeypatch, capsys, example_plan):
    from scripts.offline import policy as offline_policy

    assert offline_policy.main(["dev"]) == 0
    # advisories are listed but not counted as violations
    assert re.search(r"^dev-cloud: \d+ resources, 0 mandatory violations, [1-9]\d* advisor(y|ies)$", capsys.readouterr().out, re.M)
    runs = example_plan("dev")
    cloud = runs[1]
    _edit(TARGETS["peer-pods-cm"][1](cloud)[0], _set_data(DISABLECVM="true"))
    monkeypatch.setattr("scripts.plan.plan_environment", lambda env: runs)
    assert offline_policy.main(["dev"]) == 1
    printed = capsys.readouterr().out
    assert "[mandatory] peer-pods-confidential-vms: urn:pulumi:dev-cloud::" in printed
    assert re.search(r"^dev-cloud: \d+ resources, 1 mandatory violation, [1-9]\d* advisor(y|ies)$", printed, re.M)
