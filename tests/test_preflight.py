"""Preflight against recorded Azure responses (documented shapes, as SDK models) and a local TLS server."""

from __future__ import annotations

import datetime
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.identity import CredentialUnavailableError
from azure.mgmt.compute.models import (
    CommunityGalleryImage,
    CommunityGalleryImageVersion,
    GalleryImage,
    GalleryImageVersion,
    ResourceSku,
    Usage,
)
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.redhatopenshift import AzureRedHatOpenShiftClient
from azure.mgmt.resource.resources.models import Provider
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import io

import requests
from urllib3.response import HTTPResponse

from scripts import preflight
from stacks import versions
from scripts.preflight import AzureClients, CannotRun, Result, kbs_tls, live_clients, load_config, main, run_checks, token_problem

RECORDED = Path(__file__).parent / "fixtures" / "azure"


def recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


class Recorded:
    """Compute and resource clients answering from recorded REST bodies, editable per test."""

    def __init__(self) -> None:
        self.bodies = {name: recorded(name) for name in ("resource_skus", "usages", "providers", "gallery_image", "gallery_image_version", "community_gallery_image", "community_gallery_image_version")}
        self.bodies["aro_versions"] = recorded("aro_versions")["response"]["body"]
        self.missing: set[str] = set()
        self.failing: dict[str, HttpResponseError] = {}
        self.requests: list[tuple[str, tuple[Any, ...]]] = []

    def _answer(self, name: str, model: type, *args: Any) -> Any:
        self.requests.append((name, args))
        if name in self.failing:
            raise self.failing[name]
        if name in self.missing:
            raise ResourceNotFoundError(f"The Resource '{args[-1]}' was not found.")
        return model(self.bodies[name])

    def _skus(self, filter: str) -> list[ResourceSku]:  # noqa: A002 (the SDK's keyword)
        region = re.fullmatch(r"location eq '(\w+)'", filter)[1]  # type: ignore[index]
        self.requests.append(("resource_skus", (filter,)))
        if "resource_skus" in self.failing:
            raise self.failing["resource_skus"]
        return [ResourceSku(s) for s in self.bodies["resource_skus"]["value"] if region in s["locations"]]

    def clients(self, config: Any = None) -> AzureClients:
        compute = SimpleNamespace(
            resource_skus=SimpleNamespace(list=self._skus),
            usage=SimpleNamespace(list=lambda location: [Usage(u) for u in self.bodies["usages"]["value"]]),
            gallery_images=SimpleNamespace(get=lambda *a: self._answer("gallery_image", GalleryImage, *a)),
            gallery_image_versions=SimpleNamespace(get=lambda *a, expand=None: self._answer("gallery_image_version", GalleryImageVersion, *a)),
            community_gallery_images=SimpleNamespace(get=lambda *a: self._answer("community_gallery_image", CommunityGalleryImage, *a)),
            community_gallery_image_versions=SimpleNamespace(get=lambda *a: self._answer("community_gallery_image_version", CommunityGalleryImageVersion, *a)),
        )
        providers = {p["namespace"]: p for p in self.bodies["providers"]["value"]}
        resources = SimpleNamespace(providers=SimpleNamespace(get=lambda namespace: Provider(providers[namespace])))
        # The real SDK client, its HTTP answered from the recorded `az aro get-versions` interaction.
        openshift = AzureRedHatOpenShiftClient(_Token(), "00000000-0000-0000-0000-000000000000", transport=RequestsTransport(session=_Replay(self), session_owner=False))
        return AzureClients(compute, resources, openshift)


    def sku(self, name: str) -> dict[str, Any]:
        return next(s for s in self.bodies["resource_skus"]["value"] if s["name"] == name and "eastus2" in s["locations"])

    def usage(self, name: str) -> dict[str, Any]:
        return next(u for u in self.bodies["usages"]["value"] if u["name"]["value"] == name)


