"""Check an environment's Azure side before deploying: `python -m scripts.preflight ENV [--trusted-outputs FILE | --trust-bundle FILE]`.

Confidential GPU pod VMs fail late (a pod hangs in ContainerCreating) when the VM size is not offered,
the quota is short, the image is missing or not replicated, the provider is unregistered or the KBS
is unreachable. Each check here is a small function over Azure SDK clients; the table printed says
what failed and how to fix it. A cloud stack that reads a trust bundle has it verified first, as the
program does, and a pin of the offline plan's placeholder key refused. Exit status: 0 all passed, 1 a
check failed, 2 could not run (config, credentials, an unreadable --trusted-outputs file, a bundle that
does not verify, a trusted stack whose state or secrets key is not on premises).
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError, ServiceRequestError

from components.azure import ids
from scripts import custody, trust_bundles
from scripts.cli import ArgumentParser, OutputsFileError, environment, read_outputs_file
from scripts.offline.stackfile import STACKS_DIR, StackFileError
from stacks.config import CloudConfig, ConfigError
from stacks import versions
from stacks.config.base import CONFIDENTIAL_GPU_SIZE

MANAGEMENT_SCOPE = "https://management.azure.com/.default"
# ARO's temporary bootstrap machine counts against the regional vCPU quota during installation
# (MicrosoftDocs azure-docs articles/openshift/howto-create-openshift-cluster.md: bootstrap 8 cores).
ARO_BOOTSTRAP_VCPUS = 8
ARO_MASTER_COUNT = 3


@dataclass(frozen=True)
class Result:
    check: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class AzureClients:
    """The seam: live SDK clients, or recorded responses in tests."""

    compute: Any
    """azure.mgmt.compute.ComputeManagementClient"""
    resources: Any
    """azure.mgmt.resource.resources.ResourceManagementClient"""
    openshift: Any = None
    """azure.mgmt.redhatopenshift.AzureRedHatOpenShiftClient (read for `cluster.mode: aro` only)"""


class CannotRun(Exception):
    """The preflight cannot run at all (no credentials, bad config): one line, exit 2."""


def live_clients(config: CloudConfig, credential: Any = None) -> AzureClients:
    from azure.identity import DefaultAzureCredential
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.redhatopenshift import AzureRedHatOpenShiftClient
    from azure.mgmt.resource.resources import ResourceManagementClient

    # DefaultAzureCredential logs every credential it tried; the one line below says what to do.
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)
    credential = credential or DefaultAzureCredential()
    if problem := token_problem(credential):
        raise CannotRun(problem)
    subscription = config.azure.subscription_id
    return AzureClients(
        ComputeManagementClient(credential, subscription),
        ResourceManagementClient(credential, subscription),
        AzureRedHatOpenShiftClient(credential, subscription),
    )


def token_problem(credential: Any) -> str | None:
    """Why no Azure token can be had, told apart: no credential configured, credentials refused, or Azure's
    sign-in service unreachable; None when one of the credentials gets a token.

    A chain (DefaultAzureCredential) reports every failure as ClientAuthenticationError with the causes in
    prose, so its credentials are asked one at a time, in its order, as the chain itself does
    (azure-identity _credentials/chained.py): one that is not configured is skipped, the first that fails stops.
    """
    from azure.identity import CredentialUnavailableError

    for candidate in getattr(credential, "credentials", (credential,)):
        try:
            candidate.get_token(MANAGEMENT_SCOPE)
            return None
        except CredentialUnavailableError:
            continue
        except ClientAuthenticationError as err:
            name = type(candidate).__name__
            if network := _network_failure(err):
                return f"cannot reach Azure's sign-in service ({name}: {network}); check the network, DNS or HTTPS_PROXY, then retry"
            return f"Azure refused the credentials of {name}: {_first_line(err.message)}; fix them (az login, or AZURE_CLIENT_ID/AZURE_CLIENT_SECRET)"
    return (
        "no Azure credentials: run `az login`, or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET "
        "(DefaultAzureCredential found none)"
    )


def _network_failure(err: BaseException) -> str | None:
    """The network error under an authentication failure (the request never got an answer), if there is one."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ServiceRequestError):
            return _first_line(str(seen.message if hasattr(seen, "message") else seen))
        seen = seen.__cause__ or seen.__context__
    return None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


