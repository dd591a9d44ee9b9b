"""Building blocks of the typed stack config: the model base class, shared field types and rules.

Config is parsed once, at the edge (`stacks.config.load`), into these frozen models. Components
receive typed values and never read `pulumi.Config` themselves.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

import pulumi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel

from stacks import versions


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a stack's config, located by its key path (`peerPods.instanceSizes[1]`)."""

    path: str
    message: str


class Model(BaseModel):
    """Config section: camelCase keys in the stack file, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        # Field docstrings document each key: scripts/config_reference.py reads them from source, not
        # pydantic's use_attribute_docstrings, which parses every model's source at each import.
        # Python's re compiles Field patterns in a fraction of the Rust engine's time (its Unicode
        # \w classes dominate the config import); pydantic searches with them, so they end in \Z.
        regex_engine="python-re",
    )

    def rules(self) -> Iterator[Problem]:
        """Cross-field rules of this model, key paths relative to it. Override to add rules."""
        return iter(())

    def problems(self) -> Iterator[Problem]:
        """This model's rules, then those of every model nested in it, re-rooted under their keys."""
        yield from self.rules()
        for name, field in type(self).model_fields.items():
            yield from nested(field.alias or name, section_problems(getattr(self, name)))


def section_problems(value: object) -> Iterator[Problem]:
    """The rules of a model, or of each model in a list or mapping (paths `[i]` and `key`)."""
    if isinstance(value, Model):
        yield from value.problems()
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from nested(f"[{i}]", section_problems(item))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from nested(str(key), section_problems(item))


def nested(prefix: str, problems: Iterable[Problem]) -> Iterator[Problem]:
    """Re-root problems under the key `prefix`."""
    for problem in problems:
        separator = "" if problem.path.startswith("[") else "."
        yield Problem(f"{prefix}{separator}{problem.path}" if problem.path else prefix, problem.message)


def secret_output(value: SecretStr) -> pulumi.Output[str]:
    """A config secret as a Pulumi secret Output: the only way secrets leave the config models."""
    return pulumi.Output.secret(value.get_secret_value())


# --- Azure -----------------------------------------------------------------------------------

# Public Azure regions by their programmatic name (`az account list-locations --query [].name`).
AZURE_REGIONS = frozenset(
    """
    australiacentral australiacentral2 australiaeast australiasoutheast austriaeast belgiumcentral
    brazilsouth brazilsoutheast canadacentral canadaeast centralindia centralus chilecentral eastasia
    eastus eastus2 francecentral francesouth germanynorth germanywestcentral indonesiacentral
    israelcentral italynorth japaneast japanwest koreacentral koreasouth malaysiawest mexicocentral
    newzealandnorth northcentralus northeurope norwayeast norwaywest polandcentral qatarcentral
    southafricanorth southafricawest southcentralus southeastasia southindia spaincentral swedencentral
    switzerlandnorth switzerlandwest uaecentral uaenorth uksouth ukwest westcentralus westeurope
    westindia westus westus2 westus3
    """.split()
)


def _region(value: str) -> str:
    """an Azure region's programmatic name (eastus2, not East US 2)"""
    if value not in AZURE_REGIONS:
        raise ValueError(f"{value!r} is not an Azure region name (use the programmatic form, e.g. eastus2)")
    return value


AzureRegion = Annotated[str, AfterValidator(_region)]

# The GPU size this toolkit is built for: SEV-SNP CPU + H100 in confidential mode
# (MicrosoftDocs azure-compute-docs, nccadsh100v5-series.md).
CONFIDENTIAL_GPU_SIZE = "Standard_NCC40ads_H100_v5"
# AMD SEV-SNP confidential VM sizes (DCasv5/DCadsv5/ECasv5/ECadsv5 series and NCCadsH100v5). The
# trusted side attests `az-snp-vtpm` evidence, so Intel TDX sizes (DCesv5/ECesv5) are not accepted.
_SNP_SIZE = re.compile(r"^Standard_(DC|EC)\d+a(d)?s_v5$")
_TDX_SIZE = re.compile(r"^Standard_(DC|EC)\d+e(d)?s_v5$")


def confidential_size_problem(size: str) -> str | None:
    """Why `size` cannot host a peer pod VM here, or None when it is an SEV-SNP confidential size."""
    if size == CONFIDENTIAL_GPU_SIZE or _SNP_SIZE.match(size):
        return None
    if (written := azure_spelling(size)) != size:
        # Sizes are compared as written (instanceSizes, each model's machineType, CAA's pod annotation).
        return confidential_size_problem(written) or f"{size} is written in the wrong case: write {written}"
    if _TDX_SIZE.match(size):
        return f"{size} is an Intel TDX size; the trusted side attests AMD SEV-SNP (az-snp-vtpm) only"
    return f"{size} is not a confidential VM size"


def azure_spelling(size: str) -> str:
    """A confidential size spelt as Azure lists it (`standard_dc4as_v5` -> `Standard_DC4as_v5`), else `size`."""
    if size.lower() == CONFIDENTIAL_GPU_SIZE.lower():
        return CONFIDENTIAL_GPU_SIZE
    if match := re.fullmatch(r"standard_(dc|ec)(\d+)([ae]d?s)_v5", size, re.IGNORECASE):
        return f"Standard_{match[1].upper()}{match[2]}{match[3].lower()}_v5"
    return size


def is_gpu_size(size: str) -> bool:
    return size == CONFIDENTIAL_GPU_SIZE


