"""The config edge: every rule names its key, and a bad config registers nothing."""

from __future__ import annotations

import pytest

from stacks.config import ConfigError, load
from tests.conftest import example_config


def problems(stack: str, **kwargs) -> list[str]:
    config, secret_keys = example_config(stack, **kwargs)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    secrets = [k.split(":", 1)[1] for k in secret_keys]
    with pytest.raises(ConfigError) as err:
        load(stack, raw, secrets)
    return err.value.lines()


@pytest.mark.parametrize("stack", ["dev-trusted", "dev-cloud", "prod-trusted", "prod-cloud"])
def test_example_configs_are_valid(stack):
    config, secret_keys = example_config(stack)
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    assert load(stack, raw, [k.split(":", 1)[1] for k in secret_keys]).stack.name == stack


def test_role_must_agree_with_stack_name():
    assert problems("dev-cloud", set={"role": "trusted"}) == [
        "dev-cloud: role: is 'trusted' but stack dev-cloud is a cloud stack; set role: cloud"
    ]


def test_missing_role_is_named():
    assert problems("dev-trusted", delete=("role",)) == [
        "dev-trusted: role: is missing but stack dev-trusted is a trusted stack; set role: trusted"
    ]


def test_stack_name_must_carry_env_and_role():
    with pytest.raises(ConfigError) as err:
        load("dev", {"role": "cloud"})
    assert err.value.lines() == [
        "dev: (stack name): must be <env>-trusted, <env>-cloud or <env>-cloud-<name>: env lowercase letters and digits, "
        "name lowercase letters, digits and '-', each at most 12 characters"
    ]


def test_missing_required_key_is_named():
    assert "dev-cloud: network.podVmSubnetCidr: required key is missing" in problems("dev-cloud", delete=("network.podVmSubnetCidr",))
    assert "dev-trusted: kbs: required key is missing" in problems("dev-trusted", delete=("kbs",))


def test_unknown_key_is_named():
    assert problems("dev-cloud", set={"peerPods.zzUnknown": "Standard_DC4as_v5"}) == ["dev-cloud: peerPods.zzUnknown: unknown key"]


def test_a_misspelt_key_is_told_the_key_it_resembles_and_nothing_else():
    config, secret_keys = example_config("dev-cloud")
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    raw["netwrok"] = raw.pop("network")
    with pytest.raises(ConfigError) as err:
        load("dev-cloud", raw, [k.split(":", 1)[1] for k in secret_keys])
    # Not also "network: required key is missing": the typo is the one thing to fix.
    assert err.value.lines() == ["dev-cloud: netwrok: unknown key; did you mean network?"]


def test_misspelt_keys_inside_sections_and_list_items_get_suggestions():
    lines = problems("dev-cloud", set={"peerPods.instanceSize": "Standard_DC4as_v5", "models.0.gpuz": 1}, delete=("models.0.gpus",))
    assert lines == [
        "dev-cloud: peerPods.instanceSize: unknown key; did you mean instanceSizes?",
        "dev-cloud: models[0].gpuz: unknown key; did you mean gpus?",
    ]
    lines = problems("dev-trusted", set={"kbs.operatr": {}}, delete=("kbs.operator",))
    assert lines == ["dev-trusted: kbs.operatr: unknown key; did you mean operator?"]


def test_a_number_where_text_is_expected_says_to_quote_it():
    assert problems("dev-cloud", set={"cluster.aro.version": 4.2}) == [
        'dev-cloud: cluster.aro.version: is a number in YAML, but text is expected: put the value in quotes ("4.20", not 4.20)'
    ]


def test_the_quote_hint_never_echoes_the_value_which_may_be_a_secret():
    (line,) = problems("dev-trusted", set={"kbsSecrets.ngc-api-key": 987654321})
    assert line.startswith("dev-trusted: kbsSecrets.ngc-api-key: is a number in YAML") and "987654321" not in line


def test_overlapping_cidrs_rejected():
    lines = problems("dev-cloud", set={"network.podVmSubnetCidr": "10.10.2.0/24"})
    assert lines == ["dev-cloud: network.podVmSubnetCidr: 10.10.2.0/24 overlaps workerSubnetCidr (10.10.2.0/23)"]


def test_subnet_outside_vnet_rejected():
    lines = problems("dev-cloud", set={"network.podVmSubnetCidr": "10.99.0.0/24"})
    assert lines == ["dev-cloud: network.podVmSubnetCidr: 10.99.0.0/24 is not inside vnetCidr (10.10.0.0/16)"]


def test_malformed_cidr_rejected():
    lines = problems("dev-cloud", set={"network.vnetCidr": "10.10.0.1/16"})
    assert lines[0].startswith("dev-cloud: network.vnetCidr: '10.10.0.1/16' is not an IPv4 CIDR")


def test_non_confidential_size_rejected():
    lines = problems("dev-cloud", set={"peerPods.instanceSizes": ["Standard_NCC40ads_H100_v5", "Standard_D4s_v5"]})
    assert "dev-cloud: peerPods.instanceSizes[1]: Standard_D4s_v5 is not a confidential VM size" in lines


