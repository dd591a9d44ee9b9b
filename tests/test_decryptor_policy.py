"""The agent policy of a workload with an encrypted model: its init container (the decryptor) runs only as
pinned: image, process, environment and mounts. Inputs are kata-containers' genpolicy test data, as in
tests/test_agent_policy.py (provenance in tests/fixtures/kata-genpolicy/SOURCES.md)."""

from __future__ import annotations

from typing import Any

import pytest

from components import encrypted_model, nim
from components.initdata import DecryptorPolicy
from tests.agent_requests import DECRYPTOR, KEY_URI, MANIFEST, SOURCE, decryptor_container, fixture, nim_container
from tests.rego_engines import Engines
from tests.test_agent_policy import IMAGE, REFUSAL_RULES, Policy, allows

PINNED = DecryptorPolicy(DECRYPTOR, KEY_URI, MANIFEST)


class RenderedPolicy:
    """An agent policy's text, decided as the agent asks, by both Rego engines (which must agree)."""

    def __init__(self, text: str):
        self.text = text
        self.engines = Engines({"policy.rego": text})

    def decide(self, request: str, input_: dict[str, Any]) -> Any:
        return self.engines.evaluate(f"data.agent_policy.{request}", input_)

    def refusals(self, input_: dict[str, Any], rule: str = REFUSAL_RULES[0]) -> set[str]:
        return set(self.engines.evaluate(f"data.agent_policy.{rule}", input_))


def workload_policy(decryptor: DecryptorPolicy | None = PINNED) -> Policy:
    """The encrypted-model workload's policy: NIM without an NGC key, serving the decrypted model."""
    return Policy(decryptor=decryptor, container=nim.policy_container(None, False, True))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return workload_policy()


def container(image: str) -> dict[str, Any]:
    """The encrypted-model NIM container pulling `image`."""
    request = nim_container(encrypted=True)
    (storage,) = [s for s in request["storages"] if s["driver"] == "image_guest_pull"]
    storage["source"] = image
    return request


def decryptor_request(image: str = DECRYPTOR, args: list[str] | None = None, env: list[str] = (), mounts: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The pod's decrypt-model init container (tests/agent_requests.py; it was genpolicy's bare application
    container with the decryptor's process before the allow-list checked every mount)."""
    request = decryptor_container(args)
    (storage,) = [s for s in request["storages"] if s["driver"] == "image_guest_pull"]
    storage["source"] = image
    names = {entry.split("=")[0] for entry in env}
    request["OCI"]["Process"]["Env"] = [e for e in request["OCI"]["Process"]["Env"] if e.split("=")[0] not in names] + list(env)
    request["OCI"]["Mounts"] += list(mounts)
    return request


def test_the_decryptor_runs_as_the_pod_spec_starts_it(policy):
    request = decryptor_request()
    assert allows(policy, "CreateContainerRequest", request)
    # ... beside the workload's own image and the pause container, which still run.
    assert allows(policy, "CreateContainerRequest", container(IMAGE))
    assert allows(policy, "CreateContainerRequest", fixture("sandbox"))


def test_the_ciphertext_may_come_from_any_https_url(policy):
    args = [*encrypted_model.COMMAND, *encrypted_model.decryptor_args("https://mirror.example.org:8443/models/llama-ft", KEY_URI, MANIFEST)]
    assert allows(policy, "CreateContainerRequest", decryptor_request(args=args))


def _with(replacements: dict[str, str] | None = None, extra: list[str] = ()) -> list[str]:
    args = [*encrypted_model.COMMAND, *encrypted_model.decryptor_args(SOURCE, KEY_URI, MANIFEST)]
    return [(replacements or {}).get(arg, arg) for arg in args] + list(extra)


@pytest.mark.parametrize("args", [
    pytest.param(_with({KEY_URI: "kbs:///default/ngc-api-key/api-key"}), id="another-key-resource"),
    pytest.param(_with({MANIFEST: "3d" * 32}), id="another-manifest"),
    pytest.param(_with({SOURCE: "http://caiprodmodels.blob.core.windows.net/models"}), id="plain-http-source"),
    pytest.param(_with({SOURCE: "https://x.example/models?evil=1"}), id="source-with-query"),
    pytest.param(_with({encrypted_model.MODEL_DIR: "/tmp/models"}), id="another-target"),
    pytest.param(_with(extra=["--cdh-url", "http://evil.example"]), id="an-extra-option"),
    pytest.param(_with()[:-1], id="the-last-argument-dropped"),
    pytest.param(_with({KEY_URI: "https://key.example/key.bin"}), id="a-pinned-argument-as-a-url"),
    pytest.param(_with({"/opt/app-root/bin/python3": "python3"}), id="interpreter-from-PATH"),
    pytest.param(["/opt/app-root/bin/python3", "-c", "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8006/cdh/resource/default/model-decryption/key.bin').read())"], id="python-c"),
    pytest.param(["/bin/sh", "-c", "curl http://127.0.0.1:8006/cdh/resource/default/model-decryption/key.bin"], id="shell"),
])
def test_any_other_process_in_the_decryptor_image_is_refused(policy, args):
    assert not allows(policy, "CreateContainerRequest", decryptor_request(args=args))


@pytest.mark.parametrize("env", ["LD_PRELOAD=/var/run/secrets/kubernetes.io/serviceaccount/evil.so", "LD_LIBRARY_PATH=/mnt/models",
                                 "OPENSSL_CONF=/var/run/secrets/kubernetes.io/serviceaccount/openssl.cnf", "GCONV_PATH=/mnt/models"])
def test_environment_that_loads_code_is_refused(policy, env):
    assert not allows(policy, "CreateContainerRequest", decryptor_request(env=[env]))


@pytest.mark.parametrize("destination", ["/opt/app-root/lib/python3.12/site-packages/model_crypto", "/opt", "/", "/usr/lib64",
                                         "/etc/ld.so.preload", "/etc"])
def test_a_volume_over_the_decryptors_code_is_refused(policy, destination):
    mount = {**fixture("container")["OCI"]["Mounts"][-1], "destination": destination}
    mount["source"] = mount["source"].replace("serviceaccount", destination.rsplit("/", 1)[-1] or "root")
    assert not allows(policy, "CreateContainerRequest", decryptor_request(mounts=[mount]))


@pytest.mark.parametrize("image", [
    pytest.param("ghcr.io/example/model-decryptor@sha256:" + "34" * 32, id="other-digest"),
    pytest.param("ghcr.io/example/model-decryptor:latest", id="by-tag"),
    pytest.param(IMAGE, id="the-workload-image-with-the-decryptor-process"),
])
def test_the_decryptor_process_needs_the_decryptor_image(policy, image):
    """The pinned process is no pass for another image. The workload image keeps its own rule (issue 11): it
    was allowed here while that rule took any mounts; now the decryptor's volumes are not the workload's."""
    request = decryptor_request(image=image)
    assert not allows(policy, "CreateContainerRequest", request)
    refusals = policy.refusals(request)
    if image == IMAGE:
        assert refusals and all(field.startswith(("OCI.Mounts[", "OCI.Process.Env[")) for field in refusals), refusals
    else:
        assert "storages[image_guest_pull].source" in refusals


def test_a_workload_without_an_encrypted_model_never_runs_the_decryptor():
    assert not allows(workload_policy(decryptor=None), "CreateContainerRequest", decryptor_request())