# --- Checks ----------------------------------------------------------------------------------


def _vcpus(sku: Any) -> int:
    return int(next(c.value for c in sku.capabilities or [] if c.name == "vCPUs"))


def _vm_skus(compute: Any, region: str) -> dict[str, Any]:
    return {s.name: s for s in compute.resource_skus.list(filter=f"location eq '{region}'") if s.resource_type == "virtualMachines"}


def size_offered(skus: dict[str, Any], size: str, region: str) -> Result:
    check = f"{size} offered in {region}"
    sku = skus.get(size)
    if sku is None:
        return Result(check, False, "not offered in this region", f"choose a region that offers {size} (az vm list-skus -l <region> --size {size})")
    for restriction in sku.restrictions or []:
        if restriction.type == "Location":
            reason = _text(restriction.reason_code or "restricted")
            return Result(check, False, f"restricted for this subscription ({reason})", f"request access to {size} in {region} (Azure support: region access / SKU enablement)")
    return Result(check, True, f"{_vcpus(sku)} vCPUs, family {sku.family}")


def quota(usages: dict[str, Any], check: str, needs: dict[str, int], region: str) -> Result:
    """`needs` maps a quota name (a VM family, or `cores` for all regional vCPUs) to the vCPUs required."""
    short = []
    for name, need in needs.items():
        usage = usages.get(name.lower())
        if usage is None:
            short.append(f"{name}: no quota reported")
            continue
        free = usage.limit - usage.current_value
        if free < need:
            label = usage.name.localized_value or name
            short.append(f"{label}: {free} of {usage.limit} vCPUs free, {need} needed")
    if short:
        wanted = ", ".join(f"{n} >= {usages[n.lower()].current_value + needs[n]}" for n in needs if n.lower() in usages)
        return Result(check, False, "; ".join(short), f"request a vCPU quota increase in {region}: {wanted}")
    return Result(check, True, ", ".join(f"{need} vCPUs of {name}" for name, need in needs.items()))


def gpu_quota(skus: dict[str, Any], usages: dict[str, Any], count: int, region: str) -> Result:
    check = f"quota for {count} GPU pod VMs"
    sku = skus.get(CONFIDENTIAL_GPU_SIZE)
    if sku is None:
        return Result(check, False, f"{CONFIDENTIAL_GPU_SIZE} is not offered here, so it has no quota", "see the size check above")
    need = _vcpus(sku) * count
    return quota(usages, check, {sku.family: need, "cores": need}, region)


def aro_quota(skus: dict[str, Any], usages: dict[str, Any], config: CloudConfig) -> Result:
    aro = config.cluster.aro
    assert aro is not None
    check = "quota for the ARO control plane and workers"
    missing = [s for s in (aro.master_vm_size, aro.worker_vm_size) if s not in skus]
    if missing:
        return Result(check, False, f"{', '.join(missing)} not offered in {config.azure.location}", "choose master/worker sizes offered in the region (cluster.aro.masterVmSize, workerVmSize)")
    master, worker = skus[aro.master_vm_size], skus[aro.worker_vm_size]
    needs: dict[str, int] = {}
    for family, vcpus in ((master.family, ARO_MASTER_COUNT * _vcpus(master)), (worker.family, aro.worker_count * _vcpus(worker))):
        needs[family] = needs.get(family, 0) + vcpus
    needs["cores"] = sum(needs.values()) + ARO_BOOTSTRAP_VCPUS
    return quota(usages, check, needs, config.azure.location)


def aro_version_offered(openshift: Any, version: str, region: str) -> Result:
    """The ARO install version is offered in the region now (`az aro get-versions -l <region>`)."""
    check = f"ARO {version} offered in {region}"
    offered = sorted({v.version for v in openshift.open_shift_versions.list(region)}, key=versions.parse)
    missing = [v for v in offered if v not in versions.ARO_INSTALL_VERSIONS]
    table = f"; stacks/versions.py ARO_INSTALL_VERSIONS lacks {', '.join(missing)}" if missing else ""
    if version not in offered:
        return Result(check, False, f"offered: {', '.join(offered) or 'none'}", f"set cluster.aro.version to an offered version (add it to ARO_INSTALL_VERSIONS){table}")
    return Result(check, True, f"offered ({', '.join(offered)}){table}")


