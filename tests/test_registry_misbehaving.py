"""`scripts.pin_workload` against a registry that lies or misbehaves, one rule broken at a time: one line
and exit 2, never a value it did not check. Debian's docker-registry (tests/test_pin_workload.py) serves
only what it stores, so this registry is a small HTTP server on 127.0.0.1 that serves an image built
with tests/oci_registry.Layout and, per test, answers one request otherwise."""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from scripts.registry.client import MAX_MANIFEST_BYTES
from scripts.registry.image import OCI_INDEX, OCI_MANIFEST
from tests.oci_registry import Layout
from tests.test_pin_workload import SINGLE, TLS_CA, no_credentials, pin  # noqa: F401 (no_credentials: a fixture)
from tests.tls_fixtures import server_certificate

Answer = tuple[int, dict[str, str], bytes]
Script = Callable[[str, Message], Answer | None]
"""(path, request headers) -> the answer to send instead of the image's, or None for the image's own."""
OTHER = {"Cmd": ["/usr/bin/other"], "Env": ["PATH=/bin"]}


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _errors(code: str) -> bytes:
    return _json({"errors": [{"code": code, "message": code.lower().replace("_", " ")}]})


class ScriptedRegistry:
    """The distribution API for one image, `tools/app:1.0` (and `tools/other:1.0`), over HTTP or, given a
    certificate, HTTPS as `localhost`; `script` answers first."""

    def __init__(self, layout: Layout, tags: dict[str, str], tls: tuple[Path, Path] | None = None) -> None:
        self.blobs, self.tags = layout.blobs, tags
        self.script: Script | None = None
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, headers, body = (registry.script and registry.script(self.path, self.headers)) or registry.serve(self.path)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = f"localhost:{port}" if tls else f"127.0.0.1:{port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()  # a quick shutdown

    def serve(self, path: str) -> Answer:
        """The image's own answer: manifests by tag or digest, blobs by digest (also under /relocated/, a blob store)."""
        parts = path.split("?")[0].split("/")
        reference = parts[-1]
        if parts[1] == "v2" and parts[-2] == "manifests":
            reference = self.tags.get(f"{'/'.join(parts[2:-2])}:{reference}", reference)
        if reference not in self.blobs:
            return 404, {"Content-Type": "application/json"}, _errors("MANIFEST_UNKNOWN" if "manifests" in parts else "BLOB_UNKNOWN")
        body = self.blobs[reference]
        media_type = json.loads(body).get("mediaType", "application/octet-stream") if "manifests" in parts else "application/octet-stream"
        return 200, {"Content-Type": media_type, "Docker-Content-Digest": reference}, body

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Layout, dict[str, str], dict[str, Any]]:
    """The blobs of two single-platform images and their tags; the descriptors of `tools/app:1.0`."""
    layout = Layout(tmp_path_factory.mktemp("misbehaving") / "layout")
    app, other = layout.image("linux", "amd64", SINGLE), layout.image("linux", "amd64", OTHER)
    config = json.loads(layout.blobs[app["digest"]])["config"]
    return layout, {"tools/app:1.0": app["digest"], "tools/other:1.0": other["digest"]}, {"manifest": app, "config": config, "other": other}


@pytest.fixture(scope="module")
def servers(images, tmp_path_factory) -> Iterator[tuple[ScriptedRegistry, ScriptedRegistry]]:
    """(plain HTTP registry, HTTPS registry whose certificate TLS_CA issued)."""
    layout, tags, _ = images
    tmp = tmp_path_factory.mktemp("misbehaving-tls")
    certificate, key = server_certificate("misbehaving-registry", TLS_CA, ["localhost"])
    (tmp / "cert.pem").write_text(certificate)
    (tmp / "key.pem").write_text(key)
    plain, tls = ScriptedRegistry(layout, tags), ScriptedRegistry(layout, tags, tls=(tmp / "cert.pem", tmp / "key.pem"))
    try:
        yield plain, tls
    finally:
        plain.close()
        tls.close()


@pytest.fixture
def registries(servers, no_credentials) -> Iterator[tuple[ScriptedRegistry, ScriptedRegistry]]:  # noqa: F811 (the imported fixture)
    yield servers
    for server in servers:
        server.script = None


def _on(path_end: str, answer: Answer) -> Script:
    """Answer `answer` to every request whose path (without its query) ends with `path_end`."""
    return lambda path, headers: answer if path.split("?")[0].endswith(path_end) else None


def refused(capsys, image: str, *extra: str, plain_http: bool = True) -> str:
    status, _, out, err = pin(capsys, image, *extra, plain_http=plain_http)
    assert (status, out, err.count("\n")) == (2, "", 1), err
    return err.removeprefix("error: ").rstrip("\n")


def pinned(capsys, image: str, plain_http: bool = True) -> dict[str, Any]:
    status, values, _, err = pin(capsys, image, plain_http=plain_http)
    assert (status, err) == (0, ""), err
    return values


# --- What the registry serves is checked against the digest, never taken on its word -------------------