class _Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("recorded", 4102444800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        return AccessTokenInfo("recorded", 4102444800)


class _Replay(requests.Session):
    """Answers the ARO versions request with the recorded body (for whatever region is asked)."""

    def __init__(self, recorded: Recorded):
        super().__init__()
        self.recorded = recorded

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.recorded.requests.append(("aro_versions", (method, url)))
        data = json.dumps(self.recorded.bodies["aro_versions"]).encode()
        response = requests.Response()
        response.status_code, response.url = 200, url
        response.headers["content-type"] = "application/json"
        response.raw = HTTPResponse(body=io.BytesIO(data), status=200, headers={"content-type": "application/json"}, preload_content=False)
        response.request = requests.Request(method, url).prepare()
        return response


# --- A local KBS stand-in: TLS on 127.0.0.1, certificate from a CA made here ---------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool, san: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def kbs(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A TLS server for `localhost` signed by a test CA; serves handshakes until the module ends."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test KBS CA", ca_key, "test KBS CA", ca_key, ca=True)
    san: list[x509.GeneralName] = [x509.DNSName("localhost")]
    leaf = _certificate("localhost", leaf_key, "test KBS CA", ca_key, ca=False, san=san)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _certificate("another CA", other_key, "another CA", other_key, ca=True)
    files = tmp_path_factory.mktemp("kbs")
    (files / "cert.pem").write_text(_pem(leaf))
    (files / "key.pem").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files / "cert.pem", files / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(2)
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    yield SimpleNamespace(port=port, ca=_pem(ca), other_ca=_pem(other_ca), url=f"https://localhost:{port}")
    stop.set()
    thread.join(timeout=5)
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Azure checks ------------------------------------------------------------------------------


@pytest.fixture
def azure() -> Recorded:
    return Recorded()


@pytest.fixture(scope="module")
def dev_config():
    return load_config("dev")


def results_by_check(results: list[Result]) -> dict[str, Result]:
    return {r.check: r for r in results}


def failures(config, azure: Recorded, trusted: Any = None) -> list[Result]:
    trusted = trusted if trusted is not None else "not under test"
    return [r for r in run_checks(config, azure.clients(), trusted) if not r.ok and r.check != "KBS answers TLS with the trusted CA"]


def test_recorded_dev_environment_passes_every_azure_check(dev_config, azure):
    results = results_by_check(run_checks(dev_config, azure.clients(), "not under test"))
    assert [c for c, r in results.items() if not r.ok] == ["KBS answers TLS with the trusted CA"]
    assert results["Standard_NCC40ads_H100_v5 offered in eastus2"].detail == "40 vCPUs, family StandardNCCads2023Family"
    assert results["quota for 2 GPU pod VMs"].detail == "80 vCPUs of StandardNCCads2023Family, 80 vCPUs of cores"
    # 3 x D8s_v5 masters + 3 x D4s_v5 workers, plus the 8-vCPU bootstrap machine regionally.
    assert results["quota for the ARO control plane and workers"].detail == "36 vCPUs of standardDSv5Family, 44 vCPUs of cores"
    assert results["Microsoft.RedHatOpenShift provider registered"].ok
    assert results["pod VM image 1.0.0 available in eastus2"].detail == "replicated to East US 2, West Europe, confidential-ai-gpu=h100-cc"
    assert ("gallery_image_version", ("confidential-ai-dev", "PodVMGallery", "podvm-image", "1.0.0")) in azure.requests
    assert ("resource_skus", ("location eq 'eastus2'",)) in azure.requests


def test_aro_version_read_live_with_the_sdk_request_az_aro_get_versions_makes(dev_config, azure):
    result = results_by_check(run_checks(dev_config, azure.clients(), "not under test"))["ARO 4.20.15 offered in eastus2"]
    assert (result.ok, result.detail) == (True, "offered (4.18.26, 4.18.34, 4.19.20, 4.19.24, 4.20.15)")
    recorded_uri = recorded("aro_versions")["request"]["uri"]
    assert ("aro_versions", ("GET", recorded_uri.replace("/locations/eastus/", "/locations/eastus2/"))) in azure.requests


def test_offline_aro_table_is_the_recorded_list():
    live = [v["properties"]["version"] for v in recorded("aro_versions")["response"]["body"]["value"]]
    assert list(versions.ARO_INSTALL_VERSIONS) == sorted(live, key=versions.parse)


def test_aro_version_no_longer_offered(dev_config, azure):
    azure.bodies["aro_versions"]["value"] = [v for v in azure.bodies["aro_versions"]["value"] if v["name"] != "4.20.15"]
    assert [(r.check, r.detail, r.fix) for r in failures(dev_config, azure)] == [
        ("ARO 4.20.15 offered in eastus2", "offered: 4.18.26, 4.18.34, 4.19.20, 4.19.24", "set cluster.aro.version to an offered version (add it to ARO_INSTALL_VERSIONS)")
    ]


def test_aro_versions_newer_than_the_table_are_named(dev_config, azure):
    azure.bodies["aro_versions"]["value"].append({"name": "4.21.3", "properties": {"version": "4.21.3"}})
    result = results_by_check(run_checks(dev_config, azure.clients(), "x"))["ARO 4.20.15 offered in eastus2"]
    assert result.ok and result.detail.endswith("; stacks/versions.py ARO_INSTALL_VERSIONS lacks 4.21.3")


def test_gpu_size_not_offered(dev_config, azure):
    azure.bodies["resource_skus"]["value"] = [s for s in azure.bodies["resource_skus"]["value"] if s["name"] != "Standard_NCC40ads_H100_v5"]
    assert [(r.check, r.detail) for r in failures(dev_config, azure)] == [
        ("Standard_NCC40ads_H100_v5 offered in eastus2", "not offered in this region"),
        ("quota for 2 GPU pod VMs", "Standard_NCC40ads_H100_v5 is not offered here, so it has no quota"),
    ]


def test_gpu_size_restricted_for_the_subscription(dev_config, azure):
    azure.sku("Standard_NCC40ads_H100_v5")["restrictions"] = [
        {"type": "Location", "values": ["eastus2"], "restrictionInfo": {"locations": ["eastus2"]}, "reasonCode": "NotAvailableForSubscription"}
    ]
    (failed,) = failures(dev_config, azure)
    assert (failed.check, failed.detail) == ("Standard_NCC40ads_H100_v5 offered in eastus2", "restricted for this subscription (NotAvailableForSubscription)")
    assert "request access" in failed.fix


def test_zone_restriction_alone_does_not_fail(dev_config, azure):
    azure.sku("Standard_NCC40ads_H100_v5")["restrictions"] = [
        {"type": "Zone", "values": ["eastus2"], "restrictionInfo": {"locations": ["eastus2"], "zones": ["1"]}, "reasonCode": "NotAvailableForSubscription"}
    ]
    assert failures(dev_config, azure) == []


def test_gpu_quota_short(dev_config, azure):
    azure.usage("StandardNCCads2023Family")["currentValue"] = 120
    (failed,) = failures(dev_config, azure)
    assert failed.check == "quota for 2 GPU pod VMs"
    assert failed.detail == "Standard NCCads2023 Family vCPUs: 40 of 160 vCPUs free, 80 needed"
    assert failed.fix == "request a vCPU quota increase in eastus2: StandardNCCads2023Family >= 200, cores >= 100"


def test_aro_quota_short(dev_config, azure):
    azure.usage("standardDSv5Family")["limit"] = 40
    (failed,) = failures(dev_config, azure)
    assert (failed.check, failed.detail) == ("quota for the ARO control plane and workers", "Standard DSv5 Family vCPUs: 32 of 40 vCPUs free, 36 needed")


def test_regional_vcpu_quota_short(dev_config, azure):
    azure.usage("cores")["limit"] = 60
    assert {(r.check, r.detail) for r in failures(dev_config, azure)} == {
        ("quota for 2 GPU pod VMs", "Total Regional vCPUs: 40 of 60 vCPUs free, 80 needed"),
        ("quota for the ARO control plane and workers", "Total Regional vCPUs: 40 of 60 vCPUs free, 44 needed"),
    }


def test_provider_not_registered(dev_config, azure):
    azure.bodies["providers"]["value"][2]["registrationState"] = "NotRegistered"
    (failed,) = failures(dev_config, azure)
    assert (failed.check, failed.detail, failed.fix) == (
        "Microsoft.RedHatOpenShift provider registered",
        "registration state is NotRegistered",
        "az provider register --namespace Microsoft.RedHatOpenShift --wait",
    )


def test_image_version_missing(dev_config, azure):
    azure.missing.add("gallery_image_version")
    (failed,) = failures(dev_config, azure)
    assert (failed.check, failed.detail) == ("pod VM image 1.0.0 available in eastus2", "image version does not exist")


def test_image_not_replicated_to_region(dev_config, azure):
    azure.bodies["gallery_image_version"]["properties"]["publishingProfile"]["targetRegions"] = [{"name": "West Europe", "regionalReplicaCount": 1}]
    (failed,) = failures(dev_config, azure)
    assert (failed.check, failed.detail) == ("pod VM image 1.0.0 available in eastus2", "replicated only to West Europe")
    assert "targetRegions name=eastus2" in failed.fix


def test_image_definition_not_confidential(dev_config, azure):
    azure.bodies["gallery_image"]["properties"].update(hyperVGeneration="V1", features=[])
    (failed,) = failures(dev_config, azure)
    assert failed.check == "pod VM image definition is confidential Gen2"
    assert failed.detail == "hyperVGeneration is V1, confidential VMs need V2; SecurityType feature is None, need ConfidentialVmSupported"


def test_azure_refusal_is_one_line(dev_config, azure):
    azure.failing["resource_skus"] = HttpResponseError(message="The client does not have authorization to perform action 'Microsoft.Compute/skus/read'.")
    (failed,) = failures(dev_config, azure)
    assert failed.check == "read VM sizes and quotas"
    assert failed.detail.startswith("Azure answered ") and "Microsoft.Compute/skus/read" in failed.detail


def test_community_image_checked_in_the_region(azure):
    prod = load_config("prod")
    assert failures(prod, azure) == []
    assert ("community_gallery_image_version", ("westeurope", "ocp-podvm-gpu-5f2c9a7e-3b1d-4e8a-a6c4-0d2e7f9b1c35", "podvm-gpu", "1.2.0")) in azure.requests
    assert not any(r.check.startswith("quota for the ARO") or "RedHatOpenShift" in r.check for r in run_checks(prod, azure.clients(), "x"))
    azure.missing.add("community_gallery_image_version")
    (failed,) = failures(prod, azure)
    assert (failed.check, failed.detail) == ("pod VM image 1.2.0 available in westeurope", "not published to this region (or does not exist)")


# --- KBS TLS -----------------------------------------------------------------------------------


def test_kbs_answers_with_the_trusted_ca(kbs):
    result = kbs_tls({"kbsUrl": kbs.url, "kbsCaCert": kbs.ca})
    assert result.ok, result.detail
    assert result.detail.startswith(f"localhost:{kbs.port} TLSv1.")


def test_kbs_certificate_from_another_ca(kbs):
    result = kbs_tls({"kbsUrl": kbs.url, "kbsCaCert": kbs.other_ca})
    assert not result.ok
    assert result.detail == f"localhost:{kbs.port}: unable to get local issuer certificate"


def test_kbs_certificate_for_another_hostname(kbs):
    result = kbs_tls({"kbsUrl": f"https://127.0.0.1:{kbs.port}", "kbsCaCert": kbs.ca})  # the certificate names only localhost
    assert not result.ok
    assert result.detail.startswith(f"127.0.0.1:{kbs.port}: IP address mismatch")


def test_kbs_unreachable():
    port = free_port()
    result = kbs_tls({"kbsUrl": f"https://localhost:{port}", "kbsCaCert": _self_signed()}, timeout=2)
    assert not result.ok and "refused" in result.detail.lower()


def test_trusted_outputs_without_ca():
    result = kbs_tls({"kbsUrl": "https://kbs.trusted-dev.example.com"})
    assert (result.ok, result.detail) == (False, "the trusted stack outputs have no kbsCaCert")


def _self_signed() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return _pem(_certificate("x", key, "x", key, ca=True))


# --- The command ------------------------------------------------------------------------------


def test_preflight_command_prints_a_table_and_exits_by_result(kbs, azure, tmp_path, capsys):
    trusted = tmp_path / "outputs.json"
    trusted.write_text(json.dumps({"kbsUrl": kbs.url, "kbsCaCert": kbs.ca}))
    assert main(["dev", "--trusted-outputs", str(trusted)], clients=azure.clients) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["check", "result", "how", "to", "fix"]
    assert "KBS answers TLS with the trusted CA" in out
    assert out.rstrip().endswith(" passed, 0 failed")

    azure.usage("StandardNCCads2023Family")["limit"] = 0
    assert main(["dev", "--trusted-outputs", str(trusted)], clients=azure.clients) == 1
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if "FAIL" in line]
    assert line.startswith("quota for 2 GPU pod VMs") and "request a vCPU quota increase in eastus2" in line