def provider_registered(resources: Any, namespace: str) -> Result:
    check = f"{namespace} provider registered"
    state = _text(resources.providers.get(namespace).registration_state)
    if state != "Registered":
        return Result(check, False, f"registration state is {state}", f"az provider register --namespace {namespace} --wait")
    return Result(check, True, "Registered")


def _text(value: Any) -> str:
    """An SDK enum member or a string, as Azure spells it."""
    return str(getattr(value, "value", value))


def _region_key(name: str) -> str:
    return name.replace(" ", "").lower()


def image_definition(compute: Any, image_id: str, region: str) -> Result:
    check = "pod VM image definition is confidential Gen2"
    try:
        if community := ids.COMMUNITY_IMAGE_VERSION_ID.match(image_id):
            image = compute.community_gallery_images.get(region, community["gallery"], community["image"])
        else:
            gallery = ids.GALLERY_IMAGE_VERSION_ID.match(image_id)
            assert gallery is not None  # validated by the config model
            image = compute.gallery_images.get(gallery["resource_group"], gallery["gallery"], gallery["image"])
    except ResourceNotFoundError:
        return Result(check, False, "image definition not found", "create the definition (peerPods.image.hostGallery: true) or fix peerPods.imageId")
    features = {f.name: f.value for f in image.properties.features or []}
    generation = _text(image.properties.hyper_v_generation)
    problems = []
    if generation != "V2":
        problems.append(f"hyperVGeneration is {generation}, confidential VMs need V2")
    if features.get("SecurityType") not in ("ConfidentialVmSupported", "ConfidentialVM"):
        problems.append(f"SecurityType feature is {features.get('SecurityType')}, need ConfidentialVmSupported")
    if problems:
        return Result(check, False, "; ".join(problems), "publish the image under a Gen2 definition with SecurityType=ConfidentialVmSupported")
    return Result(check, True, "V2, SecurityType=" + features["SecurityType"])


# The tag image builders set on each GPU pod VM image version (docs/azure.md): this build carries the
# NVIDIA driver in confidential computing mode and a CDI spec. A gallery image version has resource tags;
# a community gallery image version shows its publisher's artifact tags instead.
GPU_IMAGE_TAG = ("confidential-ai-gpu", "h100-cc")


def _gpu_tag_problem(tags: dict[str, str] | None) -> Result | None:
    key, value = GPU_IMAGE_TAG
    found = (tags or {}).get(key)
    if found == value:
        return None
    detail = f"tagged {key}={found}" if found is not None else f"no {key} tag"
    return Result("", False, f"{detail}: a GPU model needs an image built for H100 confidential computing",
                  f"publish a version with the CC-mode NVIDIA driver and a CDI spec, tagged {key}={value} (docs/azure.md)")


def image_version(compute: Any, image_id: str, region: str, gpu: bool = False) -> Result:
    """The version exists in the region; for GPU models, it is tagged as an H100 CC build (GPU_IMAGE_TAG)."""
    version = image_id.rsplit("/", 1)[-1]
    check = f"pod VM image {version} available in {region}"
    if community := ids.COMMUNITY_IMAGE_VERSION_ID.match(image_id):
        try:
            found = compute.community_gallery_image_versions.get(region, community["gallery"], community["image"], version)
        except ResourceNotFoundError:
            return Result(check, False, "not published to this region (or does not exist)", "replicate the version to the region in the publisher's gallery, or fix peerPods.imageId")
        if gpu and (problem := _gpu_tag_problem(found.properties.artifact_tags)):
            return Result(check, False, problem.detail, problem.fix)
        return Result(check, True, "community gallery image version found in the region" + (f", {'='.join(GPU_IMAGE_TAG)}" if gpu else ""))
    gallery = ids.GALLERY_IMAGE_VERSION_ID.match(image_id)
    assert gallery is not None
    try:
        found = compute.gallery_image_versions.get(gallery["resource_group"], gallery["gallery"], gallery["image"], version, expand="ReplicationStatus")
    except ResourceNotFoundError:
        return Result(check, False, "image version does not exist", "publish the GPU pod VM image version to the gallery, or fix peerPods.imageId")
    state = _text(found.properties.provisioning_state)
    if state != "Succeeded":
        return Result(check, False, f"provisioning state is {state}", "wait for the image version to finish publishing, or republish it")
    regions = [r.name for r in found.properties.publishing_profile.target_regions or []]
    if _region_key(region) not in {_region_key(r) for r in regions}:
        return Result(check, False, f"replicated only to {', '.join(regions) or 'no region'}", f"az sig image-version update ... --add publishingProfile.targetRegions name={region}")
    if gpu and (problem := _gpu_tag_problem(found.tags)):
        return Result(check, False, problem.detail, problem.fix)
    return Result(check, True, f"replicated to {', '.join(regions)}" + (f", {'='.join(GPU_IMAGE_TAG)}" if gpu else ""))


