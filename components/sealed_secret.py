"""Sealed secrets: the pointer a Kubernetes Secret holds instead of a secret value.

The confidential data hub in the pod VM recognises the `sealed.` prefix, attests to KBS and replaces
the value with the resource it names (guest-components confidential-data-hub docs/SEALED_SECRET.md).
The pointer is public: it names a KBS resource, never its value.
"""

from __future__ import annotations

import base64
import json

KBS_URI_PREFIX = "kbs:///"
# Marks a Secret whose every value is a sealed secret; the policy pack refuses plaintext in it
# (policies/rules.py KBS_RESOURCE_LABEL, docs/security-model.md).
KBS_RESOURCE_LABEL = "confidential-ai/kbs-resource"


def sealed_secret(resource_uri: str) -> str:
    """`sealed.fakejwsheader.<base64url(JSON)>.fakesignature` of a `vault` secret served by KBS.

    The body is URL-safe base64 without padding, as CDH decodes it (guest-components
    confidential-data-hub hub/src/secret/mod.rs, URL_SAFE_NO_PAD). Unsigned ("fake") headers are what
    the guest components of the pinned OSC accept; newer guest components want an ES256 signature
    unless SKIP_SEALED_SECRET_VERIFICATION is set.
    """
    if not resource_uri.startswith(KBS_URI_PREFIX) or resource_uri.count("/") != 5:
        raise ValueError(f"{resource_uri!r} is not a KBS resource URI like kbs:///default/<secret>/<key>")
    body = {
        "version": "0.1.0",
        "type": "vault",
        "name": resource_uri,
        "provider": "kbs",
        "provider_settings": {},
        "annotations": {},
    }
    encoded = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"sealed.fakejwsheader.{encoded}.fakesignature"