def test_preflight_reads_the_offline_plan_outputs(azure, tmp_path, capsys):
    trusted = tmp_path / "outputs.json"
    trusted.write_text(json.dumps({"kbsUrl": "https://kbs.trusted-dev.example.com"}))
    assert main(["dev", "--trusted-outputs", str(trusted)], clients=azure.clients) == 1
    assert "FAIL: the trusted stack outputs have no kbsCaCert" in capsys.readouterr().out


def test_no_credentials_is_one_line(capsys):
    class NoCredential:
        def get_token(self, *scopes: str) -> None:
            raise CredentialUnavailableError("DefaultAzureCredential failed to retrieve a token")

    with pytest.raises(CannotRun):
        live_clients(load_config("dev"), NoCredential())
    assert main(["dev"], clients=lambda config: live_clients(config, NoCredential())) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dev-cloud: no Azure credentials: run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (DefaultAzureCredential found none)"
    ]
    assert issubclass(CredentialUnavailableError, ClientAuthenticationError)


def test_bad_config_exits_2_with_the_key(tmp_path, capsys):
    import shutil

    from scripts.offline.stackfile import STACKS_DIR

    stacks = tmp_path / "stacks"
    shutil.copytree(STACKS_DIR, stacks, ignore=shutil.ignore_patterns("*.py", "__pycache__", "config"))
    cloud = stacks / "Pulumi.dev-cloud.yaml"
    cloud.write_text(cloud.read_text().replace("versions/1.0.0", "versions/latest"))
    assert main(["dev", "--stacks-dir", str(stacks)], clients=lambda c: pytest.fail("no Azure call on bad config")) == 2
    assert capsys.readouterr().err.startswith("dev-cloud: peerPods.imageId: ")