def test_a_manifest_that_is_not_the_digest_asked_for_is_refused(registries, images, capsys):
    plain, _ = registries
    layout, _, image = images
    wanted, served = image["manifest"]["digest"], layout.blobs[image["other"]["digest"]]
    plain.script = _on(f"/manifests/{wanted}", (200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": wanted}, served))  # its word is not checked
    assert refused(capsys, f"{plain.host}/tools/app@{wanted}") == (
        f"{plain.host}: the manifest served for {wanted} has digest {_sha256(served)}; refusing it")


def test_a_config_blob_that_is_not_its_digest_is_refused(registries, images, capsys):
    plain, _ = registries
    _, _, image = images
    config = image["config"]["digest"]
    swapped = json.dumps({"architecture": "amd64", "os": "linux", "config": OTHER}).encode()
    plain.script = _on(f"/blobs/{config}", (200, {"Docker-Content-Digest": config}, swapped))
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}: the blob served for {config} has digest {_sha256(swapped)}; refusing it"


@pytest.mark.parametrize("size", [MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES + 1])
def test_a_manifest_may_be_4_mib_and_no_more(registries, images, capsys, size):
    plain, _ = registries
    layout, tags, _ = images
    manifest = layout.blobs[tags["tools/app:1.0"]]
    padded = manifest + b" " * (size - len(manifest))  # JSON allows trailing whitespace: the same manifest, this many bytes
    plain.script = _on("/manifests/1.0", (200, {"Content-Type": OCI_MANIFEST}, padded))
    if size == MAX_MANIFEST_BYTES:
        assert pinned(capsys, f"{plain.host}/tools/app:1.0")["image"] == f"{plain.host}/tools/app@{_sha256(padded)}"
    else:
        assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}: a response larger than {MAX_MANIFEST_BYTES} bytes; refusing it"


# --- Answers other than the image ------------------------------------------------------------------


def test_a_server_error_is_named_with_its_status(registries, capsys):
    plain, _ = registries
    plain.script = _on("/manifests/1.0", (502, {"Content-Type": "text/html"}, b"<html>Bad Gateway</html>"))
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host} answered HTTP 502 for tools/app manifest 1.0"


def test_an_unknown_repository_is_named(registries, capsys):
    plain, _ = registries
    plain.script = _on("/manifests/1.0", (404, {"Content-Type": "application/json"}, _errors("NAME_UNKNOWN")))
    assert refused(capsys, f"{plain.host}/tools/gone:1.0") == f"{plain.host}: no repository tools/gone"


def test_a_missing_config_blob_is_named_as_the_blob_not_the_tag(registries, images, capsys):
    plain, _ = registries
    config = images[2]["config"]["digest"]
    plain.script = _on(f"/blobs/{config}", (404, {"Content-Type": "application/json"}, _errors("BLOB_UNKNOWN")))
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}: tools/app has no blob {config}"


# --- Redirects: followed to a blob store, never off HTTPS, not forever -------------------------------


def _relocate(to: str) -> Script:
    """Send every blob request to `to` + /relocated/<digest>, as a registry hands out a blob store's URL."""
    return lambda path, headers: (307, {"Location": f"{to}/relocated/{path.split('?')[0].rsplit('/', 1)[1]}"}, b"") if "/blobs/" in path else None


def test_a_plain_http_registry_may_redirect_to_another_plain_http_host(registries, capsys):
    plain, _ = registries
    plain.script = _relocate(f"http://localhost:{plain.server.server_address[1]}")
    assert pinned(capsys, f"{plain.host}/tools/app:1.0")["args"] == SINGLE["Cmd"]


def test_a_plain_http_registry_may_redirect_to_an_https_blob_store(registries, capsys):
    plain, tls = registries
    plain.script = _relocate(tls.url)
    assert pinned(capsys, f"{plain.host}/tools/app:1.0")["args"] == SINGLE["Cmd"]


def test_an_https_registry_may_not_redirect_to_plain_http(registries, capsys):
    plain, tls = registries
    tls.script = _relocate(plain.url)
    assert refused(capsys, f"{tls.host}/tools/app:1.0", plain_http=False) == f"{tls.host} redirects to {plain.url}; refusing to leave HTTPS"


def test_a_redirect_loop_ends(registries, capsys):
    plain, _ = registries
    plain.script = lambda path, headers: (302, {"Location": path}, b"") if "/blobs/" in path else None
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}: more than 5 redirects for tools/app"


# --- Authentication: only what this tool speaks, tokens only over HTTPS (or a plain-http test registry's HTTP) ---


def _challenging(challenge: str, token: str = "issued-token") -> Script:
    """Answer 401 with `challenge` to a /v2/ request without `Bearer <token>`, and `token` at /token."""

    def script(path: str, headers: Message) -> Answer | None:
        if path.startswith("/token"):
            return 200, {"Content-Type": "application/json"}, _json({"token": token})
        if headers.get("Authorization") != f"Bearer {token}":
            return 401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, _errors("UNAUTHORIZED")
        return None

    return script