def test_tdx_size_rejected_because_trustee_attests_snp():
    lines = problems("dev-cloud", set={"peerPods.instanceSizes": ["Standard_DC4es_v5"], "peerPods.defaultInstanceSize": "Standard_DC4es_v5"})
    assert lines == ["dev-cloud: peerPods.instanceSizes[0]: Standard_DC4es_v5 is an Intel TDX size; the trusted side attests AMD SEV-SNP (az-snp-vtpm) only"]


def test_default_size_must_be_allowed():
    lines = problems("dev-cloud", set={"peerPods.defaultInstanceSize": "Standard_DC8as_v5"})
    assert lines == ["dev-cloud: peerPods.defaultInstanceSize: Standard_DC8as_v5 is not in instanceSizes"]


def test_kbs_url_must_be_https():
    lines = problems("dev-trusted", set={"kbs.url": "http://kbs.trusted-dev.example.com"})
    assert lines == ["dev-trusted: kbs.url: http://kbs.trusted-dev.example.com is not https: KBS must only be reached over TLS"]


def test_region_must_be_a_region():
    lines = problems("dev-cloud", set={"azure.location": "East US 2"})
    assert lines == ["dev-cloud: azure.location: 'East US 2' is not an Azure region name (use the programmatic form, e.g. eastus2)"]


def test_all_problems_reported_together():
    lines = problems("dev-cloud", set={"azure.location": "mars", "azure.subscriptionId": "nope"})
    assert [line.split(":")[1].strip() for line in lines] == ["azure.subscriptionId", "azure.location"]


def test_secret_setting_stored_in_plain_text_rejected():
    config, secret_keys = example_config("dev-trusted")
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    others = [k.split(":", 1)[1] for k in secret_keys if k != "confidential-ai:kubeconfig"]
    with pytest.raises(ConfigError) as err:
        load("dev-trusted", raw, secret_keys=others)
    assert err.value.lines() == ["dev-trusted: kubeconfig: must be stored as a secret: pulumi config set --secret kubeconfig ... -s dev-trusted"]


def test_a_secret_stored_in_plain_text_does_not_hide_the_other_problems():
    config, secret_keys = example_config("dev-trusted", set={"kbs.url": "http://kbs.trusted-dev.example.com"})
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    others = [k.split(":", 1)[1] for k in secret_keys if k != "confidential-ai:kubeconfig"]
    with pytest.raises(ConfigError) as err:
        load("dev-trusted", raw, secret_keys=others)
    assert err.value.lines() == [
        "dev-trusted: kubeconfig: must be stored as a secret: pulumi config set --secret kubeconfig ... -s dev-trusted",
        "dev-trusted: kbs.url: http://kbs.trusted-dev.example.com is not https: KBS must only be reached over TLS",
    ]


def test_plain_setting_stored_as_secret_rejected():
    config, secret_keys = example_config("dev-trusted")
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    with pytest.raises(ConfigError) as err:
        load("dev-trusted", raw, secret_keys=[*(k.split(":", 1)[1] for k in secret_keys), "kbs"])
    assert err.value.lines() == ["dev-trusted: kbs: is stored as a secret but is a plain setting; store it in plain text"]


def test_config_error_never_echoes_a_secret_value():
    lines = problems("dev-trusted", set={"kubeconfig": {"not": "a string"}})
    assert lines == ["dev-trusted: kubeconfig: Input should be a valid string"]


@pytest.mark.parametrize(
    "stack, edit",
    [
        ("dev-trusted", {"set": {"role": "cloud"}}),
        ("dev-trusted", {"set": {"kbs.url": "http://kbs.example.com"}}),
        ("dev-cloud", {"set": {"network.masterSubnetCidr": "10.10.8.0/23"}}),
        ("dev-cloud", {"delete": ("azure",)}),
    ],
)
def test_no_resource_registered_on_config_error(runner, stack, edit):
    config, secret_keys = example_config(stack, **edit)
    with pytest.raises(ConfigError) as err:
        runner(stack, config, secret_keys)
    assert err.value.registered == []


def test_trusted_stack_reference_must_be_fully_qualified():
    assert problems("dev-cloud", set={"trustedStack": "dev-trusted"}) == [
        "dev-cloud: trustedStack: 'dev-trusted' is not a stack name like <org>/confidential-ai/<env>-trusted"
    ]


@pytest.mark.parametrize(
    ("stack", "path", "value", "problem"),
    [
        ("dev-trusted", "referenceValues.pcrs.pcr03", ["a" * 64 + "\n"], "referenceValues.pcrs.pcr03[0]: '" + "a" * 64 + "\\n' is not a PCR value"),
        ("dev-cloud", "azure.subscriptionId", "3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21\n", "azure.subscriptionId: '3f2c8a1e-6b4d-4e2a-9c7f-1d5e8b0a4c21\\n' is not a GUID"),
    ],
)
def test_a_value_with_a_trailing_newline_is_refused(stack, path, value, problem):
    # A pasted value often ends in a newline; it would be written into the PCR list or the Azure scope as is.
    config, secret_keys = example_config(stack, set={path: value})
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("confidential-ai:")}
    with pytest.raises(ConfigError) as error:
        load(stack, raw, [k.split(":", 1)[1] for k in secret_keys])
    assert any(line.startswith(f"{stack}: {problem}") for line in str(error.value).splitlines()), str(error.value)