def _pulumi_answers(monkeypatch, answer) -> None:
    def run(command, **_):
        assert command[:4] == ["pulumi", "stack", "output", "--json"]
        if isinstance(answer, BaseException):
            raise answer
        return subprocess.CompletedProcess(command, answer[0], stdout=answer[1], stderr=answer[2])

    monkeypatch.setattr(preflight.subprocess, "run", run)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (FileNotFoundError(), "pulumi CLI not found to read the trusted stack outputs"),
        (subprocess.TimeoutExpired("pulumi", 120), "pulumi stack output -s organization/confidential-ai/dev-trusted did not answer within 120 s"),
        ((255, "", "error: no stack named 'dev-trusted' found\n"), "pulumi stack output -s organization/confidential-ai/dev-trusted failed: error: no stack named 'dev-trusted' found"),
        ((0, "warning: upgrade available\n", ""), "pulumi stack output -s organization/confidential-ai/dev-trusted printed no JSON"),
        ((0, "[]", ""), "pulumi stack output -s organization/confidential-ai/dev-trusted printed no JSON object of outputs"),
        ((0, '{"kbsUrl": "https://kbs.example.com"}', ""), {"kbsUrl": "https://kbs.example.com"}),
    ],
)
def test_trusted_outputs_from_the_cli_fail_as_one_line(monkeypatch, answer, expected):
    _pulumi_answers(monkeypatch, answer)
    assert preflight.trusted_outputs(load_config("dev")) == expected


