"""The sealed-secret pointer: the format CDH parses, and nothing but a KBS URI inside."""

from __future__ import annotations

import base64
import json

import pytest

from components.sealed_secret import sealed_secret


def decode(value: str) -> dict:
    prefix, header, body, signature = value.split(".")
    assert (prefix, header, signature) == ("sealed", "fakejwsheader", "fakesignature")
    assert "=" not in body and "+" not in body and "/" not in body, "body must be URL-safe base64 without padding"
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_sealed_secret_is_a_vault_pointer_to_the_kbs_resource():
    assert decode(sealed_secret("kbs:///default/nim-ngc/api-key")) == {
        "version": "0.1.0",
        "type": "vault",
        "name": "kbs:///default/nim-ngc/api-key",
        "provider": "kbs",
        "provider_settings": {},
        "annotations": {},
    }


@pytest.mark.parametrize("uri", ["kbs:///default/a/b", "kbs:///default/nvcr/credentials", "kbs:///repo/x-y/z_1"])
def test_body_never_needs_padding_or_unsafe_characters(uri):
    assert decode(sealed_secret(uri))["name"] == uri


def test_same_uri_gives_the_same_value():
    assert sealed_secret("kbs:///default/a/b") == sealed_secret("kbs:///default/a/b")


@pytest.mark.parametrize("uri", ["https://kbs.example.com/default/a/b", "kbs:///default/a", "kbs:///default/a/b/c", "nim-ngc-api-key"])
def test_rejects_anything_but_a_kbs_resource_uri(uri):
    with pytest.raises(ValueError, match="is not a KBS resource URI"):
        sealed_secret(uri)