class _Pattern(Protocol):
    def fullmatch(self, value: str) -> object: ...


def matching(pattern: str | _Pattern, expected: str) -> AfterValidator:
    """Validator: the whole value matches `pattern`, else `'<value>' is not <expected>`."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern

    def check(value: str) -> str:
        if not compiled.fullmatch(value):  # `$` alone would let a trailing newline through
            raise ValueError(f"{value!r} is not {expected}")
        return value

    return AfterValidator(check)


OpenShiftVersion = Annotated[str, matching(r"^4\.\d{1,2}\.\d{1,3}$", "an OpenShift version like 4.20.15")]
Guid = Annotated[str, matching(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", "a GUID (lowercase, 8-4-4-4-12)")]


# --- Network ---------------------------------------------------------------------------------


def _cidr(value: str) -> str:
    """an IPv4 network in CIDR notation (10.10.0.0/16), its host bits zero"""
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not an IPv4 CIDR ({err})") from None
    return str(network)


Cidr = Annotated[str, AfterValidator(_cidr)]


def overlapping(cidrs: dict[str, str]) -> Iterator[Problem]:
    """One problem per pair of named CIDRs that overlap, named by the later key."""
    seen: list[tuple[str, ipaddress.IPv4Network]] = []
    for key, cidr in cidrs.items():
        network = ipaddress.IPv4Network(cidr)
        for other_key, other in seen:
            if network.overlaps(other):
                yield Problem(key, f"{cidr} overlaps {other_key} ({other})")
        seen.append((key, network))


# --- URLs and names --------------------------------------------------------------------------

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")


def _https_url(value: str) -> str:
    """https://host[:port] with a DNS hostname and no path"""
    match = re.match(r"^([a-z]+)://([^/:]+)(:\d+)?/?$", value)
    if not match:
        raise ValueError(f"{value!r} is not a URL of the form https://host[:port]")
    scheme, host, port = match.groups()
    if scheme != "https":
        raise ValueError(f"{value} is not https: KBS must only be reached over TLS")
    if not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a DNS hostname")
    if port and not 0 < int(port[1:]) < 65536:
        raise ValueError(f"{port[1:]} is not a TCP port (1-65535)")
    return value.rstrip("/")


HttpsUrl = Annotated[str, AfterValidator(_https_url)]

DnsLabel = Annotated[str, matching(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", "a DNS label (lowercase letters, digits and '-', at most 63)")]
Hostname = Annotated[str, matching(_HOSTNAME, "a DNS name")]


# --- Shared sections -------------------------------------------------------------------------


class StackId(Model):
    """Who is being deployed; injected by the loader from the stack name, never set in config."""

    name: str
    env: str
    role: str


def _manual_only(value: str) -> str:
    if value != "Manual":
        raise ValueError(
            f"{value} is not supported: OLM would upgrade past startingCSV as soon as the catalog moves; "
            "only Manual (the program approves the InstallPlan of the pinned CSV) holds a pin"
        )
    return value


class OperatorPin(Model):
    """An OLM subscription pinned to one CSV, so an operator upgrade is a reviewed config change.

    Approval is always Manual: the program approves exactly the InstallPlan that installs `startingCSV`
    (components/olm.py), so OLM never installs a version nobody pinned.
    """

    channel: str = "stable"
    source: str = "redhat-operators"
    starting_csv: str = Field(alias="startingCSV")
    install_plan_approval: Annotated[str, AfterValidator(_manual_only)] = "Manual"

    def rules(self) -> Iterator[Problem]:
        # Red Hat CSV names come with and without the "v" (rhods-operator.3.4.0).
        if not re.match(r"^[a-z0-9-]+\.v?\d+\.\d+\.\d+$", self.starting_csv):
            yield Problem("startingCSV", f"{self.starting_csv!r} is not a CSV name like operator-name.v1.2.3")


def pin_fits(key: str, pin: OperatorPin, operator: str, cluster_key: str, cluster_version: str, aro: bool = False) -> Iterator[Problem]:
    """One line per way `pin` does not fit the matrix or the cluster's OpenShift version."""
    row = versions.line_of(operator, pin.starting_csv)
    known = versions.lines(operator)
    if row is None:
        supported = ", ".join(f"{r.package} {r.line}.x" for r in known)
        yield Problem(f"{key}.startingCSV", f"{pin.starting_csv} is not in the version matrix ({operator}: {supported}; stacks/versions.py)")
        return
    line = versions.channel_line(pin.channel)
    if line is not None and line != row.line:
        yield Problem(f"{key}.channel", f"{pin.channel} does not serve {pin.starting_csv}; use {' or '.join(row.channels)}")
    openshift = versions.parse(cluster_version)
    if row.fits(openshift):
        return
    others = [f"{r.line} ({' or '.join(r.channels)})" for r in versions.fitting_lines(operator, openshift)]
    fixes = [f"use {operator} {' or '.join(others)} on {cluster_version}"] if others else []
    fitting = versions.fitting_aro_versions(row) if aro else []
    if fitting:
        fixes.append(f"set {cluster_key} to {', '.join(fitting)}")
    fix = " or ".join(fixes) or f"no {operator} line in the matrix supports {cluster_version}"
    yield Problem(
        f"{key}.startingCSV",
        f"{pin.starting_csv} ({operator} {row.line}) needs OpenShift {row.openshift_range}, but {cluster_key} is {cluster_version}: {fix}",
    )