# --- GPU pod VM image: built for H100 confidential computing -------------------------------------


@pytest.mark.parametrize("tags, detail", [
    ({"env": "dev"}, "no confidential-ai-gpu tag: a GPU model needs an image built for H100 confidential computing"),
    ({"confidential-ai-gpu": "none"}, "tagged confidential-ai-gpu=none: a GPU model needs an image built for H100 confidential computing"),
])
def test_a_gpu_model_needs_an_image_version_tagged_for_h100_cc(dev_config, azure, tags, detail):
    azure.bodies["gallery_image_version"]["tags"] = tags
    (failed,) = failures(dev_config, azure)
    assert (failed.check, failed.detail) == ("pod VM image 1.0.0 available in eastus2", detail)
    assert failed.fix == "publish a version with the CC-mode NVIDIA driver and a CDI spec, tagged confidential-ai-gpu=h100-cc (docs/azure.md)"


def test_a_community_gpu_image_is_checked_by_its_artifact_tags(azure):
    prod = load_config("prod")
    del azure.bodies["community_gallery_image_version"]["properties"]["artifactTags"]
    (failed,) = failures(prod, azure)
    assert failed.detail == "no confidential-ai-gpu tag: a GPU model needs an image built for H100 confidential computing"


def test_without_gpu_models_the_tag_is_not_asked_for(dev_config, azure):
    cpu_only = dev_config.model_copy(update={"models": [m for m in dev_config.models if m.machine_type != "Standard_NCC40ads_H100_v5"]})
    azure.bodies["gallery_image_version"]["tags"] = {}
    assert failures(cpu_only, azure) == []


