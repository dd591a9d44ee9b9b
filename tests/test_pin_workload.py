"""`scripts.pin_workload` against a real OCI registry on 127.0.0.1 (tests/oci_registry.py): what a tag
resolves to, per platform, with the credentials a user has, and one clear line when it cannot."""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.offline.stackfile import STACKS_DIR, read_stack_file
from scripts.pin_workload import main, pinned_values
from scripts.registry import RegistryError, credentials
from scripts.registry.image import ResolvedImage
from scripts.registry.reference import parse
from scripts.stack_file_edit import StackFileEdit
from stacks.config import load
from tests.oci_registry import MISSING, SERVICE, ISSUER, Layout, Registry, TokenService, User, htpasswd
from tests.tls_fixtures import ca, server_certificate

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (.ci/run installs them)")

AMD64 = {
    "Entrypoint": ["/opt/nvidia/nvidia_entrypoint.sh"],
    "Cmd": ["/opt/nim/start-server.sh"],
    "Env": ["PATH=/opt/nim/llm/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LD_LIBRARY_PATH=/usr/local/nvidia/lib64", "NVIDIA_VISIBLE_DEVICES=all"],
    "WorkingDir": "/opt/nim",
    "User": "1000",
}
ARM64 = {**AMD64, "Env": ["PATH=/usr/bin:/bin", "LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu"], "WorkingDir": "//srv/app/../www/"}
SINGLE = {"Cmd": ["/usr/bin/server", "--port", "8000"], "Env": ["PATH=/usr/bin:/bin"]}
PASSWORD = "s3cret-Pa55word"
TLS_CA = ca("pin-workload-registry-ca", "pin_workload test registry CA")
WORKLOAD = "llama-3-1-8b"


def _layout(tmp: Path, name: str) -> Layout:
    return Layout(tmp / "layouts" / name)


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory):
    """An anonymous registry with a two-platform index, single OCI and docker schema 2 images, an arm64-only
    image and one with no process."""
    tmp = tmp_path_factory.mktemp("open-registry")
    registry = Registry(tmp / "registry")
    try:
        multi = _layout(tmp, "multi")
        index = multi.index([multi.image("linux", "amd64", AMD64), multi.image("linux", "arm64", ARM64)])
        registry.push(multi.write(index, "1.0"), "nim/llm", "1.0", "--all", "--preserve-digests")
        single = _layout(tmp, "single")
        registry.push(single.write(single.image("linux", "amd64", SINGLE), "2.0"), "tools/server", "2.0", "--preserve-digests")
        registry.push(single.write(single.image("linux", "amd64", SINGLE), "2.0"), "tools/server", "docker", "--format", "v2s2")
        arm = _layout(tmp, "arm")
        registry.push(arm.write(arm.image("linux", "arm64", ARM64), "1.0"), "tools/arm-only", "1.0")
        bare = _layout(tmp, "bare")
        registry.push(bare.write(bare.image("linux", "amd64", {"Env": ["PATH=/bin"]}), "1.0"), "tools/bare", "1.0")
        yield registry, index["digest"]
    finally:
        registry.close()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory):
    """Basic auth over real TLS, as a private registry serves it: `localhost:<port>`, its CA in TLS_CA."""
    tmp = tmp_path_factory.mktemp("basic-registry")
    (tmp / "registry").mkdir()
    users = htpasswd(tmp / "registry", {"reader": PASSWORD})
    certificate, key = server_certificate("pin-workload-registry", TLS_CA, ["localhost"])
    (tmp / "cert.pem").write_text(certificate)
    (tmp / "key.pem").write_text(key)
    registry = Registry(tmp / "registry", auth={"htpasswd": {"realm": "pin-workload-test", "path": str(users)}}, push_creds=f"reader:{PASSWORD}",
                        tls=(tmp / "cert.pem", tmp / "key.pem"))
    try:
        layout = _layout(tmp, "image")
        registry.push(layout.write(layout.image("linux", "amd64", SINGLE), "1.0"), "private/server", "1.0")
        yield registry
    finally:
        registry.close()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("token-registry")
    (tmp / "registry").mkdir()
    service = TokenService(tmp / "registry", {"pusher": User(PASSWORD, ("pull", "push")), "$oauthtoken": User(PASSWORD, ("pull",))})
    auth = {"token": {"realm": service.realm, "service": SERVICE, "issuer": ISSUER, "rootcertbundle": str(service.bundle)}}
    registry = Registry(tmp / "registry", auth=auth, push_creds=f"pusher:{PASSWORD}")
    try:
        multi = _layout(tmp, "multi")
        index = multi.index([multi.image("linux", "amd64", AMD64), multi.image("linux", "arm64", ARM64)])
        registry.push(multi.write(index, "1.0"), "nim/llm", "1.0", "--all", "--preserve-digests")
        yield registry, index["digest"]
    finally:
        registry.close()
        service.close()


