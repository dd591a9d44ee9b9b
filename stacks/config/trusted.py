"""Config of a `<env>-trusted` stack: the on-premises cluster that runs Trustee."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from stacks.config.base import HttpsUrl, Model, OperatorPin, StackId


class KbsSettings(Model):
    url: HttpsUrl
    """Public URL of the KBS as the pod VMs reach it; its host is the Route's hostname."""
    operator: OperatorPin


class TrustedConfig(Model):
    stack: StackId
    role: Literal["trusted"]
    kubeconfig: SecretStr
    """Admin kubeconfig of the trusted cluster (secret config)."""
    kbs: KbsSettings