# --- Telling credential failures apart, against real HTTPS on 127.0.0.1 ----------------------------------------


@pytest.fixture(scope="module")
def sign_in_service(tmp_path_factory):
    """A stand-in for Azure's sign-in service (Microsoft Entra ID) over real TLS: it publishes its OpenID
    configuration and refuses every client secret as Entra ID does (HTTP 401, `invalid_client`, AADSTS7000215;
    the shape MSAL reads, learn.microsoft.com entra identity-platform reference-error-codes)."""
    from http.server import ThreadingHTTPServer

    from tests.tls_fixtures import JsonHandler, ca, server_certificate

    authority = ca("sign-in-ca", "Sign-in test CA")
    cert, key = server_certificate("sign-in", authority, ["localhost"])
    directory = tmp_path_factory.mktemp("sign-in")
    (directory / "ca.pem").write_text(authority[0])
    (directory / "cert.pem").write_text(cert + key)

    class SignIn(JsonHandler):

        def do_GET(self):  # noqa: N802
            base = f"https://localhost:{self.server.server_port}/{TENANT}"
            self.send_json(200, {"issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                             "token_endpoint": f"{base}/oauth2/v2.0/token"})

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_json(401, {"error": "invalid_client", "error_codes": [7000215],
                             "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value."})

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SignIn)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"https://localhost:{httpd.server_port}", str(directory / "ca.pem")
    httpd.shutdown()


TENANT = "9a7b6c5d-4e3f-4a1b-8c2d-0e1f2a3b4c5d"


def _secret_credential(authority: str, ca_file: str | bool = True):
    from azure.identity import ChainedTokenCredential, ClientSecretCredential, EnvironmentCredential

    # An unconfigured EnvironmentCredential first, as in DefaultAzureCredential: it is skipped, not reported.
    secret = ClientSecretCredential(TENANT, "4f6a8c2e-1d3b-4e5f-9a7c-2b4d6e8f0a13", "not-the-secret", authority=authority,
                                    disable_instance_discovery=True, connection_verify=ca_file, retry_total=0)
    return ChainedTokenCredential(EnvironmentCredential(), secret)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_refused_credentials_are_told_apart_from_missing_ones(sign_in_service, monkeypatch):
    for variable in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME"):
        monkeypatch.delenv(variable, raising=False)
    authority, ca_file = sign_in_service
    problem = token_problem(_secret_credential(authority, ca_file))
    assert problem.startswith("Azure refused the credentials of ClientSecretCredential: ")
    assert "AADSTS7000215" in problem and "\n" not in problem


def test_an_unreachable_sign_in_service_is_a_network_failure_not_missing_credentials(monkeypatch):
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    problem = token_problem(_secret_credential(f"https://localhost:{_closed_port()}"))
    assert problem.startswith("cannot reach Azure's sign-in service (ClientSecretCredential: ")
    assert "check the network, DNS or HTTPS_PROXY" in problem and "\n" not in problem


def test_no_configured_credential_is_missing_credentials(monkeypatch):
    from azure.identity import ChainedTokenCredential, EnvironmentCredential

    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    assert token_problem(ChainedTokenCredential(EnvironmentCredential())).startswith("no Azure credentials: run `az login`")