@pytest.fixture
def no_credentials(tmp_path, monkeypatch) -> Path:
    """No credentials anywhere the tool looks but the docker config directory returned (empty); TLS trusts
    the test registry's CA only."""
    for name in ("REGISTRY_AUTH_FILE", "NGC_API_KEY", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "ca.pem").write_text(TLS_CA[0])
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    for name in ("HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(tmp_path / "empty" / name))
    docker = tmp_path / "docker"
    docker.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(docker))
    return docker


def docker_login(directory: Path, host: str, user: str, password: str, key: str | None = None) -> None:
    """What `docker login` leaves in config.json."""
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {key or host: {"auth": auth}}, "credsStore": ""}))


def pin(capsys, image: str, *extra: str, stacks: Path = STACKS_DIR, plain_http: bool = True) -> tuple[int, dict[str, Any] | None, str, str]:
    status = main([image, "--env", "dev", "--workload", WORKLOAD, "--stacks-dir", str(stacks), *(["--plain-http"] if plain_http else []), *extra])
    out, err = capsys.readouterr()
    values = yaml.safe_load(out.split("\nwrote ")[0]) if status == 0 else None
    return status, values, out, err


def test_a_multi_platform_tag_pins_the_index_digest_and_the_amd64_process(open_registry, no_credentials, capsys):
    registry, index_digest = open_registry
    status, values, out, err = pin(capsys, f"{registry.host}/nim/llm:1.0")
    assert (status, err) == (0, "")
    # The digest the tag resolves to is the index's, as skopeo reads the registry independently.
    raw = registry.inspect(f"{registry.host}/nim/llm:1.0", "--raw")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == index_digest
    assert values == {
        "image": f"{registry.host}/nim/llm@{index_digest}",
        "args": AMD64["Entrypoint"] + AMD64["Cmd"],
        "imageEnv": AMD64["Env"],
        "workingDir": "/opt/nim",
    }
    config = json.loads(registry.inspect(f"{registry.host}/nim/llm:1.0", "--config", "--override-arch", "amd64"))["config"]
    assert (config["Entrypoint"] + config["Cmd"], config["Env"], config["WorkingDir"]) == (values["args"], values["imageEnv"], values["workingDir"])
    # The user is not pinned: OpenShift assigns it.
    assert "not pinned: the image's User '1000'" in out and "user" not in {k.lower() for k in values}


def test_another_platform_pins_the_same_index_with_its_own_process(open_registry, no_credentials, capsys):
    registry, index_digest = open_registry
    status, values, _, _ = pin(capsys, f"{registry.host}/nim/llm:1.0", "--platform", "linux/arm64")
    assert status == 0
    assert values["image"].endswith(index_digest)
    # Its WorkingDir as the agent normalises it (the config's own spelling is no normal path: workingDir refuses it).
    assert (values["imageEnv"], values["workingDir"]) == (ARM64["Env"], "/srv/www")


