"""Check a model's endpoint before sending it anything: `python -m scripts.verify_endpoint ENV MODEL [--prompt TEXT]`.

What it checks: the server at the model's host name completes a TLS handshake with a certificate that
chains to the inference CA alone (no system CA), names that host, and is exactly the serving certificate
the trusted side published for the model's workload; so the server holds that certificate's private key.
With --prompt, one OpenAI-compatible chat completion goes over that same verified connection.

Where the published values come from: the cloud stack's trust bundle (`trustBundle.file`, or
--trust-bundle FILE), verified against the key the cloud config pins, refused when that key is the
offline plan's placeholder; for a cloud stack without a bundle, the trusted stack's outputs.

What it relies on and does not check (docs/talking-to-a-model.md): that the pinned key is the trusted
side's; that KBS released the serving key only to a pod VM that attested the workload (CPU evidence with
its PCR 8, and its GPUs), which is the trusted side's policy and reference values (this check sees no
evidence); that the key never left that pod VM; and that the inference CA's key stayed on the trusted side.
It says nothing of freshness (no re-attestation per connection), of what the model does, or of who the
client is.

Exit status: 0 verified (and answered), 1 the endpoint failed a check (or did not answer),
2 could not run (unknown environment or model, a bundle that does not verify or a placeholder pin, stack
outputs unavailable or malformed).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import socket
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from scripts import trust_bundles
from scripts.cli import ArgumentParser, CloudStackChoice, OutputsFileError, choose_cloud_stack, environment, read_outputs_file
from scripts.offline.stackfile import STACKS_DIR, StackFileError, cloud_stacks, read_stack_file
from scripts.pulumi_cli import AutomationPulumi, Pulumi, PulumiError
from scripts.up import environments, stack_name
from stacks.config import ConfigError
from stacks.trust_bundle import cloud_view

CONNECT_SECONDS = 10.0
ANSWER_SECONDS = 300.0  # a first completion on a cold model can take minutes
MAX_TOKENS = 512
# The OpenShift ingress operator's own CA, which signs the router's default wildcard certificate, is named
# `cluster-ingress-operator@<unix time>` (openshift/cluster-ingress-operator
# pkg/operator/controller/certificate/ca.go generateRouterCA, commit 1807b23a).
ROUTER_CA_MARK = "ingress-operator@"


class CannotRun(Exception):
    """Bad input or missing outputs: one line, exit status 2."""


class Failed(Exception):
    """The endpoint failed a check or did not answer: one line, exit status 1."""


@dataclass(frozen=True)
class Workload:
    """What the trusted stack published about one workload's serving key (all public)."""

    name: str
    certificate: x509.Certificate
    key_resource: str
    key_uri: str
    pcr8: str
    image: str
    gpu_gated: bool
    min_gpus: int


@dataclass(frozen=True)
class Endpoint:
    model: str
    url: str
    host: str
    port: int
    trusted_stack: str
    ca_pem: str
    ca: x509.Certificate
    workloads: dict[str, Workload]
    workload: str | None
    """The workload the cloud stack says the model runs, when it says so."""


@dataclass(frozen=True)
class Verified:
    endpoint: Endpoint
    workload: Workload
    tls_version: str


# --- Reading the stacks' outputs ---------------------------------------------------------------


def configured_models(env: str, stacks_dir: Path = STACKS_DIR, cloud_stack: str | None = None) -> list[str]:
    """Model names in the cloud stack file, read before anything is contacted."""
    stack = cloud_stack or stack_name(env, "cloud")
    raw = read_stack_file(stack, stacks_dir).config.get("confidential-ai:models", "[]")
    try:
        models = json.loads(raw)
    except json.JSONDecodeError:
        models = None
    if not isinstance(models, list):
        raise CannotRun(f"{stack}: confidential-ai:models is not a list of models")
    return [str(m.get("name")) for m in models if isinstance(m, dict) and m.get("name")]


