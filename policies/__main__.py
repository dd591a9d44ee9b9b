"""The confidential-ai CrossGuard pack: `pulumi preview --policy-pack policies` (policies live in rules.py)."""

from pulumi_policy import EnforcementLevel, PolicyPack

from rules import POLICIES

PolicyPack(
    name="confidential-ai-guardrails",
    description="Invariants of the two-cluster confidential AI toolkit: confidential pod VMs, sealed secrets, a closed KBS, protected keys, separate clusters.",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