def test_a_digest_reference_resolves_to_itself(open_registry, no_credentials, capsys):
    registry, index_digest = open_registry
    status, values, _, _ = pin(capsys, f"{registry.host}/nim/llm@{index_digest}")
    assert status == 0 and values["image"] == f"{registry.host}/nim/llm@{index_digest}"


@pytest.mark.parametrize("tag, media_type", [("2.0", "application/vnd.oci.image.manifest.v1+json"), ("docker", "application/vnd.docker.distribution.manifest.v2+json")])
def test_a_single_manifest_pins_its_own_digest(open_registry, no_credentials, capsys, tag, media_type):
    registry, _ = open_registry
    raw = registry.inspect(f"{registry.host}/tools/server:{tag}", "--raw")
    assert json.loads(raw)["mediaType"] == media_type
    status, values, _, _ = pin(capsys, f"{registry.host}/tools/server:{tag}")
    assert status == 0
    assert values == {
        "image": f"{registry.host}/tools/server@sha256:{hashlib.sha256(raw).hexdigest()}",
        "args": ["/usr/bin/server", "--port", "8000"],
        "imageEnv": ["PATH=/usr/bin:/bin"],
        "workingDir": "/",  # the image sets none: the runtimes start the process in /
    }


def test_cannot_pin_is_one_line_and_exit_2(open_registry, no_credentials, capsys):
    registry, _ = open_registry
    host = registry.host
    cases = {
        f"{host}/nim/llm:1.0 --platform linux/s390x": f"error: {host}/nim/llm:1.0 has no linux/s390x image (platforms: linux/amd64, linux/arm64); pass --platform",
        f"{host}/tools/arm-only:1.0": f"error: {host}/tools/arm-only:1.0 is a linux/arm64 image only, not linux/amd64; pin an image built for linux/amd64",
        f"{host}/nim/llm:9.9": f"error: {host}: nim/llm has no tag 9.9",
        f"{host}/nim/nothing:1.0": f"error: {host}: nim/nothing has no tag 1.0",  # distribution 2.8 says MANIFEST_UNKNOWN for both
        f"{host}/tools/bare:1.0": f"error: {host}/tools/bare:1.0 sets neither Entrypoint nor Cmd: there is no process of the image to pin",
        f"{host}/nim/llm": f"error: '{host}/nim/llm' names no tag or digest: give the release to pin, like {host}/nim/llm:1.3.3",
        # A tag and a digest: the manifest is asked for (and missing) by its digest.
        f"{host}/nim/llm:1.0@sha256:{'0' * 64}": f"error: {host}: nim/llm has no manifest sha256:{'0' * 64}",
    }
    for argv, expected in cases.items():
        image, *extra = argv.split()
        status, _, out, err = pin(capsys, image, *extra)
        assert (status, out, err) == (2, "", expected + "\n"), argv


def test_an_unreachable_registry_is_one_line(no_credentials, capsys):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: nothing answers
        status, _, _, err = pin(capsys, f"127.0.0.1:{port}/nim/llm:1.0")
    assert status == 2 and err.startswith(f"error: cannot reach 127.0.0.1:{port}: ") and err.count("\n") == 1


def test_basic_auth_uses_the_docker_login_credentials(basic_registry, no_credentials, capsys):
    registry = basic_registry
    docker_login(no_credentials, registry.host, "reader", PASSWORD)
    status, values, out, err = pin(capsys, f"{registry.host}/private/server:1.0", plain_http=False)
    assert status == 0 and values["args"] == SINGLE["Cmd"]
    assert PASSWORD not in out + err


def test_tls_is_verified_and_plain_http_is_named(basic_registry, open_registry, no_credentials, monkeypatch, capsys):
    monkeypatch.setenv("SSL_CERT_FILE", str(no_credentials / "nothing.pem"))  # the system's CAs do not know the test CA
    status, _, _, err = pin(capsys, f"{basic_registry.host}/private/server:1.0", plain_http=False)
    assert status == 2 and err.startswith(f"error: cannot reach {basic_registry.host}: ") and "CERTIFICATE_VERIFY_FAILED" in err
    status, _, _, err = pin(capsys, f"{open_registry[0].host}/nim/llm:1.0", plain_http=False)
    assert status == 2 and err.startswith(f"error: cannot reach {open_registry[0].host}: ") and err.endswith("(a registry serving plain HTTP needs --plain-http)\n")


