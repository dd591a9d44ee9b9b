"""The cloud stack's cluster layer, run under the harness on the trusted-stack fixture."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.nim import INITDATA_ANNOTATION, MACHINE_TYPE_ANNOTATION
from scripts.offline import Registered, StackRun
from scripts.offline.stackfile import PLACEHOLDER_PREFIX
from scripts.topology import render_topology
from stacks.config import ConfigError
from tests.cluster_layer_fixtures import (
    INFERENCE_CA,
    KBS_URL,
    MODEL_HOST,
    NGC_API_KEY_URI,
    NVCR_CREDENTIALS_URI,
    PEER_PODS_CLIENT_ID,
    PEER_PODS_CLIENT_SECRET,
    POD_VM_IMAGE_ID,
    POD_VM_NSG_ID,
    POD_VM_SUBNET_ID,
    SERVING_KEY_RESOURCE,
    SUBSCRIPTION,
    MISTRAL_IMAGE,
    model_hosts,
    WORKLOAD_IMAGE,
    run_cluster_layer,
    trusted_outputs,
    workload_output,
)
from tests.test_sealed_secret import decode

ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
KATA_CONFIG = "kubernetes:kataconfiguration.openshift.io/v1:KataConfig"
DSC = "kubernetes:datasciencecluster.opendatahub.io/v2:DataScienceCluster"
SUBSCRIPTION_TYPE = "kubernetes:operators.coreos.com/v1alpha1:Subscription"
def with_workload(name: str, output: dict[str, Any]):
    """The fixture's trusted outputs with one workload's entry replaced."""
    return trusted_outputs(workloads={**trusted_outputs().values["spokes"]["dev-cloud"]["workloads"], name: output})


MODEL = {"name": "m", "workload": "llama-3-1-8b", "image": "nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3", "modelCacheGi": 60, "hostname": MODEL_HOST}
APPROVAL = "pulumi-python:dynamic:Resource"


@pytest.fixture(scope="module")
def trusted():
    """What dev-trusted exports: the dev models' workloads only."""
    return trusted_outputs(encrypted_workload=False)


@pytest.fixture(scope="module")
def run(trusted) -> StackRun:
    return run_cluster_layer(trusted=trusted)


@pytest.fixture(scope="module")
def prod() -> StackRun:
    return run_cluster_layer("prod-cloud", trusted=trusted_outputs())


