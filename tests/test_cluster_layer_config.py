"""Config of the cluster layer: models against peer pods, image pulls, and the OSC settings."""

from __future__ import annotations

import json

import pytest

from tests.conftest import example_config
from tests.test_config import problems
from tests.test_trusted_config import loads

MODEL = json.loads(example_config("dev-cloud")[0]["confidential-ai:models"])[0]


def with_model(**changes) -> dict:
    return {"models": [{**MODEL, **changes}]}


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("Standard_DC4as_v5", "Standard_DC4as_v5 is a confidential CPU size without a GPU; a NIM model needs Standard_NCC40ads_H100_v5"),
        ("Standard_NC40ads_H100_v5", "Standard_NC40ads_H100_v5 is not a confidential VM size; a NIM model needs Standard_NCC40ads_H100_v5"),
        ("Standard_DC4es_v5", "Standard_DC4es_v5 is an Intel TDX size; the trusted side attests AMD SEV-SNP (az-snp-vtpm) only; a NIM model needs Standard_NCC40ads_H100_v5"),
        # the right size in the wrong case is told so, not that it is no confidential size
        ("standard_ncc40ads_h100_v5", "standard_ncc40ads_h100_v5 is written in the wrong case: write Standard_NCC40ads_H100_v5"),
    ],
)
def test_model_machine_type_must_be_a_confidential_gpu_size(size, message):
    assert f"dev-cloud: models[0].machineType: {message}" in problems("dev-cloud", set=with_model(machineType=size))


def test_model_machine_type_must_be_an_allowed_instance_size():
    lines = problems("dev-cloud", set={"peerPods.instanceSizes": ["Standard_DC4as_v5"]})
    assert lines == [
        f"dev-cloud: models[{i}].machineType: Standard_NCC40ads_H100_v5 is not in peerPods.instanceSizes (Standard_DC4as_v5); CAA refuses sizes not listed there"
        for i in (0, 1)
    ]


def test_model_gpus_must_fit_the_vm():
    assert problems("dev-cloud", set=with_model(gpus=2)) == ["dev-cloud: models[0].gpus: 2 GPUs do not fit Standard_NCC40ads_H100_v5 (1 GPU)"]


def test_model_names_are_unique_and_short():
    lines = problems("dev-cloud", set={"models": [MODEL, MODEL]})
    assert lines == ["dev-cloud: models[1].name: llama-3-1-8b is used by another model"]
    long = "a" * 32
    assert problems("dev-cloud", set=with_model(name=long)) == [
        f"dev-cloud: models[0].name: {long} is longer than 31 characters; its Route host <name>-<namespace> must fit one DNS label"
    ]
    assert loads("dev-cloud", set=with_model(name="a" * 31)).models[0].name == "a" * 31


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        ({"delete": ("models.1.encrypted",)}, "models[1].encrypted: is required with source encrypted (manifest, and url unless modelStorage holds the model)"),
        ({"set": {"models.1.source": "ngc"}}, "models[1].encrypted: is only used with source encrypted"),
        ({"delete": ("modelStorage",)}, "models[1].encrypted.url: is required unless modelStorage is set (the stack then serves the model from its container)"),
    ],
)
def test_an_encrypted_model_says_where_its_ciphertext_is(edit, line):
    assert problems("prod-cloud", **edit) == [f"prod-cloud: {line}"]


def test_an_encrypted_model_with_its_own_url_needs_no_model_storage():
    url = "https://caiprodmodels.blob.core.windows.net/models/llama-ft"
    config = loads("prod-cloud", set={"models.1.encrypted.url": url}, delete=("modelStorage",))
    assert (config.models[1].encrypted.url, config.model_storage) == (url, None)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("nvcr.io/nim/meta/llama-3.1-8b-instruct", "is not a NIM image reference like nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3 (a tag is required)"),
        ("docker.io/meta/llama:1.0", "is not a NIM image reference like nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3 (a tag is required)"),
        ("nvcr.io/nim/meta/llama-3.1-8b-instruct:latest", "uses the moving tag latest; pin a NIM release tag"),
    ],
)
def test_model_image_is_a_pinned_nim_image(image, message):
    [line] = problems("dev-cloud", set=with_model(image=image))
    assert line.startswith("dev-cloud: models[0].image: ") and line.endswith(message)


def test_root_volume_must_hold_image_and_model_cache():
    assert problems("dev-cloud", set={"osc.rootVolumeSizeGb": 90}) == [
        "dev-cloud: osc.rootVolumeSizeGb: 90 GB cannot hold model llama-3-1-8b: image 30 GiB + cache 60 GiB + NIM scratch 6 GiB"
    ]


def test_pull_secret_mode_needs_the_cloud_side_pull_key():
    assert problems("dev-cloud", delete=("nvcrPullKey",)) == [
        "dev-cloud: nvcrPullKey: is required with imagePull.mode pullSecret: pulumi config set --secret nvcrPullKey <pull-only NGC key> -s dev-cloud"
    ]


def test_kbs_mode_needs_no_cloud_side_pull_key():
    assert loads("dev-cloud", set={"imagePull.mode": "kbs"}, delete=("nvcrPullKey",)).nvcr_pull_key is None


