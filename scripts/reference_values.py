"""Reference values read from a pod VM's attestation evidence: `python -m scripts.reference_values EVIDENCE.json... [--env ENV [--write]]`.

Reads Azure SEV-SNP vTPM evidence as the attester sends it (the capture pod prints it, docs/operations.md)
in any layout Trustee's az-snp-vtpm verifier accepts, checks what can be checked offline (PCR list
against the quote's digest, HCL report shape, SNP report version and VMPL, report signed by the VCEK
that was issued for its TCB), and prints for review all 24 PCRs, the SNP launch measurement and the
reported TCB. With `--env ENV` it shows what would change in `stacks/Pulumi.ENV-trusted.yaml`; with
`--write` it changes it, keeping comments: the value of every PCR the config pins and the measurement
are appended next to the current ones (a rollover), and `minimumTcb` becomes the lowest reported TCB of
the evidence given, component by component. PCR 8 is never written: it is computed from each workload's
initdata. Give the evidence of every pod VM size the environment runs: one minimum serves them all.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts import az_snp_evidence
from scripts.az_snp_evidence import Evidence, EvidenceError, Tcb
from scripts.cli import ArgumentParser, environment
from scripts.offline.stackfile import STACKS_DIR, StackFileError
from scripts.stack_file_edit import StackFileEdit

PROG = "python -m scripts.reference_values"
INITDATA_PCR = 8
TCB_FIELDS = ("bootloader", "tee", "snp", "microcode")


class CannotRead(Exception):
    """A one-line reason, printed as is."""


def read_evidence(path: Path) -> Evidence:
    try:
        document = json.loads(path.read_bytes())
    except OSError as err:
        raise CannotRead(f"{path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CannotRead(f"{path}: not JSON ({err})") from None
    try:
        return az_snp_evidence.read(document)
    except EvidenceError as err:
        raise CannotRead(f"{path}: {err}") from None


def describe(path: Path, evidence: Evidence) -> str:
    """What the evidence says, for a reviewer."""
    tcb = evidence.reported_tcb
    lines = [
        f"{path}: az-snp-vtpm evidence v{evidence.layout}, SNP report version {evidence.report_version}, VMPL {evidence.vmpl}",
        f"  processor:    {evidence.processor}",
        f"  reported TCB: bootloader {tcb.bootloader}, tee {tcb.tee}, snp {tcb.snp}, microcode {tcb.microcode}",
        f"  measurement:  {evidence.measurement}",
        f"  guest policy: debug {'allowed' if evidence.debug_allowed else 'off'}, migration agent {'allowed' if evidence.migrate_ma else 'off'}",
        "  PCRs (SHA-256):",
    ]
    for i, value in enumerate(evidence.pcrs):
        note = "  (initdata: computed per workload, never written)" if i == INITDATA_PCR else ""
        lines.append(f"    pcr{i:02} {value}{note}")
    return "\n".join(lines)


def lowest_tcb(evidence: Sequence[Evidence]) -> Tcb:
    """The component-wise minimum: a floor every one of these hosts meets."""
    return Tcb(*(min(getattr(e.reported_tcb, field) for e in evidence) for field in TCB_FIELDS))


def apply(edit: StackFileEdit, evidence: Sequence[Evidence]) -> list[str]:
    """Write the evidence's values into the trusted stack file's referenceValues; the changes, one line each."""
    pinned = edit.get("referenceValues.pcrs")
    if not isinstance(pinned, dict) or not pinned:
        raise StackFileError(f"{edit.path}: referenceValues.pcrs pins no PCRs; list the PCRs to pin first (docs/trusted-cluster.md)")
    changes = []
    for key in sorted(pinned):
        number = int(key.removeprefix("pcr")) if key.removeprefix("pcr").isdigit() else None
        if number is None or not 0 <= number < az_snp_evidence.PCR_COUNT:
            raise StackFileError(f"{edit.path}: referenceValues.pcrs.{key} is not a PCR name like pcr03")
        if number == INITDATA_PCR:
            continue  # computed from the initdata, never from one pod VM's evidence
        for e in evidence:
            if edit.append_unique(f"referenceValues.pcrs.{key}", e.pcrs[number]):
                changes.append(f"referenceValues.pcrs.{key}: + {e.pcrs[number]}")
    for e in evidence:
        if edit.append_unique("referenceValues.measurements", e.measurement):
            changes.append(f"referenceValues.measurements: + {e.measurement}")
    if any(c.startswith("referenceValues.measurements") for c in changes) and edit.get("referenceValues.unpinnedMeasurementReason") is not None:
        # StackFileEdit removes no key: the reviewer deletes it (the config refuses it next to a measurement).
        changes.append("referenceValues.unpinnedMeasurementReason: delete this line by hand, the measurement is pinned now")
    floor = lowest_tcb(evidence).as_dict()
    current = edit.get("referenceValues.minimumTcb")
    if current != floor:
        edit.set("referenceValues.minimumTcb", floor)
        changes.append(f"referenceValues.minimumTcb: {_tcb_text(current)} -> {_tcb_text(floor)}")
    return changes


def _tcb_text(tcb: object) -> str:
    if not isinstance(tcb, dict):
        return "(unset)"
    return ", ".join(f"{field} {tcb.get(field)}" for field in TCB_FIELDS)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("evidence", type=Path, nargs="+", metavar="EVIDENCE.json", help="az-snp-vtpm evidence (v0, v1 or v2), one file per pod VM size")
    parser.add_argument("--env", type=environment, help="show what would change in stack ENV-trusted")
    parser.add_argument("--write", action="store_true", help="write the changes into stacks/Pulumi.ENV-trusted.yaml (needs --env)")
    parser.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="where the Pulumi.<stack>.yaml files are (default: stacks/)")
    args = parser.parse_args(argv)
    if args.write and not args.env:
        parser.error("--write needs --env ENV")
    try:
        evidence = [read_evidence(path) for path in args.evidence]
    except CannotRead as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    for path, e in zip(args.evidence, evidence, strict=True):
        print(describe(path, e))
    if len(evidence) > 1:
        print(f"lowest reported TCB: {_tcb_text(lowest_tcb(evidence).as_dict())}")
    if not args.env:
        return 0
    stack_file = args.stacks_dir / f"Pulumi.{args.env}-trusted.yaml"
    try:
        edit = StackFileEdit.read(stack_file)
        changes = apply(edit, evidence)
        if args.write and edit.changed:
            edit.write()
    except StackFileError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {stack_file}: cannot write it: {err.strerror or err}", file=sys.stderr)
        return 2
    verb = "changed" if args.write else "would change (--write to apply)"
    print(f"\n{stack_file} {verb}:" if changes else f"\n{stack_file}: already lists these values")
    for change in changes:
        print(f"  {change}")
    if changes and args.write:
        print(f"next: review the diff, pulumi up -s {args.env}-trusted, roll the cloud side, then remove the old values (docs/operations.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
