"""The initdata document the pod VMs measure: how they reach KBS and which agent requests they refuse.

Pure: `render_initdata` turns inputs into bytes, and everything published (annotation value, digest,
PCR 8 reference value) is computed from those same bytes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property

from components.templating import render
from stacks.config.trusted import AGENT_REQUESTS

_PCR_BANK_ZEROS = bytes(32)


@dataclass(frozen=True)
class Initdata:
    document: bytes
    """The initdata TOML, byte for byte what the guest hashes."""

    @cached_property
    def digest(self) -> str:
        """sha256 of the document, hex (the `algorithm = "sha256"` the document declares)."""
        return hashlib.sha256(self.document).hexdigest()

    @cached_property
    def pcr8(self) -> str:
        """PCR 8 after the guest extends it once with the digest from its reset value (32 zero bytes).

        On Azure SNP vTPM the digest lands in PCR 8 (guest-components attestation-agent/src/initdata.rs).
        """
        return hashlib.sha256(_PCR_BANK_ZEROS + bytes.fromhex(self.digest)).hexdigest()

    @cached_property
    def annotation(self) -> str:
        """`io.katacontainers.config.hypervisor.cc_init_data`: gzip (no name, mtime 0), standard base64, one line."""
        return base64.b64encode(gzip.compress(self.document, mtime=0)).decode()


def render_agent_policy(denied_requests: Collection[str]) -> str:
    return render("initdata/agent-policy.rego.j2", requests=[(r, r not in denied_requests) for r in AGENT_REQUESTS])


def render_initdata(kbs_url: str, kbs_ca_pem: str, denied_requests: Collection[str]) -> Initdata:
    values = {"kbs_url": kbs_url, "kbs_ca_pem": kbs_ca_pem}
    document = render(
        "initdata/initdata.toml.j2",
        aa_toml=render("initdata/aa.toml.j2", **values),
        cdh_toml=render("initdata/cdh.toml.j2", **values),
        policy_rego=render_agent_policy(denied_requests),
    )
    return Initdata(document.encode())