def test_basic_auth_reads_a_containers_auth_file_by_its_url_key(basic_registry, no_credentials, tmp_path, monkeypatch, capsys):
    registry = basic_registry
    auth_file = tmp_path / "auth.json"
    docker_login(tmp_path, registry.host, "reader", PASSWORD, key=f"https://{registry.host}/v2/")
    (tmp_path / "config.json").rename(auth_file)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    status, _, _, _ = pin(capsys, f"{registry.host}/private/server:1.0", plain_http=False)
    assert status == 0


def test_a_basic_auth_registry_refuses_without_or_with_wrong_credentials(basic_registry, no_credentials, capsys):
    registry = basic_registry
    status, _, out, err = pin(capsys, f"{registry.host}/private/server:1.0", plain_http=False)
    assert (status, out) == (2, "")
    assert err == (f"error: {registry.host} requires credentials and none were found for it: `docker login {registry.host}` or "
                   f"`podman login {registry.host}` (or, for nvcr.io, set NGC_API_KEY)\n")
    docker_login(no_credentials, registry.host, "reader", "wrong-" + PASSWORD)
    status, _, out, err = pin(capsys, f"{registry.host}/private/server:1.0", plain_http=False)
    assert (status, out) == (2, "")
    assert err.startswith(f"error: {registry.host} refused the credentials from {no_credentials / 'config.json'} (auths {registry.host}) for private/server (HTTP 401)")
    assert PASSWORD not in err and err.count("\n") == 1


def test_a_token_auth_registry_issues_a_pull_token_for_the_credentials(token_registry, no_credentials, capsys):
    registry, index_digest = token_registry
    # nvcr.io's shape: the NGC key is the password of the user $oauthtoken, traded for a bearer token.
    docker_login(no_credentials, registry.host, "$oauthtoken", PASSWORD)
    status, values, out, err = pin(capsys, f"{registry.host}/nim/llm:1.0")
    assert status == 0 and values["image"] == f"{registry.host}/nim/llm@{index_digest}"
    assert values["args"] == AMD64["Entrypoint"] + AMD64["Cmd"]
    assert PASSWORD not in out + err


def test_ngc_api_key_is_traded_for_a_token_as_nvcr_io_does(token_registry, no_credentials, monkeypatch, capsys):
    registry, index_digest = token_registry
    monkeypatch.setattr(credentials, "NGC_REGISTRY", registry.host)  # this registry stands in for nvcr.io
    monkeypatch.setenv("NGC_API_KEY", PASSWORD)
    status, values, out, err = pin(capsys, f"{registry.host}/nim/llm:1.0")
    assert status == 0 and values["image"] == f"{registry.host}/nim/llm@{index_digest}"
    assert PASSWORD not in out + err
    monkeypatch.setenv("NGC_API_KEY", "nvapi-revoked")
    status, _, _, err = pin(capsys, f"{registry.host}/nim/llm:1.0")
    assert status == 2 and "refused the credentials from NGC_API_KEY for nim/llm (HTTP 401)" in err and "nvapi-revoked" not in err


def test_a_token_auth_registry_refuses_anonymous_and_wrong_credentials(token_registry, no_credentials, capsys):
    registry, _ = token_registry
    status, _, _, err = pin(capsys, f"{registry.host}/nim/llm:1.0")
    assert status == 2 and err.startswith(f"error: {registry.host} its token service 127.0.0.1:") and "refused anonymous access to nim/llm (HTTP 401)" in err
    docker_login(no_credentials, registry.host, "$oauthtoken", "wrong")
    status, _, _, err = pin(capsys, f"{registry.host}/nim/llm:1.0")
    assert status == 2 and "refused the credentials from" in err and err.count("\n") == 1


