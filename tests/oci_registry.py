"""A real OCI registry on 127.0.0.1 for tests: Debian's docker-registry (github.com/distribution/distribution
2.8) started on a free port, with no auth, htpasswd Basic auth, or token auth backed by a token service run
here (distribution docs/spec/auth/token.md and jwt.md: an ES256 JWT whose `x5c` chains to the registry's
`rootcertbundle`, with `iss`, `aud` = the service, `exp`/`nbf`/`iat`, and `access` claims). Images are OCI
layouts built here and pushed with skopeo."""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from scripts.registry.image import OCI_INDEX, OCI_MANIFEST

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
HTPASSWD = shutil.which("htpasswd")
MISSING = [name for name, path in (("docker-registry", REGISTRY), ("skopeo", SKOPEO), ("htpasswd (apache2-utils)", HTPASSWD)) if not path]
START_SECONDS = 20.0
SERVICE = "pin-workload-test-registry"
ISSUER = "pin-workload-test-token-service"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- OCI layouts -------------------------------------------------------------------------------


@dataclass
class Layout:
    """An OCI image layout (image-spec image-layout.md) with one tagged image or index."""

    path: Path
    blobs: dict[str, bytes] = field(default_factory=dict)

    def add(self, media_type: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, os_: str, architecture: str, config: dict[str, Any]) -> dict[str, Any]:
        """A one-layer image for the platform; its manifest's descriptor."""
        tar = io.BytesIO()
        with tarfile.open(fileobj=tar, mode="w", format=tarfile.PAX_FORMAT) as archive:
            data = f"{os_}/{architecture}\n".encode()
            info = tarfile.TarInfo("etc/platform")
            info.size, info.mtime = len(data), 0
            archive.addfile(info, io.BytesIO(data))
        layer = self.add("application/vnd.oci.image.layer.v1.tar+gzip", gzip.compress(tar.getvalue(), mtime=0))
        image_config = {
            "architecture": architecture, "os": os_, "config": config,
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]},
        }
        config_descriptor = self.add("application/vnd.oci.image.config.v1+json", _json(image_config))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config_descriptor, "layers": [layer]}
        return {**self.add(OCI_MANIFEST, _json(manifest)), "platform": {"architecture": architecture, "os": os_}}

    def index(self, manifests: list[dict[str, Any]]) -> dict[str, Any]:
        return self.add(OCI_INDEX, _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}))

    def write(self, top: dict[str, Any], tag: str) -> str:
        """Write the layout with `top` tagged `tag`; its skopeo source name."""
        blob_dir = self.path / "blobs" / "sha256"
        blob_dir.mkdir(parents=True, exist_ok=True)
        for digest, data in self.blobs.items():
            (blob_dir / digest.removeprefix("sha256:")).write_bytes(data)
        (self.path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        entry = {key: top[key] for key in ("mediaType", "digest", "size")} | {"annotations": {"org.opencontainers.image.ref.name": tag}}
        (self.path / "index.json").write_bytes(_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}))
        return f"oci:{self.path}:{tag}"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# --- Registry and token service ------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    password: str
    actions: tuple[str, ...]


class TokenService:
    """Issues registry tokens to known users, for the actions they may take; refuses anyone else."""

    def __init__(self, workdir: Path, users: dict[str, User]) -> None:
        self.users = users
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        self.certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-ca.pem"
        self.bundle.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                status, body = service.answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, authorization: str) -> tuple[int, bytes]:
        user = None
        if authorization.startswith("Basic "):
            name, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if name in self.users and self.users[name].password == password:
                user = name
        if user is None:
            return 401, _json({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})
        query = parse_qs(urlsplit(path).query)
        access = []
        for scope in query.get("scope", []):
            kind, name, actions = scope.split(":")
            granted = [a for a in actions.split(",") if a in self.users[user].actions]
            access.append({"type": kind, "name": name, "actions": granted})
        token = self.token(user, query.get("service", [""])[0], access)
        return 200, _json({"token": token, "access_token": token, "expires_in": 300})

    def token(self, subject: str, audience: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": audience, "exp": now + 300, "nbf": now - 60, "iat": now,
                  "jti": base64.urlsafe_b64encode(os.urandom(12)).decode(), "access": access}
        signing_input = f"{_b64url(_json(header))}.{_b64url(_json(claims))}".encode()
        r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{signing_input.decode()}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Registry:
    """docker-registry on 127.0.0.1; `auth` is its config's auth section (None: anonymous). Plain HTTP, or
    with `tls` (certificate and key PEM files for the name `localhost`) HTTPS, named `localhost:<port>`."""

    def __init__(self, workdir: Path, auth: dict[str, Any] | None = None, push_creds: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.push_creds = push_creds
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.host = f"localhost:{self.port}" if tls else self.address
        listen = {"addr": self.address, "secret": "pin-workload-test"}
        if tls:
            listen["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
            "http": listen,
            **({"auth": auth} if auth else {}),
        }
        (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        self.process = subprocess.Popen([REGISTRY, "serve", str(workdir / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        """Read its log until it says it listens (no polling of the port); keep draining it after."""
        listening = threading.Event()
        seen: list[str] = []

        def read() -> None:
            assert self.process.stderr is not None
            for raw in self.process.stderr:
                line = raw.decode(errors="replace")
                if not listening.is_set():
                    seen.append(line)
                    if f"listening on {self.address}" in line:
                        listening.set()
            listening.set()  # it exited

        threading.Thread(target=read, daemon=True).start()
        if not listening.wait(START_SECONDS) or self.process.poll() is not None:
            self.close()
            raise RuntimeError(f"docker-registry did not start: {''.join(seen[-5:])}")

    def push(self, source: str, repository: str, tag: str, *extra: str) -> str:
        """skopeo copy `source` to repository:tag here; the destination reference."""
        destination = f"{self.host}/{repository}:{tag}"
        creds = ["--dest-creds", self.push_creds] if self.push_creds else []
        subprocess.run([SKOPEO, "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", *creds, *extra, source, f"docker://{destination}"],
                       check=True, capture_output=True, timeout=60, env=_skopeo_env(self.workdir))
        return destination

    def inspect(self, reference: str, *extra: str) -> bytes:
        """skopeo inspect (the independent reading of what the registry serves)."""
        creds = ["--creds", self.push_creds] if self.push_creds else []
        return subprocess.run([SKOPEO, "--insecure-policy", "inspect", "--tls-verify=false", *creds, *extra, f"docker://{reference}"],
                              check=True, capture_output=True, timeout=60, env=_skopeo_env(self.workdir)).stdout

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _skopeo_env(workdir: Path) -> dict[str, str]:
    """skopeo with no credentials but those on its command line."""
    home = workdir / "skopeo-home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "XDG_RUNTIME_DIR": str(home), "REGISTRY_AUTH_FILE": str(home / "auth.json")}


def htpasswd(workdir: Path, users: dict[str, str]) -> Path:
    """An htpasswd file of bcrypt entries (the only kind docker-registry accepts)."""
    path = workdir / "htpasswd"
    lines = [subprocess.run([HTPASSWD, "-Bbn", name, password], check=True, capture_output=True, text=True).stdout.strip() for name, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