def test_an_authentication_scheme_this_tool_does_not_speak_is_named(registries, capsys):
    plain, _ = registries
    plain.script = _challenging("Negotiate")
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host} asks for authentication this tool does not speak (Negotiate)"


def test_a_plain_http_registry_may_use_an_https_token_service(registries, capsys):
    plain, tls = registries
    plain.script = tls.script = _challenging(f'Bearer realm="{tls.url}/token",service="misbehaving"')
    assert pinned(capsys, f"{plain.host}/tools/app:1.0")["args"] == SINGLE["Cmd"]


def test_an_https_registry_may_not_send_credentials_to_a_plain_http_token_service(registries, capsys):
    plain, tls = registries
    tls.script = plain.script = _challenging(f'Bearer realm="{plain.url}/token"')
    assert refused(capsys, f"{tls.host}/tools/app:1.0", plain_http=False) == (
        f"{tls.host}: its token service {plain.url}/token is not https; refusing to send credentials there")


def test_a_token_service_is_http_or_https_only(registries, capsys):
    plain, _ = registries
    plain.script = _challenging('Bearer realm="file:///etc/registry-token"')
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == (
        f"{plain.host}: its token service file:///etc/registry-token is not https; refusing to send credentials there")


def test_a_token_service_error_is_named_with_its_status(registries, capsys):
    plain, _ = registries
    challenge = _challenging(f'Bearer realm="{plain.url}/token"')
    plain.script = lambda path, headers: (500, {}, b"") if path.startswith("/token") else challenge(path, headers)
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}: its token service answered HTTP 500"


@pytest.mark.parametrize("answer", [{"token": 5}, {"access_token": ""}], ids=["not-a-string", "empty"])
def test_a_token_service_answer_without_a_token_is_refused(registries, capsys, answer):
    plain, _ = registries
    challenge = _challenging(f'Bearer realm="{plain.url}/token"')
    plain.script = lambda path, headers: (200, {"Content-Type": "application/json"}, _json(answer)) if path.startswith("/token") else challenge(path, headers)
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}: its token service answered without a token"


# --- Documents that are no image ---------------------------------------------------------------------


def _manifest_is(body: bytes, media_type: str = OCI_MANIFEST) -> Script:
    return _on("/manifests/1.0", (200, {"Content-Type": media_type}, body))


@pytest.mark.parametrize(("body", "reason"), [
    (b"<html>sign in</html>", "the manifest 1.0 is not JSON"),
    (b"[]", "the manifest 1.0 is not a JSON object"),
])
def test_a_manifest_that_is_no_json_object_is_refused(registries, capsys, body, reason):
    plain, _ = registries
    plain.script = _manifest_is(body)
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == reason


def test_a_docker_schema_1_manifest_is_refused_by_its_body(registries, capsys):
    # distribution's schema 1 shape (manifest/schema1): no mediaType field, no config.
    schema1 = _json({"schemaVersion": 1, "name": "tools/app", "tag": "1.0", "architecture": "amd64", "fsLayers": [], "history": []})
    plain, _ = registries
    plain.script = _manifest_is(schema1, "application/vnd.docker.distribution.manifest.v1+prettyjws")
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == (
        "the manifest 1.0 is docker schema 1, which names no config digest; push the image as schema 2 or OCI")


def test_an_artifact_manifest_is_not_an_image(registries, capsys):
    plain, _ = registries
    media_type = "application/vnd.oci.artifact.manifest.v1+json"
    plain.script = _manifest_is(_json({"mediaType": media_type, "artifactType": "application/vnd.example.sbom", "blobs": []}))
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}/tools/app:1.0: {media_type} is not an image manifest"


@pytest.mark.parametrize("config", ["sha256:" + "0" * 64, {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha512:" + "0" * 128, "size": 2}],
                         ids=["a-string", "sha512"])
def test_a_manifest_must_name_a_sha256_config(registries, capsys, config):
    plain, _ = registries
    plain.script = _manifest_is(_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}))
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}/tools/app:1.0: its manifest names no sha256 config"


@pytest.mark.parametrize(("blob", "reason"), [(b"\x1f\x8b not json", "is not JSON"), (b"[]", "is not a JSON object")])
def test_a_config_that_is_no_json_object_is_refused(registries, capsys, blob, reason):
    plain, _ = registries
    digest = _sha256(blob)
    manifest = _json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": len(blob)}, "layers": []})
    plain.script = lambda path, headers: _manifest_is(manifest)(path, headers) or ((200, {}, blob) if path.endswith(f"/blobs/{digest}") else None)
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}/tools/app:1.0: its config {digest} {reason}"


def test_an_index_entry_must_name_a_sha256_digest(registries, capsys):
    plain, _ = registries
    entry = {"mediaType": OCI_MANIFEST, "digest": "sha512:" + "0" * 128, "size": 2, "platform": {"os": "linux", "architecture": "amd64"}}
    plain.script = _manifest_is(_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}), OCI_INDEX)
    assert refused(capsys, f"{plain.host}/tools/app:1.0") == f"{plain.host}/tools/app:1.0: its linux/amd64 entry names no sha256 digest"
