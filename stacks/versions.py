"""The version matrix: which operator versions install on which OpenShift, one row per line, each with its source.

Config validation (stacks/config) refuses a set that does not fit with one line naming both keys and
what would fit; the preflight reads ARO's install versions live and falls back to `ARO_INSTALL_VERSIONS`.
Moving to a new operator version: add or extend its row here (with the source you checked), then
change the pin in the stack file; the preview shows the Subscription's new startingCSV.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Version = tuple[int, ...]

# `az aro get-versions -l eastus` as recorded on 2026-07-07 by Azure/ARO-RP
# python/az/aro/azext_aro/tests/latest/integration/recordings/test_aro_get_versions.yaml (commit a3df9d17;
# tests/fixtures/azure/aro_versions.json). ARO offers no 4.16 or 4.17 install any more. The preflight
# reads the region's list live; refresh this table from it.
ARO_INSTALL_VERSIONS = ("4.18.26", "4.18.34", "4.19.20", "4.19.24", "4.20.15")
ARO_VERSIONS_SOURCE = "az aro get-versions as of 2026-07; python -m scripts.preflight reads your region's list"

_CSV = re.compile(r"^(?P<package>[a-z0-9-]+)\.v?(?P<version>\d+\.\d+\.\d+)$")
_CHANNEL_LINE = re.compile(r"^(?:stable|fast|eus)-(?P<line>\d+\.\d+)$")


def parse(version: str) -> Version:
    return tuple(int(part) for part in version.split("."))


def show(version: Version) -> str:
    return ".".join(map(str, version))


def csv_version(csv: str) -> tuple[str, Version] | None:
    """`rhods-operator.3.4.3` -> ("rhods-operator", (3, 4, 3)); None for a name that is not package.[v]X.Y.Z."""
    match = _CSV.match(csv)
    return (match["package"], parse(match["version"])) if match else None


def channel_line(channel: str) -> str | None:
    """The release line a channel is tied to (`stable-3.4` -> `3.4`), None for an unversioned channel."""
    match = _CHANNEL_LINE.match(channel)
    return match["line"] if match else None


@dataclass(frozen=True)
class Line:
    """One release line of an operator and the OpenShift versions it installs on."""

    operator: str
    package: str
    line: str
    """major.minor of the CSV versions this row covers."""
    openshift_min: Version
    openshift_max: Version | None
    """Highest OpenShift minor (major.minor) this line is published for; None: no upper bound published."""
    source: str
    channels: tuple[str, ...] = ("stable",)
    dsc_api: Literal["v1", "v2"] | None = None
    """OpenShift AI only: the DataScienceCluster/DSCInitialization API version the line serves."""

    def fits(self, openshift: Version) -> bool:
        if openshift < self.openshift_min:
            return False
        return self.openshift_max is None or openshift[: len(self.openshift_max)] <= self.openshift_max

    @property
    def openshift_range(self) -> str:
        low = show(self.openshift_min)
        return f"{low} or later" if self.openshift_max is None else f"{low}-{show(self.openshift_max)}"


OPENSHIFT_AI = "OpenShift AI"
OSC = "OSC"
TRUSTEE = "Trustee"

# Where the OpenShift AI rows come from: the catalogs Red Hat builds per OpenShift minor,
# red-hat-data-services/RHOAI-Build-Config (commit f4889bc674df16ef267ef00b2329326934935e76),
# catalog/rhoai-<line>/v4.<minor>/rhods-operator/catalog.yaml.
_RHOAI_CATALOGS = "red-hat-data-services/RHOAI-Build-Config@f4889bc6 catalog/rhoai-{line}/v4.{{{minors}}}/rhods-operator/catalog.yaml"

MATRIX: tuple[Line, ...] = (
    # 3.x is published only for OpenShift 4.19+; it serves DataScienceCluster/DSCInitialization v2,
    # KServe RawDeployment only.
    Line(OPENSHIFT_AI, "rhods-operator", "3.4", (4, 19), (4, 22),
         _RHOAI_CATALOGS.format(line="3.4", minors="19..22") + ": channel stable-3.4, head rhods-operator.3.4.4", ("stable-3.4",), "v2"),
    Line(OPENSHIFT_AI, "rhods-operator", "3.3", (4, 19), (4, 21),
         _RHOAI_CATALOGS.format(line="3.3", minors="19..21") + ": channel stable-3.3", ("stable-3.3",), "v2"),
    # DSC/DSCI v1, KServe `serving` + `defaultDeploymentMode`, kserve.nim since 2.19 (opendatahub-io/
    # opendatahub-operator v2.35.0 config/crd/bases). catalog/rhoai-2.25/v4.16 holds no catalog; the
    # rhoai-3.4 catalog for 4.22 also lists 2.25.0-2.25.8 (upgrade sources, not the line's newest).
    Line(OPENSHIFT_AI, "rhods-operator", "2.25", (4, 17), (4, 21),
         _RHOAI_CATALOGS.format(line="2.25", minors="17..21") + ": channels stable-2.25, eus-2.25, head rhods-operator.2.25.10",
         ("stable-2.25", "eus-2.25"), "v1"),
    # OSC's repository publishes no OpenShift range, and its release notes (docs.redhat.com
    # openshift_sandboxed_containers/1.12, /1.13) were not readable here: these lower bounds are
    # conservative until checked there. 4.19.28 is the CoCo pattern's tested minimum, not an OSC limit.
    Line(OSC, "sandboxed-containers-operator", "1.13", (4, 18, 38), None,
         "docs.redhat.com/en/documentation/openshift_sandboxed_containers/1.13 release notes (bound 4.18.38 unconfirmed here)"),
    Line(OSC, "sandboxed-containers-operator", "1.12", (4, 19, 28), None,
         "validatedpatterns/docs@7ead7b2e content/patterns/coco-pattern/coco-pattern-tested-environments.adoc: "
         "OSC 1.12 tested on OpenShift 4.19.28+ (a tested minimum; OSC's own 1.12 range unconfirmed here)"),
    # Red Hat build of Trustee 1.2: the operator documents mirroring its `stable` channel from the
    # redhat-operator-index of OpenShift 4.17 to 4.21 (one ImageSetConfiguration per minor).
    Line(TRUSTEE, "trustee-operator", "1.2", (4, 17), (4, 21),
         "openshift/trustee-operator@v1.2.1 docs/disconnected/imageset-config-4.{17..21}.yaml: channel stable in redhat-operator-index v4.17-v4.21"),
)


def lines(operator: str) -> tuple[Line, ...]:
    return tuple(row for row in MATRIX if row.operator == operator)


def line_of(operator: str, csv: str) -> Line | None:
    parsed = csv_version(csv)
    if parsed is None:
        return None
    package, version = parsed
    return next((row for row in lines(operator) if row.package == package and row.line == show(version[:2])), None)


def openshift_ai_line(csv: str) -> Line:
    """The OpenShift AI row of a validated pin (config validation refuses a CSV outside the matrix)."""
    row = line_of(OPENSHIFT_AI, csv)
    assert row is not None, f"{csv} is not in the version matrix"
    return row


def fitting_aro_versions(row: Line) -> list[str]:
    return [v for v in ARO_INSTALL_VERSIONS if row.fits(parse(v))]


def fitting_lines(operator: str, openshift: Version) -> list[Line]:
    return [row for row in lines(operator) if row.fits(openshift)]