def kbs_tls(trusted: dict[str, Any] | str, timeout: float = 5.0) -> Result:
    """The KBS answers TLS with a certificate the trusted stack's CA signed, for its own hostname."""
    check = "KBS answers TLS with the trusted CA"
    if isinstance(trusted, str):
        return Result(check, False, trusted, "deploy the trusted stack first, or pass --trusted-outputs FILE")
    url, ca = trusted.get("kbsUrl"), trusted.get("kbsCaCert")
    if not url or not ca:
        missing = " and ".join(k for k, v in (("kbsUrl", url), ("kbsCaCert", ca)) if not v)
        return Result(check, False, f"the trusted stack outputs have no {missing}", "deploy the trusted stack (pulumi up -s <env>-trusted)")
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        context = ssl.create_default_context(cadata=ca)
    except ssl.SSLError:
        return Result(check, False, "kbsCaCert is not a PEM certificate", "re-export kbsCaCert from the trusted stack")
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
            version = tls.version()
    except ssl.SSLCertVerificationError as err:
        return Result(check, False, f"{host}:{port}: {err.verify_message}", "serve the KBS certificate issued by the trusted stack's CA, for the KBS hostname (passthrough Route)")
    except (OSError, ssl.SSLError) as err:
        return Result(check, False, f"{host}:{port}: {getattr(err, 'strerror', None) or err}", "check the KBS Route/DNS and that the trusted cluster is reachable from Azure")
    return Result(check, True, f"{host}:{port} {version}")


# --- Running ---------------------------------------------------------------------------------


def _guarded(check: str, fn: Callable[[], Result]) -> Result:
    try:
        return fn()
    except HttpResponseError as err:
        code = getattr(err.error, "code", None) or err.status_code
        return Result(check, False, f"Azure answered {code}: {str(err.message or err).splitlines()[0]}", "grant the signed-in identity Reader on the subscription, then rerun")


def run_checks(config: CloudConfig, clients: AzureClients, trusted: dict[str, Any] | str) -> list[Result]:
    region = config.azure.location
    peer_pods = config.peer_pods
    results: list[Result] = []
    skus: dict[str, Any] = {}
    usages: dict[str, Any] = {}

    def inventory() -> Result:
        skus.update(_vm_skus(clients.compute, region))
        usages.update({u.name.value.lower(): u for u in clients.compute.usage.list(region)})
        return Result("read VM sizes and quotas", True, f"{len(skus)} sizes")

    listing = _guarded("read VM sizes and quotas", inventory)
    if listing.ok:
        results += [size_offered(skus, size, region) for size in peer_pods.instance_sizes]
        if CONFIDENTIAL_GPU_SIZE in peer_pods.instance_sizes and peer_pods.max_gpu_pod_vms:
            results.append(gpu_quota(skus, usages, peer_pods.max_gpu_pod_vms, region))
        if config.cluster.aro:
            results.append(aro_quota(skus, usages, config))
    else:
        results.append(listing)
    if config.cluster.aro:
        version = config.cluster.aro.version
        results.append(_guarded(f"ARO {version} offered in {region}", lambda: aro_version_offered(clients.openshift, version, region)))
    namespaces = ["Microsoft.Compute", "Microsoft.Network"] + (["Microsoft.RedHatOpenShift"] if config.cluster.aro else [])
    results += [_guarded(f"{ns} provider registered", lambda ns=ns: provider_registered(clients.resources, ns)) for ns in namespaces]
    results.append(_guarded("pod VM image definition", lambda: image_definition(clients.compute, peer_pods.image_id, region)))
    gpu = any(model.machine_type == CONFIDENTIAL_GPU_SIZE for model in config.models)
    results.append(_guarded("pod VM image version", lambda: image_version(clients.compute, peer_pods.image_id, region, gpu)))
    results.append(kbs_tls(trusted))
    return results