def stack_outputs(pulumi: Pulumi, stack: str) -> dict[str, Any]:
    outputs = pulumi.outputs(stack)
    if not outputs:
        raise CannotRun(f"{stack} has not been deployed (no outputs): run `python -m scripts.up {stack.rsplit('-', 1)[0]}` first")
    return outputs


def _certificate(pem: Any, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(str(pem).encode())
    except ValueError:
        raise CannotRun(f"{what} is not a PEM certificate") from None


def endpoint_from_outputs(model: str, trusted_stack: str, trusted: Mapping[str, Any], cloud_stack: str, cloud: Mapping[str, Any]) -> Endpoint:
    entry = (cloud.get("models") or {}).get(model) if isinstance(cloud.get("models"), dict) else None
    if not isinstance(entry, dict) or not entry.get("externalUrl"):
        raise CannotRun(f"{cloud_stack} outputs have no models.{model}.externalUrl: deploy the cloud stack with this model")
    url = str(entry["externalUrl"])
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise Failed(f"{model}: {url} is not an https:// URL: prompts would leave the client unencrypted")
    try:
        port = parts.port or 443
    except ValueError as err:  # not a number, or out of range
        raise CannotRun(f"{cloud_stack} outputs: models.{model}.externalUrl {url}: {err}") from None
    if not parts.hostname:
        raise CannotRun(f"{cloud_stack} outputs: models.{model}.externalUrl {url} names no host")
    trusted = cloud_view(trusted, cloud_stack)
    ca_pem = trusted.get("inferenceCaCert")
    if not ca_pem:
        raise CannotRun(f"{trusted_stack} outputs have no inferenceCaCert: deploy the trusted stack with its inference CA first")
    resources = trusted.get("kbsResources") if isinstance(trusted.get("kbsResources"), dict) else {}
    workloads: dict[str, Workload] = {}
    for name, published in (trusted.get("workloads") or {}).items() if isinstance(trusted.get("workloads"), dict) else ():
        if not isinstance(published, dict) or not published.get("servingCertificate"):
            continue
        key_resource = str(published.get("servingKeyResource") or "")
        resource = resources.get(key_resource)
        if not isinstance(resource, dict):
            raise CannotRun(f"{trusted_stack} outputs: workloads.{name}.servingKeyResource {key_resource!r} is not in kbsResources")
        workloads[name] = Workload(
            name=name,
            certificate=_certificate(published["servingCertificate"], f"{trusted_stack} output workloads.{name}.servingCertificate"),
            key_resource=key_resource,
            key_uri=str(resource.get("uri", "")),
            pcr8=str(published.get("initdataPcr8", "")),
            image=str(published.get("image", "")),
            gpu_gated=bool(resource.get("gpuGated", False)),
            min_gpus=int(resource.get("minGpus", 0)),
        )
    if not workloads:
        raise CannotRun(f"{trusted_stack} outputs publish no workload serving certificate (workloads.<name>.servingCertificate)")
    workload = entry.get("workload")
    if workload is not None and workload not in workloads:
        raise CannotRun(f"{cloud_stack} says {model} runs workload {workload!r}, for which {trusted_stack} publishes no serving certificate")
    return Endpoint(
        model=model,
        url=url,
        host=parts.hostname,
        port=port,
        trusted_stack=trusted_stack,
        ca_pem=str(ca_pem),
        ca=_certificate(ca_pem, f"{trusted_stack} output inferenceCaCert"),
        workloads=workloads,
        workload=None if workload is None else str(workload),
    )


# --- Verifying the endpoint ----------------------------------------------------------------------


ClientCertificate = tuple[Path, Path | None]
"""(certificate PEM file, key PEM file or None when the certificate file holds the key too), for mutual TLS."""


def client_context(ca_pem: str, client: ClientCertificate | None = None) -> ssl.SSLContext:
    """Trust the inference CA and nothing else; check the host name; present `client` when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=ca_pem)
    if client is not None:
        try:
            context.load_cert_chain(*client)
        except (OSError, ssl.SSLError) as err:
            raise CannotRun(f"--client-cert {client[0]}: {getattr(err, 'strerror', None) or err.reason or err}") from None
    return context


def _connect(endpoint: Endpoint, context: ssl.SSLContext, address: str | None, timeout: float) -> ssl.SSLSocket:
    raw = socket.create_connection((address or endpoint.host, endpoint.port), timeout=timeout)
    try:
        return context.wrap_socket(raw, server_hostname=endpoint.host)
    except BaseException:
        raw.close()
        raise


def connect(
    endpoint: Endpoint, context: ssl.SSLContext, address: str | None = None, timeout: float = CONNECT_SECONDS
) -> tuple[http.client.HTTPSConnection, Verified]:
    """An HTTPS connection whose handshake passed every check; `address` overrides DNS (tests, curl --resolve)."""
    where = f"{endpoint.host}:{endpoint.port}"
    try:
        tls = _connect(endpoint, context, address, timeout)
    except ssl.SSLCertVerificationError as err:
        raise Failed(why_not_verified(endpoint, presented_certificate(endpoint, address, timeout), err)) from None
    except (OSError, ssl.SSLError) as err:
        raise Failed(f"{where}: cannot connect: {getattr(err, 'strerror', None) or err}") from None
    der = tls.getpeercert(binary_form=True)
    assert der is not None  # a verified handshake has a peer certificate
    try:
        workload = served_workload(endpoint, x509.load_der_x509_certificate(der))
    except Failed:
        tls.close()
        raise
    connection = http.client.HTTPSConnection(endpoint.host, endpoint.port, timeout=timeout)
    connection.sock = tls  # the verified socket: http.client sends on it instead of dialling again
    return connection, Verified(endpoint, workload, tls.version() or "TLS")


def presented_certificate(endpoint: Endpoint, address: str | None, timeout: float) -> x509.Certificate | None:
    """The certificate the server shows, read without verifying it, only to explain a failure."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with _connect(endpoint, context, address, timeout) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return None if der is None else x509.load_der_x509_certificate(der)


def issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        return [str(n) for n in certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _common_name(name: x509.Name) -> str:
    values = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return values[0] if values else name.rfc4514_string()


def _covers(pattern: str, host: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def why_not_verified(endpoint: Endpoint, certificate: x509.Certificate | None, err: ssl.SSLCertVerificationError) -> str:
    where = f"{endpoint.host}:{endpoint.port}"
    if certificate is None:
        return f"{where}: the certificate does not verify ({err.verify_message})"
    names = ", ".join(_names(certificate)) or "no name"
    issuer = _common_name(certificate.issuer)
    if not issued_by(certificate, endpoint.ca):
        if ROUTER_CA_MARK in issuer or any(n.startswith("*.") and _covers(n, endpoint.host) for n in _names(certificate)):
            return (
                f"{where}: TLS ends at the cluster's router, not in the TEE (certificate for {names} issued by {issuer}): "
                "the model is exposed through an edge or re-encrypt Route; do not send it prompts"
            )
        return (
            f"{where}: the certificate (for {names}) is issued by {issuer}, not by the inference CA of "
            f"{endpoint.trusted_stack} ({_common_name(endpoint.ca.subject)}): wrong CA or wrong server"
        )
    if not any(_covers(n, endpoint.host) for n in _names(certificate)):
        return f"{where}: the certificate from the inference CA is for {names}, not for {endpoint.host}: wrong host"
    return f"{where}: the certificate from the inference CA does not verify: {err.verify_message}"


def served_workload(endpoint: Endpoint, certificate: x509.Certificate) -> Workload:
    """The workload whose published serving certificate the server presented."""
    where = f"{endpoint.host}:{endpoint.port}"
    matches = [w for w in endpoint.workloads.values() if w.certificate == certificate]
    if not matches:
        raise Failed(
            f"{where}: the certificate (serial {certificate.serial_number:x}) is from the inference CA but is not the serving "
            f"certificate {endpoint.trusted_stack} publishes for any workload: re-read the trusted outputs, or the key was re-issued"
        )
    workload = matches[0]
    if endpoint.workload is not None and workload.name != endpoint.workload:
        raise Failed(f"{where}: serves workload {workload.name}'s certificate, but {endpoint.model} runs workload {endpoint.workload}")
    return workload


# --- Report and prompt ---------------------------------------------------------------------------


def _when(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def report(verified: Verified) -> str:
    endpoint, workload = verified.endpoint, verified.workload
    cert = workload.certificate
    gpus = f"{workload.min_gpus} attested GPU{'s' if workload.min_gpus != 1 else ''}" if workload.gpu_gated else "no GPU evidence"
    rows = [
        ("certificate", f"for {', '.join(_names(cert))}, valid {_when(cert.not_valid_before_utc)} to {_when(cert.not_valid_after_utc)}"),
        ("signed by", f"{_common_name(endpoint.ca.subject)} (inferenceCaCert of {endpoint.trusted_stack})"),
        ("key", f"KBS resource {workload.key_resource} ({workload.key_uri})"),
        ("bound to", f"workload {workload.name}: PCR 8 = {workload.pcr8}"),
        ("image", workload.image or "(not published)"),
        ("released after", f"CPU attestation (SEV-SNP vTPM, PCR 8 as above) and {gpus}"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{endpoint.model}: {endpoint.url} verified ({verified.tls_version})"]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    return "\n".join(lines)


def _json(connection: http.client.HTTPSConnection, method: str, path: str, body: Any = None) -> Any:
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except (ssl.SSLError, ConnectionResetError) as err:
        # A server that requires client certificates refuses one only after the TLS 1.3 handshake: with an
        # alert, or by closing the connection under the request.
        reason = getattr(err, "reason", None) or err.strerror or err
        raise Failed(f"{method} {path}: the model ended the TLS session ({reason}): if it requires client certificates, pass --client-cert") from None
    except (OSError, http.client.HTTPException) as err:
        raise Failed(f"{method} {path}: no answer: {getattr(err, 'strerror', None) or err or type(err).__name__}") from None
    if response.status != 200:
        text = data.decode("utf-8", "replace").strip().splitlines()
        raise Failed(f"{method} {path}: the model answered {response.status} {response.reason}: {(text or [''])[0][:200]}")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Failed(f"{method} {path}: the answer is not JSON") from None


def ask(connection: http.client.HTTPSConnection, prompt: str) -> str:
    """One chat completion (OpenAI-compatible API that NIM serves: GET /v1/models, POST /v1/chat/completions)."""
    models = _json(connection, "GET", "/v1/models")
    served = [m.get("id") for m in (models.get("data") or []) if isinstance(m, dict) and m.get("id")] if isinstance(models, dict) else []
    if not served:
        raise Failed("GET /v1/models: the endpoint serves no model")
    completion = _json(
        connection,
        "POST",
        "/v1/chat/completions",
        {"model": served[0], "messages": [{"role": "user", "content": prompt}], "max_tokens": MAX_TOKENS},
    )
    try:
        return str(completion["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        raise Failed("POST /v1/chat/completions: the answer has no choices[0].message.content") from None


# --- Command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m scripts.verify_endpoint", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment: reads stacks ENV-trusted and ENV-cloud")
    parser.add_argument("model", help="a model name of the cloud stack (confidential-ai:models)")
    parser.add_argument("--cloud-stack", metavar="NAME", help="the cloud stack serving the model (ENV-cloud or ENV-cloud-<name>); needed when ENV has more than one")
    parser.add_argument("--prompt", help="after verifying, send this as one chat completion and print the answer")
    parser.add_argument("--trusted-outputs", type=Path, help="JSON of the trusted stack outputs (e.g. out/ENV-trusted/outputs.json); default: pulumi stack output")
    parser.add_argument("--trust-bundle", type=Path, help="the cloud stack's trust bundle file (default: its trustBundle.file); read instead of the trusted outputs")
    parser.add_argument("--cloud-outputs", type=Path, help="JSON of the cloud stack outputs (e.g. out/ENV-cloud/outputs.json); default: pulumi stack output")
    parser.add_argument("--client-cert", type=Path, help="PEM client certificate (and key) for models that require mutual TLS")
    parser.add_argument("--client-key", type=Path, help="PEM key of --client-cert, when not in the same file")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_key and not args.client_cert:
        parser.error("--client-key needs --client-cert")
    return args


def load_endpoint(args: argparse.Namespace, make_pulumi: Callable[[], Pulumi]) -> Endpoint:
    known = environments(args.stacks_dir.parent)
    if args.env not in known:
        raise CannotRun(f"unknown environment {args.env!r}: expected one of {', '.join(known) or '(none in stacks/)'}")
    try:
        cloud_stack = choose_cloud_stack(args.env, args.cloud_stack, cloud_stacks(args.env, args.stacks_dir))
    except CloudStackChoice as err:
        raise CannotRun(str(err)) from None
    models = configured_models(args.env, args.stacks_dir, cloud_stack)
    if args.model not in models:
        raise CannotRun(f"unknown model {args.model!r} in {cloud_stack}: expected one of {', '.join(models) or '(none configured)'}")
    trusted_stack = stack_name(args.env, "trusted")
    pulumi: Pulumi | None = None

    def outputs(path: Path | None, side: str) -> dict[str, Any]:
        nonlocal pulumi
        if path is not None:
            return read_outputs_file(f"--{side}-outputs", path, side)
        pulumi = pulumi or make_pulumi()
        return stack_outputs(pulumi, cloud_stack if side == "cloud" else trusted_stack)

    config = trust_bundles.cloud_config(cloud_stack, args.stacks_dir)
    if config.trust_bundle is not None and args.trusted_outputs is None:
        # The trusted side's values as the cloud stack got them: its bundle, verified against the pinned key.
        try:
            trusted = trust_bundles.verified_view(config, args.stacks_dir.parent, args.trust_bundle)
        except trust_bundles.BundleRefused as err:
            raise CannotRun(str(err)) from None
        trusted_stack = f"the trust bundle of {cloud_stack} ({trust_bundles.bundle_path(config, args.stacks_dir.parent, args.trust_bundle)})"
    elif args.trust_bundle is not None:
        raise CannotRun(f"--trust-bundle {args.trust_bundle}: {cloud_stack} pins no trust bundle key (set trustBundle in its stack file)")
    else:
        trusted = outputs(args.trusted_outputs, "trusted")
    cloud = outputs(args.cloud_outputs, "cloud")
    return endpoint_from_outputs(args.model, trusted_stack, trusted, cloud_stack, cloud)


def main(argv: Sequence[str] | None = None, make_pulumi: Callable[[], Pulumi] = AutomationPulumi, address: str | None = None) -> int:
    args = parse_args(argv)
    try:
        endpoint = load_endpoint(args, make_pulumi)
        context = client_context(endpoint.ca_pem, (args.client_cert, args.client_key) if args.client_cert else None)
    except (CannotRun, OutputsFileError, StackFileError, PulumiError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ConfigError as err:
        print("\n".join(err.lines()), file=sys.stderr)
        return 2
    except Failed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    try:
        connection, verified = connect(endpoint, context, address)
        try:
            print(report(verified))
            if args.prompt is not None:
                connection.sock.settimeout(ANSWER_SECONDS)
                print(f"\n{ask(connection, args.prompt)}")
        finally:
            connection.close()
    except Failed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
