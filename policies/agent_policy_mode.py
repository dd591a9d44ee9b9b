"""Policy: no agent policy in audit mode on a production stack.

An agent policy in audit mode (trusted config `agentPolicy.mode: audit`) makes the Kata agent serve every
request its rules refuse: it sets `AllowRequestsFailingPolicy := true`, and the agent then logs
`policy: ignoring error for <Request>` and goes on (kata-containers src/agent/policy/src/policy.rs
allow_request). On the cloud stack that policy travels inside each workload's initdata annotation, so the
pack reads it where the pod VM will: gzip + base64 of the initdata TOML, `data."policy.rego"`.

Production is what the stack says it is: a Pulumi stack tag `environment` (or `env`), the environment part
of the stack name (`<env>-cloud`), or the `environment` tag the stack puts on its cloud resources, naming
`prod` or `production` (or beginning with `prod-`).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import EnforcementLevel, ReportViolation, StackValidationArgs, StackValidationPolicy

INITDATA_ANNOTATION = "io.katacontainers.config.hypervisor.cc_init_data"
_AUDIT = re.compile(r"^AllowRequestsFailingPolicy\s*:?=\s*true\s*$", re.MULTILINE)
_PRODUCTION = re.compile(r"^(prod|production)(-.*)?$")
_ENVIRONMENT_TAGS = ("environment", "env")
_WORKLOAD_TYPES = {
    "kubernetes:core/v1:Pod": ("metadata",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "metadata"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "metadata"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "metadata"),
    "kubernetes:batch/v1:Job": ("spec", "template", "metadata"),
}
_INFERENCE_SERVICE = "kubernetes:serving.kserve.io/v1beta1:InferenceService"


def _get(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _annotations(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(where, annotations) of each pod template a resource makes: KServe copies an InferenceService's
    annotations to its pods, a component's own win."""
    if resource_type in _WORKLOAD_TYPES:
        path = _WORKLOAD_TYPES[resource_type]
        yield ".".join(path), _get(props, *path, "annotations") or {}
    elif resource_type == _INFERENCE_SERVICE:
        outer = _get(props, "metadata", "annotations") or {}
        for component in ("predictor", "transformer", "explainer"):
            spec = _get(props, "spec", component)
            if isinstance(spec, Mapping):
                yield f"spec.{component}", {**outer, **(spec.get("annotations") or {})}


def agent_policy(initdata_annotation: Any) -> str | None:
    """The agent policy inside an initdata annotation, or None when it cannot be read."""
    try:
        document = gzip.decompress(base64.b64decode(str(initdata_annotation), validate=True)).decode()
        policy = tomllib.loads(document)["data"]["policy.rego"]
    except (binascii.Error, OSError, EOFError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None
    return policy if isinstance(policy, str) else None


def in_audit_mode(policy: str) -> bool:
    return bool(_AUDIT.search(policy))


def production_reason(args: StackValidationArgs) -> str | None:
    """Why the stack counts as production, or None."""
    for key in _ENVIRONMENT_TAGS:
        if _PRODUCTION.match(str(args.stack_tags.get(key, ""))):
            return f"stack tag {key}={args.stack_tags[key]}"
    for resource in args.resources:
        stack = resource.urn.split("::", 1)[0].split(":", 2)[-1]
        environment = stack.rsplit("-", 1)[0] if "-" in stack else stack
        if _PRODUCTION.match(environment):
            return f"stack {stack}"
        tags = _get(resource.props, "tags")
        for key in _ENVIRONMENT_TAGS:
            if isinstance(tags, Mapping) and _PRODUCTION.match(str(tags.get(key, ""))):
                return f"{resource.name} tagged {key}={tags[key]}"
    return None


def agent_policy_enforced_in_production(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    reason = production_reason(args)
    if reason is None:
        return
    for resource in args.resources:
        for where, pod_annotations in _annotations(resource.resource_type, resource.props):
            if INITDATA_ANNOTATION not in pod_annotations:
                continue
            policy = agent_policy(pod_annotations[INITDATA_ANNOTATION])
            if policy is not None and in_audit_mode(policy):
                report_violation(
                    f"{where} runs an agent policy in audit mode (it refuses nothing) on a production stack ({reason}): "
                    "set agentPolicy.mode: enforce on the trusted stack",
                    resource.urn,
                )


AGENT_POLICY_ENFORCED = StackValidationPolicy(
    name="agent-policy-enforced-in-production",
    description="On a production stack (tagged, named or configured so), every pod VM's agent policy enforces: no audit mode.",
    enforcement_level=EnforcementLevel.MANDATORY,
    validate=agent_policy_enforced_in_production,
)
