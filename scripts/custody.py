"""Where a trusted stack keeps its state and what encrypts its secrets: only places on the trusted side.

The trusted stack's state holds the inference CA key, every serving key, the signing keys and the
workload secrets (encrypted by its secrets provider). Both must stay on premises, so this is an
allow-list, not a deny-list:

- backend: `file://<path>` (a directory on the trusted runner) or `s3://<bucket>?endpoint=<host>` with
  an explicit endpoint that is not a public cloud's object store (MinIO, Ceph RGW, ODF on premises);
- secrets provider: `hashivault://<transit key>` (Vault or OpenBao transit on premises) or `passphrase`
  (read from an on-premises secret store, PULUMI_CONFIG_PASSPHRASE_FILE).

Anything else is refused: `azblob://`, `gs://`, AWS S3, the Pulumi Cloud backend (no URL at all), and the
cloud KMS providers `awskms://`, `azurekeyvault://`, `gcpkms://`, or the Pulumi Cloud default provider.
CrossGuard cannot see either setting, so `scripts.up` and `scripts.preflight` check them before a run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

ALLOWED_BACKENDS = "file://<dir on the trusted runner> or s3://<bucket>?endpoint=<on-premises host>"
ALLOWED_PROVIDERS = "hashivault://<transit key> or passphrase"
# Object stores of public clouds, by host suffix: an `endpoint=` under one of them is not on premises.
_CLOUD_STORAGE_HOSTS = (
    "amazonaws.com",
    "amazonaws.com.cn",
    "core.windows.net",
    "googleapis.com",
    "cloudflarestorage.com",
    "digitaloceanspaces.com",
    "backblazeb2.com",
    "wasabisys.com",
    "linodeobjects.com",
    "oraclecloud.com",
    "aliyuncs.com",
    "appdomain.cloud",
)


def backend_problem(url: str | None) -> str | None:
    """Why `url` may not hold a trusted stack's state, or None when it may."""
    if not url:
        return f"no backend URL means the Pulumi Cloud service; log in to {ALLOWED_BACKENDS}"
    parts = urlsplit(url)
    if parts.scheme == "file":
        return None
    if parts.scheme == "s3":
        endpoint = (parse_qs(parts.query).get("endpoint") or [""])[0]
        host = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").hostname or ""
        if not host:
            return f"{url} has no endpoint=: that is AWS S3; name the on-premises object store (s3://<bucket>?endpoint=<host>)"
        if any(host == suffix or host.endswith("." + suffix) for suffix in _CLOUD_STORAGE_HOSTS):
            return f"{url}: endpoint {host} is a public cloud's object store; use {ALLOWED_BACKENDS}"
        if (parse_qs(parts.query).get("disableSSL") or [""])[0].lower() == "true":
            return f"{url}: disableSSL=true sends the state unprotected; serve the object store over TLS"
        return None
    return f"{url} is not on the trusted side; use {ALLOWED_BACKENDS}"


def secrets_provider_problem(provider: str | None, encryption_salt: bool = False) -> str | None:
    """Why a stack file's `secretsprovider` may not encrypt a trusted stack's secrets, or None.

    Pulumi records `passphrase` as an `encryptionsalt` line (and no `secretsprovider`), a URL provider
    as `secretsprovider` plus `encryptedkey`; a file with neither uses the Pulumi Cloud service's key.
    """
    if provider is None:
        if encryption_salt:
            return None
        return f"names no secrets provider, so the Pulumi Cloud service would hold the key: pulumi stack change-secrets-provider ({ALLOWED_PROVIDERS})"
    if provider == "passphrase" or (provider.startswith("hashivault://") and len(provider) > len("hashivault://")):
        return None
    kind = provider.split("://", 1)[0]
    return f"secrets provider {kind} keeps the key outside the trusted side; use {ALLOWED_PROVIDERS}"


def stack_file_settings(path: Path) -> Mapping[str, Any]:
    """The top-level settings of a stack file (`secretsprovider`, `encryptedkey`, `encryptionsalt`)."""
    document = yaml.safe_load(path.read_text()) or {}
    return {k: v for k, v in document.items() if k != "config"} if isinstance(document, dict) else {}


def stack_file_problem(path: Path) -> str | None:
    settings = stack_file_settings(path)
    provider = settings.get("secretsprovider")
    return secrets_provider_problem(None if provider is None else str(provider), bool(settings.get("encryptionsalt")))


def current_backend(project_dir: Path, environ: Mapping[str, str] = os.environ) -> str | None:
    """The backend the Pulumi CLI would use from `project_dir`: PULUMI_BACKEND_URL, else Pulumi.yaml
    `backend.url`, else the `current` of the stored credentials in PULUMI_CREDENTIALS_PATH, PULUMI_HOME or
    ~/.pulumi (pulumi/pulumi pkg/workspace/creds.go GetCurrentCloudURLWithSource, getCredsFilePath); None
    means the Pulumi Cloud service."""
    if url := environ.get("PULUMI_BACKEND_URL"):
        return url
    try:
        project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text()) or {}
    except OSError:
        project = {}
    if url := ((project.get("backend") or {}).get("url") if isinstance(project, dict) else None):
        return str(url)
    home = Path(environ.get("PULUMI_CREDENTIALS_PATH") or environ.get("PULUMI_HOME") or Path(environ.get("HOME", "~")).expanduser() / ".pulumi")
    try:
        credentials = json.loads((home / "credentials.json").read_text())
    except (OSError, ValueError):
        return None
    return str(credentials.get("current") or "") or None if isinstance(credentials, dict) else None


def trusted_stack_refusal(stack: str, stack_file: Path, backend: str | None, check_backend: bool = True) -> str | None:
    """One line saying why `stack` (a trusted stack) may not run here, or None. `check_backend` False:
    the caller does not reach the trusted stack through this backend (it reads a trust bundle)."""
    if not stack_file.is_file():
        return f"refusing {stack}: no stack file {stack_file.name}"
    if problem := stack_file_problem(stack_file):
        return f"refusing {stack}: {stack_file.name} {problem}"
    if check_backend and (problem := backend_problem(backend)):
        return f"refusing {stack}: its state backend {problem}"
    return None
