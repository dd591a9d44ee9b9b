"""What the trusted stack hands each cloud stack: the view of its outputs that stack reads, signed.

One function, `cloud_view`, decides what one cloud stack sees; the trusted stack signs exactly that
(`signed_bundles`), and the cloud stack verifies it before reading a value (`open_bundle`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from components import trust_bundle as jws
from stacks.contracts import CLOUD_READS, OPTIONAL_TRUSTED_OUTPUTS

# Besides the values the cloud stack reads, a bundle carries what model clients verify a model's
# endpoint against (scripts/verify_endpoint.py): the inference CA, and the client CA when one is set.
BUNDLE_READS = (*CLOUD_READS, "inferenceCaCert")
ENVELOPE = ("environment", "cloudStack", "version")


def cloud_stacks(env: str) -> list[str]:
    """The cloud stacks the environment's trusted stack serves."""
    return [f"{env}-cloud"]


def cloud_view(outputs: Mapping[str, Any], cloud_stack: str) -> dict[str, Any]:
    """The public trusted outputs `cloud_stack` reads: today every workload and resource."""
    del cloud_stack  # one cloud stack per environment: it serves every workload
    return {key: outputs[key] for key in (*BUNDLE_READS, *OPTIONAL_TRUSTED_OUTPUTS) if key in outputs}


def payload(env: str, cloud_stack: str, version: int, outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {"environment": env, "cloudStack": cloud_stack, "version": version, **cloud_view(outputs, cloud_stack)}


def signed_bundles(env: str, version: int, outputs: Mapping[str, Any], private_key_pem: str) -> dict[str, str]:
    """Cloud stack name -> its compact JWS."""
    return {stack: jws.sign(payload(env, stack, version, outputs), private_key_pem) for stack in cloud_stacks(env)}


def open_bundle(token: str, pinned: Iterable[Mapping[str, Any]], env: str, cloud_stack: str, minimum_version: int) -> dict[str, Any]:
    """The view in `token` once it verifies with a pinned key and is for `cloud_stack` of `env`, at
    `minimum_version` or above; raises jws.BundleError (one line) otherwise."""
    claims = jws.verify(token, pinned)
    if claims.get("environment") != env or claims.get("cloudStack") != cloud_stack:
        raise jws.BundleError(f"it is for {claims.get('cloudStack')!r} of environment {claims.get('environment')!r}, not {cloud_stack} of {env}")
    version = claims.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < minimum_version:
        raise jws.BundleError(f"its version {version!r} is below the minimum {minimum_version} (trustBundle.minimumVersion): a replayed older bundle")
    missing = [key for key in BUNDLE_READS if key not in claims]
    if missing:
        raise jws.BundleError(f"it lacks {', '.join(missing)}")
    return {key: value for key, value in claims.items() if key not in ENVELOPE}
