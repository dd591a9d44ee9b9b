"""HTTP to one repository of an OCI registry (distribution-spec v1.1, `/v2/<name>/manifests|blobs/<ref>`),
with the registry's own authentication challenge: none, Basic, or a Bearer token from its token service
(distribution docs/spec/auth/token.md: `WWW-Authenticate: Bearer realm=...,service=...,scope=...`)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message
from urllib.parse import urlencode, urljoin, urlsplit

from scripts.registry import RegistryError
from scripts.registry.credentials import Credentials
from scripts.registry.reference import DIGEST, ImageReference

TIMEOUT_SECONDS = 30.0
# Most a manifest may be (containerd and distribution cap manifests at 4 MiB); a config blob is small too.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 16 << 20
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^,\s]*))')


@dataclass(frozen=True)
class Fetched:
    body: bytes
    media_type: str
    digest: str
    """sha256 of the body, computed here (never taken from the registry's word)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by `Repository._get`, which drops the Authorization header when the host changes
    (blob stores hand out signed URLs and reject a second credential)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 (urllib's signature)
        return None


class Repository:
    def __init__(self, image: ImageReference, credentials: Credentials | None, plain_http: bool = False) -> None:
        self.image = image
        self.credentials = credentials
        self.plain_http = plain_http
        self._scheme = "http" if plain_http else "https"
        self._authorization: str | None = None
        self._opener = urllib.request.build_opener(_NoRedirect)

    def manifest(self, reference: str, accept: tuple[str, ...]) -> Fetched:
        """The manifest `reference` (a tag or a digest) names; a digest reference is checked against the body."""
        fetched = self._fetch(f"manifests/{reference}", ", ".join(accept), MAX_MANIFEST_BYTES, what=f"manifest {reference}")
        if DIGEST.match(reference) and fetched.digest != reference:
            raise RegistryError(f"{self._host}: the manifest served for {reference} has digest {fetched.digest}; refusing it")
        return fetched

    def blob(self, digest: str, limit: int = MAX_CONFIG_BYTES) -> Fetched:
        fetched = self._fetch(f"blobs/{digest}", "*/*", limit, what=f"blob {digest}")
        if fetched.digest != digest:
            raise RegistryError(f"{self._host}: the blob served for {digest} has digest {fetched.digest}; refusing it")
        return fetched

    @property
    def _host(self) -> str:
        return self.image.api_host

    def _fetch(self, path: str, accept: str, limit: int, what: str) -> Fetched:
        url = f"{self._scheme}://{self._host}/v2/{self.image.repository}/{path}"
        status, headers, body = self._get(url, accept, limit)
        if status == 401 and self._authorization is None:
            self._authorization = self._authenticate(headers.get("WWW-Authenticate", ""))
            status, headers, body = self._get(url, accept, limit)
        if status in (401, 403):
            raise RegistryError(self._refused(status, body))
        if status == 404:
            raise RegistryError(self._not_found(what, body))
        if status != 200:
            raise RegistryError(f"{self._host} answered HTTP {status} for {self.image.repository} {what}{_error_detail(body)}")
        media_type = (headers.get_content_type() if headers.get("Content-Type") else "") or ""
        return Fetched(body, media_type, "sha256:" + hashlib.sha256(body).hexdigest())

    def _get(self, url: str, accept: str, limit: int, redirects: int = 5) -> tuple[int, Message, bytes]:
        authorization = self._authorization
        origin = urlsplit(url).netloc
        for _ in range(redirects + 1):
            request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "confidential-ai-pin-workload"})
            if authorization:
                request.add_header("Authorization", authorization)
            status, headers, body = self._send(request, limit)
            location = headers.get("Location")
            if status not in (301, 302, 303, 307, 308) or not location:
                return status, headers, body
            url = urljoin(url, location)
            if urlsplit(url).scheme != self._scheme and urlsplit(url).scheme != "https":
                raise RegistryError(f"{self._host} redirects to {urlsplit(url).scheme}://{urlsplit(url).netloc}; refusing to leave HTTPS")
            if urlsplit(url).netloc != origin:
                authorization = None
        raise RegistryError(f"{self._host}: more than {redirects} redirects for {self.image.repository}")

    def _send(self, request: urllib.request.Request, limit: int) -> tuple[int, Message, bytes]:
        host = urlsplit(request.full_url).netloc
        try:
            with self._opener.open(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, response.headers, _read(response, limit, host)
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers, _read(err, 64 << 10, host)
        except (OSError, http.client.HTTPException) as err:  # URLError, TLS, refused, reset, timeout; a garbled answer
            reason = getattr(err, "reason", None) or err
            hint = " (a registry serving plain HTTP needs --plain-http)" if isinstance(reason, ssl.SSLError) and not self.plain_http else ""
            raise RegistryError(f"cannot reach {host}: {_one_line(reason)}{hint}") from None

    def _authenticate(self, challenge: str) -> str:
        scheme, _, rest = challenge.strip().partition(" ")
        params = {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
        if scheme.lower() == "basic":
            if self.credentials is None:
                raise RegistryError(self._no_credentials())
            return _basic(self.credentials)
        if scheme.lower() == "bearer" and params.get("realm"):
            return "Bearer " + self._token(params)
        raise RegistryError(f"{self._host} asks for authentication this tool does not speak ({scheme or 'no challenge'})")

    def _token(self, challenge: dict[str, str]) -> str:
        realm = challenge["realm"]
        if urlsplit(realm).scheme != "https" and not (self.plain_http and urlsplit(realm).scheme == "http"):
            raise RegistryError(f"{self._host}: its token service {realm} is not https; refusing to send credentials there")
        query = {"scope": challenge.get("scope") or f"repository:{self.image.repository}:pull"}
        if challenge.get("service"):
            query["service"] = challenge["service"]
        request = urllib.request.Request(f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}", headers={"User-Agent": "confidential-ai-pin-workload"})
        if self.credentials is not None:
            request.add_header("Authorization", _basic(self.credentials))
        status, _, body = self._send(request, 1 << 20)
        if status in (401, 403):
            raise RegistryError(self._refused(status, body, by=f"its token service {urlsplit(realm).netloc}"))
        if status != 200:
            raise RegistryError(f"{self._host}: its token service answered HTTP {status}{_error_detail(body)}")
        try:
            answer = json.loads(body)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"{self._host}: its token service answered without a token")
        return token

    def _no_credentials(self) -> str:
        return (
            f"{self._host} requires credentials and none were found for it: `docker login {self.image.registry}` or "
            f"`podman login {self.image.registry}` (or, for nvcr.io, set NGC_API_KEY)"
        )

    def _refused(self, status: int, body: bytes, by: str = "") -> str:
        who = f"{self._host}{' ' + by if by else ''}"
        if self.credentials is None:
            return f"{who} refused anonymous access to {self.image.repository} (HTTP {status}){_error_detail(body)}; " + self._no_credentials().split(": ", 1)[1]
        return f"{who} refused the credentials from {self.credentials.source} for {self.image.repository} (HTTP {status}){_error_detail(body)}"

    def _not_found(self, what: str, body: bytes) -> str:
        codes = _error_codes(body)
        if "NAME_UNKNOWN" in codes:
            return f"{self._host}: no repository {self.image.repository}"
        if what.startswith("manifest") and not self.image.digest:  # asked by its tag (a reference names a tag or a digest)
            return f"{self._host}: {self.image.repository} has no tag {self.image.tag}"
        return f"{self._host}: {self.image.repository} has no {what}"


def _basic(credentials: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()


def _read(response, limit: int, host: str) -> bytes:  # noqa: ANN001 (an http.client response or HTTPError)
    body = response.read(limit + 1)
    if len(body) > limit:
        raise RegistryError(f"{host}: a response larger than {limit} bytes; refusing it")
    return body


def _error_codes(body: bytes) -> list[str]:
    try:
        errors = json.loads(body).get("errors") or []
        return [str(e.get("code")) for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return []


def _error_detail(body: bytes) -> str:
    codes = _error_codes(body)
    return f" [{', '.join(codes)}]" if codes else ""


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split()) or type(reason).__name__