def k8s_object(run: StackRun, kind: str, name: str) -> Registered:
    found = [r for r in run.resources if r.inputs.get("kind") == kind and r.inputs.get("metadata", {}).get("name") == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def config_map_data(run: StackRun) -> dict[str, str]:
    return k8s_object(run, "ConfigMap", "peer-pods-cm").inputs["data"]


# --- every custom resource is one the operators accept ---------------------------------------


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would prune: not declared where the schema declares properties."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, (dict, list)):
        return []
    if isinstance(value, list):
        return [f for i, item in enumerate(value) for f in unknown_fields(item, schema.get("items", {}), f"{path}[{i}]")]
    properties = schema.get("properties")
    if properties is None:
        extra = schema.get("additionalProperties")
        return [f for k, v in value.items() for f in unknown_fields(v, extra, f"{path}.{k}")] if isinstance(extra, dict) else []
    found = [f"{path}.{k}" for k in value if k not in properties]
    return found + [f for k, v in value.items() if k in properties for f in unknown_fields(v, properties[k], f"{path}.{k}")]


def test_custom_resources_validate_against_upstream_crds(run, crd_validator, crd_schemas):
    custom = [r for r in run.resources if r.type.startswith("kubernetes:") and "." in r.inputs.get("apiVersion", "").split("/")[0]]
    kinds = {r.inputs["kind"] for r in custom}
    assert {"KataConfig", "DSCInitialization", "DataScienceCluster", "ServingRuntime", "InferenceService", "Subscription", "OperatorGroup"} <= kinds
    for r in custom:
        manifest = r.inputs
        assert crd_validator(manifest) == [], r.name
        schema = crd_schemas[(manifest["apiVersion"], manifest["kind"])]
        assert unknown_fields(manifest["spec"], schema["properties"]["spec"], "spec") == [], r.name


# --- peer pods --------------------------------------------------------------------------------


def test_peer_pods_cm_keys_and_values(run, trusted):
    assert config_map_data(run) == {
        "CLOUD_PROVIDER": "azure",
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_REGION": "eastus2",
        "AZURE_RESOURCE_GROUP": "confidential-ai-dev-podvms",
        "AZURE_SUBNET_ID": POD_VM_SUBNET_ID,
        "AZURE_NSG_ID": POD_VM_NSG_ID,
        "AZURE_IMAGE_ID": POD_VM_IMAGE_ID,
        "AZURE_INSTANCE_SIZE": "Standard_DC4as_v5",
        "AZURE_INSTANCE_SIZES": "Standard_NCC40ads_H100_v5,Standard_DC4as_v5",
        "DISABLECVM": "false",
        "ENABLE_SECURE_BOOT": "true",
        "USE_PUBLIC_IP": "false",
        "ROOT_VOLUME_SIZE": "300",
        "PROXY_TIMEOUT": "10m",
        "PEERPODS_LIMIT_PER_NODE": "10",
        "VXLAN_PORT": "9000",
        "TAGS": "confidential-ai-stack=dev-cloud,environment=dev",
    }
    # No default initdata: a pod without its workload's annotation measures no workload's PCR 8.
    assert "INITDATA" not in config_map_data(run)
    assert k8s_object(run, "ConfigMap", "peer-pods-cm").inputs["metadata"]["namespace"] == "openshift-sandboxed-containers-operator"


def test_feature_gates_enable_confidential_containers_and_name_the_caa_update_strategy(run, prod):
    assert k8s_object(run, "ConfigMap", "osc-feature-gates").inputs["data"] == {"confidential": "true", "caaUpdateStrategy": "RollingUpdate"}
    assert k8s_object(prod, "ConfigMap", "osc-feature-gates").inputs["data"] == {"confidential": "true", "caaUpdateStrategy": "OnDelete"}


def test_nothing_patches_the_operators_caa_daemonset(run, prod):
    for plan in (run, prod):
        assert not [r for r in plan.resources if "DaemonSet" in r.type or r.inputs.get("kind") == "DaemonSet"]


def test_peer_pods_secret_holds_the_identity_and_its_secret_stays_secret(run):
    secret = k8s_object(run, "Secret", "peer-pods-secret")
    assert secret.inputs["stringData"] == {
        "AZURE_CLIENT_ID": PEER_PODS_CLIENT_ID,
        "AZURE_CLIENT_SECRET": PEER_PODS_CLIENT_SECRET,
        "AZURE_TENANT_ID": "9a7b6c5d-4e3f-4a1b-8c2d-0e1f2a3b4c5d",
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
    }
    assert secret.is_secret("stringData", "AZURE_CLIENT_SECRET")
    assert PEER_PODS_CLIENT_SECRET not in json.dumps(secret.redacted_inputs)


def test_kata_config_enables_peer_pods_and_is_awaited(run, prod):
    kata = run.of_type(KATA_CONFIG)[0]
    assert "namespace" not in kata.inputs["metadata"], "KataConfig is cluster scoped"
    assert kata.inputs["spec"] == {"enablePeerPods": True, "checkNodeEligibility": False, "logLevel": "info"}
    assert kata.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=InProgress=False"
    assert int(kata.inputs["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) >= 3600
    assert prod.of_type(KATA_CONFIG)[0].inputs["spec"]["kataConfigPoolSelector"] == {"matchLabels": {"node-role.kubernetes.io/worker": ""}}


# --- OpenShift AI -----------------------------------------------------------------------------


def test_openshift_ai_serves_kserve_raw_with_nim_only(run):
    dsc = run.of_type(DSC)[0].inputs
    components = dsc["spec"]["components"]
    assert components.pop("kserve") == {"managementState": "Managed", "nim": {"managementState": "Managed"}, "rawDeploymentServiceConfig": "Headed"}
    assert components and {c["managementState"] for c in components.values()} == {"Removed"}
    assert dsc["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.phase}=Ready"
    dsci = run.named("openshift-ai-initialization").inputs
    assert (dsci["kind"], dsci["metadata"]["name"]) == ("DSCInitialization", "default-dsci")
    assert dsci["metadata"]["annotations"]["pulumi.com/waitFor"] == "jsonpath={.status.phase}=Ready"
    assert dsci["spec"]["applicationsNamespace"] == "redhat-ods-applications"
    group = k8s_object(run, "OperatorGroup", "rhods-operator").inputs
    assert group["spec"] == {} and group["metadata"]["namespace"] == "redhat-ods-operator"


# --- NIM models -------------------------------------------------------------------------------


def test_inference_service_runs_in_a_confidential_gpu_vm(run, trusted):
    isvc = run.of_type(ISVC)[0].inputs
    predictor = isvc["spec"]["predictor"]
    assert predictor["runtimeClassName"] == "kata-remote"
    assert predictor["annotations"] == {
        MACHINE_TYPE_ANNOTATION: "Standard_NCC40ads_H100_v5",
        INITDATA_ANNOTATION: trusted.values["spokes"]["dev-cloud"]["workloads"]["llama-3-1-8b"]["initdata"],
    }
    # The peer-pods webhook turns the GPU request (not the limit) into the pod VM's default_gpus.
    assert predictor["model"]["resources"] == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
    assert predictor["model"]["runtime"] == "llama-3-1-8b-nim"
    assert predictor["imagePullSecrets"] == [{"name": "llama-3-1-8b-nvcr-pull"}]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert isvc["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"


def test_each_model_runs_its_own_workload_image_and_initdata(run, trusted):
    workloads = trusted.values["spokes"]["dev-cloud"]["workloads"]
    seen = {}
    for isvc in run.of_type(ISVC):
        name = isvc.inputs["metadata"]["name"]
        seen[name] = isvc.inputs["spec"]["predictor"]["annotations"][INITDATA_ANNOTATION]
        runtime = k8s_object(run, "ServingRuntime", f"{name}-nim").inputs["spec"]
        assert runtime["containers"][0]["image"] == workloads[name]["image"]
    assert seen == {name: w["initdata"] for name, w in workloads.items()}
    assert len(set(seen.values())) == 2


def test_nim_runtime_reads_its_key_from_a_sealed_secret_and_reports_readiness(run, trusted):
    runtime = k8s_object(run, "ServingRuntime", "llama-3-1-8b-nim").inputs["spec"]
    container = runtime["containers"][0]
    # The workload's pinned digest runs; the model's tag names the release only.
    assert container["image"] == WORKLOAD_IMAGE
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/health/ready", "port": 8000, "scheme": "HTTPS"}
    assert runtime["supportedModelFormats"] == [{"name": "llama-3.1-8b-instruct", "version": "1.3.3", "autoSelect": True}]
    env = {e["name"]: e for e in container["env"]}
    assert env["NGC_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "llama-3-1-8b-ngc-api-key", "key": "NGC_API_KEY"}}
    sealed = k8s_object(run, "Secret", "llama-3-1-8b-ngc-api-key").inputs
    assert sealed["metadata"]["namespace"] == "llama-3-1-8b"
    # The trusted side's signed pointer, verbatim: the cloud side cannot sign one.
    assert sealed["stringData"]["NGC_API_KEY"] == trusted.values["spokes"]["dev-cloud"]["workloads"]["llama-3-1-8b"]["sealedSecrets"]["ngc-api-key"]
    assert decode(sealed["stringData"]["NGC_API_KEY"])["name"] == NGC_API_KEY_URI
    assert {"name": "nim-cache", "emptyDir": {"sizeLimit": "60Gi"}} in runtime["volumes"]


# --- TLS ends in the pod VM ------------------------------------------------------------------------

ROUTE = "kubernetes:route.openshift.io/v1:Route"


def test_nim_serves_https_with_the_workloads_key_unsealed_in_the_guest(run, trusted):
    workload = trusted.values["spokes"]["dev-cloud"]["workloads"]["llama-3-1-8b"]
    runtime = k8s_object(run, "ServingRuntime", "llama-3-1-8b-nim").inputs["spec"]
    [container] = runtime["containers"]
    # One port, TLS: no plaintext port leaves the pod VM.
    assert container["ports"] == [{"name": "https", "containerPort": 8000, "protocol": "TCP"}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NIM_SSL_MODE"] == "TLS" and "NIM_SSL_CA_CERTS_PATH" not in env
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in runtime["volumes"]}
    assert env["NIM_SSL_KEY_PATH"] == f"{mounts['tls-key']}/tls.key"
    assert env["NIM_SSL_CERTS_PATH"] == f"{mounts['tls-certificate']}/tls.crt"
    # The key volume is a Secret whose one file is the trusted side's signed pointer to the workload's key.
    assert volumes["tls-key"] == {"name": "tls-key", "secret": {"secretName": "llama-3-1-8b-tls-key"}}
    key = k8s_object(run, "Secret", "llama-3-1-8b-tls-key").inputs
    assert key["metadata"]["labels"] == {"confidential-ai/kbs-resource": "true"}
    assert key["stringData"] == {"tls.key": workload["sealedSecrets"][SERVING_KEY_RESOURCE]}
    assert decode(key["stringData"]["tls.key"])["name"] == "kbs:///default/inference-tls-keys/llama-3-1-8b"
    assert volumes["tls-certificate"] == {"name": "tls-certificate", "configMap": {"name": "llama-3-1-8b-tls"}}
    assert k8s_object(run, "ConfigMap", "llama-3-1-8b-tls").inputs["data"] == {"tls.crt": workload["servingCertificate"]}
    for probe, path in (("readinessProbe", "/v1/health/ready"), ("livenessProbe", "/v1/health/live"), ("startupProbe", "/v1/health/ready")):
        assert container[probe]["httpGet"] == {"path": path, "port": 8000, "scheme": "HTTPS"}


def test_the_model_is_exposed_by_a_passthrough_route_and_no_edge_route(run):
    routes = {r.inputs["metadata"]["namespace"]: r for r in run.of_type(ROUTE)}
    assert set(routes) == {"llama-3-1-8b", "mistral-7b"}
    route = routes["llama-3-1-8b"]
    assert route.inputs["spec"] == {
        "host": MODEL_HOST,
        "to": {"kind": "Service", "name": "llama-3-1-8b-predictor"},
        "port": {"targetPort": "https"},
        "tls": {"termination": "passthrough", "insecureEdgeTerminationPolicy": "None"},
        "wildcardPolicy": "None",
    }
    isvc = run.of_type(ISVC)[0].inputs
    # Without the visibility label odh-model-controller creates no edge Route of its own.
    assert "networking.kserve.io/visibility" not in isvc["metadata"]["labels"]
    assert isvc["metadata"]["labels"]["confidential-ai/confidential-model"] == "true"
    assert k8s_object(run, "Namespace", "llama-3-1-8b").inputs["metadata"]["labels"] == {"confidential-ai/confidential-model": "true"}
    assert not [s for s in run.of_type("kubernetes:core/v1:Service") if s.inputs["spec"].get("type") == "LoadBalancer"]


def test_load_balancer_exposure_replaces_the_route(trusted):
    lb = run_cluster_layer(trusted=trusted, set={"models": [{**MODEL, "exposure": "loadBalancer"}]})
    assert not lb.of_type(ROUTE)
    [service] = lb.of_type("kubernetes:core/v1:Service")
    assert service.inputs["spec"] == {
        "type": "LoadBalancer",
        "selector": {"serving.kserve.io/inferenceservice": "m", "component": "predictor"},
        "ports": [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
    }
    assert lb.outputs["models"]["m"]["externalUrl"] == f"https://{MODEL_HOST}"


def test_a_client_ca_makes_nim_require_client_certificates(trusted):
    client_ca = INFERENCE_CA[0]  # any CA certificate; the trusted side publishes the one it chose
    mtls = run_cluster_layer(trusted=trusted_outputs(inferenceClientCaCert=client_ca))
    [container] = k8s_object(mtls, "ServingRuntime", "llama-3-1-8b-nim").inputs["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NIM_SSL_MODE"] == "MTLS" and env["NIM_SSL_CA_CERTS_PATH"].endswith("/client-ca.crt")
    assert k8s_object(mtls, "ConfigMap", "llama-3-1-8b-tls").inputs["data"]["client-ca.crt"] == client_ca
    # The kubelet has no client certificate: the probes only check that the TLS port accepts connections.
    assert container["readinessProbe"] == {"tcpSocket": {"port": 8000}, "periodSeconds": 10, "failureThreshold": 3}


@pytest.mark.parametrize(
    ("trusted", "set", "line"),
    [
        (with_workload("llama-3-1-8b", workload_output(serving_hostnames=())), {},
         f"models[0].workload: workload llama-3-1-8b has no TLS serving certificate: list {MODEL_HOST} in spokes.dev-cloud.llama-3-1-8b.servingHostnames on organization/confidential-ai/dev-trusted"),
        (trusted_outputs(), {"models": [{**MODEL, "hostname": "chat.example.com"}]},
         "models[0].hostname: workload llama-3-1-8b's serving certificate names "
         f"{MODEL_HOST}, llama-3-1-8b-llama-3-1-8b.apps.ocp-prod.example.com, not chat.example.com: list chat.example.com in "
         "spokes.dev-cloud.llama-3-1-8b.servingHostnames on organization/confidential-ai/dev-trusted"),
    ],
    ids=["no-serving-certificate", "host-not-named"],
)
def test_a_model_is_served_only_under_a_name_its_certificate_carries(trusted, set, line):
    with pytest.raises(ConfigError) as err:
        run_cluster_layer(trusted=trusted, set=set)
    assert err.value.lines() == [f"dev-cloud: {line}"]


def test_no_workload_secret_value_reaches_the_cloud_stack(run):
    everything = json.dumps([[r.raw_inputs, r.outputs] for r in run.resources], default=repr) + json.dumps(run.outputs)
    assert f"{PLACEHOLDER_PREFIX}:dev-trusted:" not in everything
    # The only secret the cluster layer writes is the cloud side's own nvcr.io pull key, kept secret.
    redacted = json.dumps([r.redacted_inputs for r in run.resources])
    assert PLACEHOLDER_PREFIX not in redacted and PEER_PODS_CLIENT_SECRET not in redacted
    pull = k8s_object(run, "Secret", "llama-3-1-8b-nvcr-pull")
    assert pull.is_secret("stringData", ".dockerconfigjson")
    auths = json.loads(pull.inputs["stringData"][".dockerconfigjson"])["auths"]
    assert auths["nvcr.io"]["password"] == f"{PLACEHOLDER_PREFIX}:dev-cloud:nvcrPullKey"


def test_kbs_image_pull_mode_keeps_registry_credentials_off_the_cluster(trusted):
    kbs = run_cluster_layer(
        trusted=trusted_outputs(registry_credentials_uri=NVCR_CREDENTIALS_URI),
        set={"imagePull": {"mode": "kbs"}},
        delete=("nvcrPullKey",),
    )
    assert not [r for r in kbs.of_type("kubernetes:core/v1:Secret") if r.inputs["type"] == "kubernetes.io/dockerconfigjson"]
    assert kbs.of_type(ISVC)[0].inputs["spec"]["predictor"]["imagePullSecrets"] == []
    assert kbs.outputs["kbsResourcesReferenced"] == sorted([NGC_API_KEY_URI, NVCR_CREDENTIALS_URI])


# --- order and waits --------------------------------------------------------------------------


def test_inference_service_waits_for_kata_config_and_the_data_science_cluster_only(run):
    isvc = run.of_type(ISVC)[0]
    direct = {run.by_urn(urn).name for urn in isvc.depends_on}
    assert direct == {
        "model-llama-3-1-8b-namespace",
        "model-llama-3-1-8b-serving-runtime",
        "model-llama-3-1-8b-ngc-api-key",
        "model-llama-3-1-8b-tls-key",
        "model-llama-3-1-8b-tls-certificate",
        "model-llama-3-1-8b-nvcr-pull",
        "peer-pods-kata-config",
        "openshift-ai-data-science-cluster",
    }


def test_custom_resources_depend_on_the_operator_serving_their_crd(run):
    subscriptions = {r.inputs["csv"].split(".")[0]: r.urn for r in run.of_type(APPROVAL)}
    assert subscriptions["sandboxed-containers-operator"] in run.of_type(KATA_CONFIG)[0].depends_on
    assert subscriptions["rhods-operator"] in run.of_type(DSC)[0].depends_on
    assert subscriptions["rhods-operator"] in run.named("openshift-ai-initialization").depends_on
    assert run.of_type(DSC)[0].urn in k8s_object(run, "ServingRuntime", "llama-3-1-8b-nim").depends_on
    kata = run.of_type(KATA_CONFIG)[0].depends_on
    for kind, name in (("ConfigMap", "peer-pods-cm"), ("ConfigMap", "osc-feature-gates"), ("Secret", "peer-pods-secret")):
        assert k8s_object(run, kind, name).urn in kata, f"KataConfig must wait for {name} (and outlive it on destroy)"


def ancestors(run: StackRun, urn: str) -> set[str]:
    """Everything `urn` waits for: dependencies, their parents' dependencies, transitively."""
    seen: set[str] = set()
    todo = [urn]
    while todo:
        r = run.by_urn(todo.pop())
        for dep in r.depends_on + ([r.parent] if r.parent and "pulumi:pulumi:Stack" not in r.parent else []):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_operators_install_in_parallel(run):
    osc, rhoai = sorted(run.of_type(SUBSCRIPTION_TYPE), key=lambda r: r.name)[::-1]
    assert not ancestors(run, osc.urn) & {r.urn for r in run.resources if "openshift-ai" in r.name}
    assert not ancestors(run, rhoai.urn) & {r.urn for r in run.resources if "sandboxed-containers" in r.name or "peer-pods" in r.name}


# --- outputs and picture ----------------------------------------------------------------------


def test_outputs_name_urls_runtime_class_and_referenced_resources(run):
    assert run.outputs["models"] == {
        "llama-3-1-8b": {
            "inClusterUrl": "https://llama-3-1-8b-predictor.llama-3-1-8b.svc.cluster.local:80",
            "externalUrl": "https://llama-3-1-8b-llama-3-1-8b.apps.confai-dev.eastus2.aroapp.io",
            "workload": "llama-3-1-8b",
        },
        "mistral-7b": {
            "inClusterUrl": "https://mistral-7b-predictor.mistral-7b.svc.cluster.local:80",
            "externalUrl": "https://mistral-7b-mistral-7b.apps.confai-dev.eastus2.aroapp.io",
            "workload": "mistral-7b",
        },
    }
    assert run.outputs["runtimeClass"] == "kata-remote"
    assert run.outputs["kbsResourcesReferenced"] == [NGC_API_KEY_URI]
    assert run.outputs["kbsUrl"] == KBS_URL
    assert not run.secret_outputs


def test_topology_draws_the_confidential_flow(run, trusted):
    picture = render_topology([StackRun("dev-trusted", [], dict(trusted.values), frozenset()), run])
    # Each model's pod carries its own workload's initdata and signed pointers (the models' node names what every one reads).
    assert '-- "kbsResources, workloads" --> cloud_models\n' in picture
    # No default initdata in peer-pods-cm: a pod without its workload's initdata gets nothing.
    trusted_edges = [line for line in picture.splitlines() if line.strip().startswith("cloud_stackreference_trusted_stack ")]
    assert trusted_edges and not [line for line in trusted_edges if line.endswith("cloud_peerpods_peer_pods")]
    assert "1 GPU, Standard_NCC40ads_H100_v5, kata-remote" in picture


# --- the trusted stack must be there first -----------------------------------------------------


def test_undeployed_trusted_stack_stops_before_any_resource():
    with pytest.raises(ConfigError) as err:
        run_cluster_layer(trusted=None)
    assert err.value.lines() == [
        "dev-cloud: trustedStack: organization/confidential-ai/dev-trusted has no output kbsUrl, kbsCaCert, kbsResources, "
        "workloads, sealedSecretKeyUri (deploy it first: pulumi up -s dev-trusted)"
    ]
    assert [r.type for r in err.value.registered] == ["pulumi:pulumi:StackReference"]


@pytest.mark.parametrize(
    ("trusted", "set", "line"),
    [
        (trusted_outputs(kbsCaCert=None), {}, "trustedStack: organization/confidential-ai/dev-trusted has no output kbsCaCert (deploy it first: pulumi up -s dev-trusted)"),
        (trusted_outputs(), {"models": [{**MODEL, "ngcApiKeyResource": "hf-token"}]}, "models[0].ngcApiKeyResource: hf-token is not a KBS resource of organization/confidential-ai/dev-trusted (it publishes: llama-3-1-8b-tls-key, llama-ft-tls-key, mistral-7b-tls-key, model-key, ngc-api-key, nvcr-credentials)"),
        (trusted_outputs(), {"models": [{**MODEL, "ngcApiKeyResource": "nvcr-credentials"}]}, "models[0].ngcApiKeyResource: workload llama-3-1-8b may not receive nvcr-credentials (its resources: ngc-api-key, model-key, llama-3-1-8b-tls-key)"),
        (trusted_outputs(encrypted_workload=False), {"models": [{**MODEL, "workload": "phi-3"}]}, "models[0].workload: phi-3 is not a workload of organization/confidential-ai/dev-trusted (it exports: llama-3-1-8b, mistral-7b)"),
        (trusted_outputs(), {"models": [{**MODEL, "workload": "mistral-7b", "hostname": model_hosts("mistral-7b")[0]}]}, "models[0].image: nvcr.io/nim/meta/llama-3.1-8b-instruct is not the repository of workload mistral-7b's pinned image " + MISTRAL_IMAGE),
        (trusted_outputs(), {"models": [{**MODEL, "image": "nvcr.io/nim/meta/llama-3.1-70b-instruct:1.3.3"}]}, "models[0].image: nvcr.io/nim/meta/llama-3.1-70b-instruct is not the repository of workload llama-3-1-8b's pinned image " + WORKLOAD_IMAGE),
        (with_workload("llama-3-1-8b", workload_output(gpus=2)), {}, "models[0].gpus: workload llama-3-1-8b is declared with 2 GPUs; the model asks for 1"),
        (with_workload("llama-3-1-8b", {"image": WORKLOAD_IMAGE}), {}, "trustedStack: organization/confidential-ai/dev-trusted output workloads.llama-3-1-8b lacks initdata, initdataDigest, initdataPcr8, resources, gpus, sealedSecrets, imageEnv (update the trusted stack first)"),
        (with_workload("mistral-7b", workload_output(NVCR_CREDENTIALS_URI, MISTRAL_IMAGE, ("ngc-api-key",), name="mistral-7b")), {"imagePull": {"mode": "kbs"}, "nvcrPullKey": None}, "models[0].workload: imagePull.mode kbs needs workload llama-3-1-8b to set registryCredentials: nvcr-credentials on organization/confidential-ai/dev-trusted (its cdh.toml has no authenticated_registry_credentials_uri = 'kbs:///default/nvcr/credentials')"),
    ],
)
def test_what_the_cloud_side_needs_from_the_trusted_stack_is_checked(trusted, set, line):
    delete = tuple(k for k, v in set.items() if v is None)
    with pytest.raises(ConfigError) as err:
        run_cluster_layer(trusted=trusted, set={k: v for k, v in set.items() if v is not None}, delete=delete)
    assert err.value.lines() == [f"dev-cloud: {line}"]
    assert [r.type for r in err.value.registered] == ["pulumi:pulumi:StackReference"]


def test_gpu_gated_key_needs_a_model_with_enough_gpus():
    gated = trusted_outputs(kbsResources={"ngc-api-key": {"uri": NGC_API_KEY_URI, "gpuGated": True, "minGpus": 2}})
    with pytest.raises(ConfigError) as err:
        run_cluster_layer(trusted=gated)
    assert err.value.lines() == [f"dev-cloud: models[{i}].gpus: KBS releases ngc-api-key only to pod VMs attesting 2 GPUs; the model asks for 1" for i in (0, 1)]


def test_trusted_outputs_the_cloud_reads_must_be_public():
    from scripts.offline.fakes import StackOutputs

    leaky = StackOutputs(trusted_outputs().values, frozenset({"spokes"}))
    with pytest.raises(ConfigError) as err:
        run_cluster_layer(trusted=leaky)
    assert err.value.lines() == ["dev-cloud: trustedStack: organization/confidential-ai/dev-trusted exports spokes as secret; the cloud side reads only public values"]