def test_write_pins_the_workload_in_the_stack_file_and_nothing_else(open_registry, no_credentials, tmp_path, capsys):
    registry, index_digest = open_registry
    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS_DIR, stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config", "models"))
    path = stacks / "Pulumi.dev-trusted.yaml"
    before = path.read_text()
    status, values, out, _ = pin(capsys, f"{registry.host}/nim/llm:1.0", "--write", stacks=stacks)
    assert status == 0 and f"wrote workloads[0].{{image, args, imageEnv, workingDir}} to {path}" in out
    after = path.read_text()
    # Comments and every other key stay; the workload's four keys hold what the registry serves.
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == [line for line in after.splitlines() if line.lstrip().startswith("#")]
    old, new = yaml.safe_load(before)["config"], yaml.safe_load(after)["config"]
    workloads = new.pop("confidential-ai:workloads")
    assert workloads[0] == {**old.pop("confidential-ai:workloads")[0], **values} and new == old
    assert values["image"] == f"{registry.host}/nim/llm@{index_digest}"
    # The stack file still loads, with the process pinned.
    stack = read_stack_file("dev-trusted", stacks)
    raw = {k.split(":", 1)[1]: json.loads(v) if v[:1] in "[{" else v for k, v in stack.config.items() if k.startswith("confidential-ai:")}
    config = load("dev-trusted", raw, [k.split(":", 1)[1] for k in stack.secret_keys])
    assert (config.workloads[0].args, config.workloads[0].image_env, config.workloads[0].working_dir) == (values["args"], values["imageEnv"], "/opt/nim")
    # Again: nothing to change.
    status, _, out, _ = pin(capsys, f"{registry.host}/nim/llm:1.0", "--write", stacks=stacks)
    assert status == 0 and "is already pinned to these values" in out and path.read_text() == after


def test_a_stack_file_that_cannot_be_written_is_one_line_and_exit_2(open_registry, no_credentials, tmp_path, monkeypatch, capsys):
    registry, _ = open_registry
    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS_DIR, stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config", "models"))

    def full_disk(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StackFileEdit, "write", full_disk)
    status, _, out, err = pin(capsys, f"{registry.host}/nim/llm:1.0", "--write", stacks=stacks)
    assert (status, err) == (2, f"error: cannot write {stacks / 'Pulumi.dev-trusted.yaml'}: No space left on device\n") and "wrote " not in out