def test_kbs_mode_refuses_a_cloud_side_pull_key():
    assert problems("dev-cloud", set={"imagePull.mode": "kbs"}) == [
        "dev-cloud: nvcrPullKey: is not used with imagePull.mode kbs (KBS holds the registry credential); remove it so the cloud side holds none"
    ]


def test_pull_key_must_be_stored_as_a_secret():
    config, secret_keys = example_config("dev-cloud", set={"nvcrPullKey": "nvapi-plaintext"})
    from stacks.config import ConfigError, load

    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    with pytest.raises(ConfigError) as err:
        load("dev-cloud", raw, [k.split(":", 1)[1] for k in secret_keys if k != "confidential-ai:nvcrPullKey"])
    assert err.value.lines() == ["dev-cloud: nvcrPullKey: must be stored as a secret: pulumi config set --secret nvcrPullKey ... -s dev-cloud"]
    assert "nvapi-plaintext" not in str(err.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("osc.proxyTimeout", "5 minutes", "'5 minutes' is not a duration like 30m or 1h30m"),
        ("osc.tags", {"team": "a,b"}, "tag keys and values may not contain ',', '=' or spaces (CAA reads TAGS as k=v,k2=v2)"),
        ("osc.tags", {"app.kubernetes.io/part-of": "nim"}, "Azure tag names may not contain '/' (tag values may)"),
        ("osc.tags", {"cost center": "ai"}, "tag keys and values may not contain ',', '=' or spaces (CAA reads TAGS as k=v,k2=v2)"),
        (
            "osc.proxyTimeout",
            "11m",
            "11m exceeds remoteHypervisorTimeout (600 s): the kata shim gives up on the pod VM first; use at most that, "
            "or raise remote_hypervisor_timeout on the workers and set remoteHypervisorTimeout to match",
        ),
        ("openshiftAi.ingressDomain", "Apps.Example", "'Apps.Example' is not a DNS name"),
        ("imagePull.mode", "registry", "Input should be 'pullSecret' or 'kbs'"),
    ],
)
def test_cluster_settings_name_the_bad_key(key, value, message):
    [line] = problems("dev-cloud", set={key: value})
    assert line.startswith(f"dev-cloud: {key}") and line.endswith(message)


def test_red_hat_csv_names_without_v_are_accepted():
    config, _ = example_config("dev-cloud")
    assert json.loads(config["confidential-ai:openshiftAi"])["operator"]["startingCSV"] == "rhods-operator.3.4.3"
    assert problems("dev-cloud", set={"openshiftAi.operator.startingCSV": "rhods-operator"}) == [
        "dev-cloud: openshiftAi.operator.startingCSV: 'rhods-operator' is not a CSV name like operator-name.v1.2.3"
    ]


def test_existing_cluster_needs_its_ingress_domain():
    assert problems("prod-cloud", delete=("openshiftAi.ingressDomain",)) == [
        "prod-cloud: openshiftAi.ingressDomain: required when cluster.mode is existing (oc get ingresses.config cluster -o jsonpath='{.spec.domain}')"
    ]


def test_aro_ingress_domain_follows_the_cluster_domain(runner):
    host = "llama-3-1-8b-llama-3-1-8b.apps.llm-lab.eastus2.aroapp.io"
    # The trusted side issues each model's certificate for its new Route host.
    trusted = runner.example("dev-trusted", set={"spokes.dev-cloud.llama-3-1-8b.servingHostnames": [host], "spokes.dev-cloud.mistral-7b.servingHostnames": ["mistral-7b-mistral-7b.apps.llm-lab.eastus2.aroapp.io"]})
    run = runner.example("dev-cloud", set={"cluster.aro.domain": "llm-lab"}, stack_outputs={"dev-trusted": trusted.stack_outputs})
    assert run.outputs["models"]["llama-3-1-8b"]["externalUrl"] == f"https://{host}"
    assert run.outputs["clusterConsoleUrl"] == "https://console-openshift-console.apps.llm-lab.eastus2.aroapp.io/"


@pytest.mark.parametrize(
    ("edit", "key", "says"),
    [
        ({"osc.operator.installPlanApproval": "Automatic"}, "osc.operator.installPlanApproval", "Automatic is not supported: OLM would upgrade past startingCSV"),
        ({"cluster.aro.version": "4.16.30"}, "cluster.aro.version", "4.16.30 is not an ARO install version"),
        (
            {"openshiftAi.operator": {"channel": "stable-2.16", "startingCSV": "rhods-operator.2.16.0"}},
            "openshiftAi.operator.startingCSV",
            "rhods-operator.2.16.0 is not in the version matrix",
        ),
        ({"openshiftAi.operator.channel": "stable-3.3"}, "openshiftAi.operator.channel", "stable-3.3 does not serve rhods-operator.3.4.3; use stable-3.4"),
        # An ARO install version the pinned OSC 1.12 does not support (it needs 4.19.28 or later).
        ({"cluster.aro.version": "4.19.24"}, "osc.operator.startingCSV", "sandboxed-containers-operator.v1.12.1 (OSC 1.12) needs OpenShift 4.19.28 or later"),
    ],
)
def test_an_operator_pin_outside_the_version_matrix_is_one_line(edit, key, says):
    """Parse-level twins of tests/test_version_matrix.py's full-message cases, cheap enough for the mutation check."""
    [line] = problems("dev-cloud", set=edit)
    assert line.startswith(f"dev-cloud: {key}: {says}"), line