def render(results: Iterable[Result]) -> str:
    rows = [("check", "result", "how to fix")] + [(r.check, ("ok: " if r.ok else "FAIL: ") + r.detail, r.fix) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}".rstrip() for a, b, c in rows)


def read_trusted_outputs(path: Path) -> dict[str, Any]:
    """`--trusted-outputs FILE`, read before anything signs in: a bad file is a usage error."""
    try:
        return read_outputs_file("--trusted-outputs", path, "trusted")
    except OutputsFileError as err:
        raise CannotRun(str(err)) from None


def trusted_outputs(config: CloudConfig) -> dict[str, Any] | str:
    """The trusted stack's outputs from `pulumi stack output`, or why they are unavailable (shown as the KBS check's failure)."""
    command = f"pulumi stack output -s {config.trusted_stack_name}"
    try:
        done = subprocess.run(["pulumi", "stack", "output", "--json", "-s", config.trusted_stack_name], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        return "pulumi CLI not found to read the trusted stack outputs"
    except subprocess.TimeoutExpired:
        return f"{command} did not answer within 120 s"
    if done.returncode != 0:
        return f"{command} failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
    try:
        outputs = json.loads(done.stdout)
    except json.JSONDecodeError:
        return f"{command} printed no JSON"
    return outputs if isinstance(outputs, dict) else f"{command} printed no JSON object of outputs"


def check_custody(env: str, stacks_dir: Path, reads_trusted_state: bool) -> None:
    """Refuse an environment whose trusted stack keeps its state or secrets key in the cloud (scripts/custody.py)."""
    trusted = f"{env}-trusted"
    refusal = custody.trusted_stack_refusal(
        trusted, stacks_dir / f"Pulumi.{trusted}.yaml", custody.current_backend(stacks_dir.parent) if reads_trusted_state else None, reads_trusted_state
    )
    if refusal:
        raise CannotRun(refusal)


def load_config(env: str, stacks_dir: Path = STACKS_DIR) -> CloudConfig:
    return trust_bundles.cloud_config(f"{env}-cloud", stacks_dir)


def trusted_values(config: CloudConfig, args: Any) -> dict[str, Any] | None:
    """What the KBS check reads of the trusted side: a --trusted-outputs file when given, else the cloud
    stack's verified trust bundle (refused, exit 2, when it does not verify or pins the offline placeholder
    key), else None: the trusted stack's outputs, read with the CLI."""
    if args.trusted_outputs is not None:
        return read_trusted_outputs(args.trusted_outputs)
    if config.trust_bundle is not None or args.trust_bundle is not None:
        if config.trust_bundle is None:
            raise CannotRun(f"--trust-bundle {args.trust_bundle}: {config.stack.name} pins no trust bundle key (set trustBundle in its stack file)")
        try:
            return trust_bundles.verified_view(config, args.stacks_dir.parent, args.trust_bundle)
        except trust_bundles.BundleRefused as err:
            raise CannotRun(str(err).removeprefix(f"{config.stack.name}: ")) from None
    return None


def main(argv: list[str] | None = None, clients: Callable[[CloudConfig], AzureClients] = live_clients) -> int:
    parser = ArgumentParser(prog="python -m scripts.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("env", type=environment, help="environment: checks stack ENV-cloud")
    parser.add_argument("--trusted-outputs", type=Path, help="JSON of the trusted stack outputs (e.g. out/ENV-trusted/outputs.json); default: pulumi stack output")
    parser.add_argument("--trust-bundle", type=Path, help="the cloud stack's trust bundle file (default: its trustBundle.file)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the Pulumi.<stack>.yaml files are (default: stacks/)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.env, args.stacks_dir)
        trusted = read_trusted_outputs(args.trusted_outputs) if args.trusted_outputs else None
        azure = clients(config)
        trusted = trusted_values(config, args)
        # Read through `pulumi stack output`, the trusted stack is in this backend: it must be on premises.
        check_custody(args.env, args.stacks_dir, reads_trusted_state=trusted is None)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    except (StackFileError, CannotRun) as err:
        print(f"{args.env}-cloud: {err}" if isinstance(err, CannotRun) else str(err), file=sys.stderr)
        return 2
    results = run_checks(config, azure, trusted if trusted is not None else trusted_outputs(config))
    print(render(results))
    failed = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