def test_an_unknown_workload_or_stack_file_is_one_line(no_credentials, tmp_path, capsys):
    assert main(["nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3", "--env", "dev", "--workload", "gpt-9"]) == 2
    assert capsys.readouterr().err == f"error: {STACKS_DIR / 'Pulumi.dev-trusted.yaml'}: no workload named 'gpt-9' (workloads: llama-3-1-8b, mistral-7b)\n"
    assert main(["nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3", "--env", "staging", "--workload", WORKLOAD, "--stacks-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'Pulumi.staging-trusted.yaml'}: no such stack file\n"


# --- Without a registry: references and where credentials come from ---------------------------------


def test_references_are_read_as_docker_and_cri_o_read_them():
    hub = parse("busybox:1.36")
    assert (hub.registry, hub.api_host, hub.repository, hub.pinned("sha256:" + "a" * 64)) == ("docker.io", "registry-1.docker.io", "library/busybox", "busybox@sha256:" + "a" * 64)
    nim = parse("nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3")
    assert (nim.registry, nim.repository, nim.tag) == ("nvcr.io", "nim/meta/llama-3.1-8b-instruct", "1.3.3")
    local = parse("localhost:5000/team/app:v1@sha256:" + "b" * 64)
    assert (local.registry, local.repository, local.tag, local.reference) == ("localhost:5000", "team/app", "v1", "sha256:" + "b" * 64)


def test_ngc_api_key_is_the_password_of_oauthtoken_on_nvcr_only(tmp_path):
    env = {"HOME": str(tmp_path), "NGC_API_KEY": "nvapi-key"}
    found = credentials.find(parse("nvcr.io/nim/meta/llama-3.1-8b-instruct:1.3.3"), env)
    assert (found.username, found.password, found.source) == ("$oauthtoken", "nvapi-key", "NGC_API_KEY")
    assert "nvapi-key" not in repr(found)
    assert credentials.find(parse("quay.io/team/app:1"), env) is None


def test_docker_hub_credentials_are_found_under_dockers_own_key(tmp_path):
    docker_login(tmp_path, "docker.io", "me", PASSWORD, key="https://index.docker.io/v1/")
    found = credentials.find(parse("library/busybox:1.36"), {"HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path)})
    assert (found.username, found.password) == ("me", PASSWORD)


@pytest.mark.parametrize("platform", ["linux", "linux/", "linux/arm64/v8/extra"])
def test_a_platform_that_is_not_os_slash_architecture_is_a_usage_error(no_credentials, capsys, platform):
    # 127.0.0.1:9: were the platform taken, the tool would fail at once to reach a registry, not as a usage error.
    with pytest.raises(SystemExit) as exit_:
        main(["127.0.0.1:9/nim/llm:1.0", "--env", "dev", "--workload", WORKLOAD, "--platform", platform])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"python -m scripts.pin_workload: error: argument --platform: {platform!r} is not a platform like "
                                       "linux/amd64 or linux/arm64/v8 (see --help)\n")


@pytest.mark.parametrize("working_dir", ["opt/nim", ["/opt/nim"]], ids=["relative", "not-a-string"])
def test_a_working_dir_that_is_no_absolute_path_is_refused(working_dir):
    image = parse("127.0.0.1:5000/nim/llm:1.0")
    resolved = ResolvedImage("sha256:" + "a" * 64, "sha256:" + "a" * 64, {"Cmd": ["/opt/nim/start-server.sh"], "WorkingDir": working_dir})
    with pytest.raises(RegistryError, match=re.escape(f"127.0.0.1:5000/nim/llm:1.0: its WorkingDir {working_dir!r} is not an absolute path")):
        pinned_values(image, resolved)


@pytest.mark.parametrize(("reference", "reason"), [
    ("127.0.0.1:5000/nim/llm@sha256:ABC", "the digest must be sha256:<64 lowercase hex>"),
    ("127.0.0.1:5000/nim/llm:-rc1", "'-rc1' is not a tag"),
    ("registry_1.example.com/nim/llm:1.0", "'registry_1.example.com' is not a registry host"),
    ("127.0.0.1:5000/NIM/llm:1.0", "'NIM/llm' is not a repository name"),
])
def test_a_reference_docker_would_refuse_is_refused(reference, reason):
    with pytest.raises(RegistryError, match=re.escape(f"{reference!r}: {reason}")):
        parse(reference)


@pytest.mark.parametrize(("auths", "reason"), [
    ("{not json", "cannot read registry credentials from {path}: JSONDecodeError"),
    ({"auth": "not base64!"}, "{path} (auths quay.io): 'auth' is not base64 of user:password"),
    ({"auth": base64.b64encode(b"reader").decode()}, "{path} (auths quay.io): 'auth' is not base64 of user:password"),  # no ':'
    ({"auth": base64.b64encode(b":" + PASSWORD.encode()).decode()}, "{path} (auths quay.io): 'auth' is not base64 of user:password"),  # no user
], ids=["not-json", "not-base64", "no-separator", "no-user"])
def test_credentials_that_cannot_be_read_are_one_line_without_the_secret(tmp_path, auths, reason):
    path = tmp_path / "config.json"
    path.write_text(auths if isinstance(auths, str) else json.dumps({"auths": {"quay.io": auths}}))
    with pytest.raises(RegistryError) as err:
        credentials.find(parse("quay.io/team/app:1"), {"HOME": str(tmp_path / "home"), "DOCKER_CONFIG": str(tmp_path)})
    assert str(err.value) == reason.format(path=path) and PASSWORD not in str(err.value)
