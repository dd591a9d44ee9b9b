"""Names of the Kubernetes objects that configure Trustee, as the operator expects them.

Mounted keys and paths: openshift/trustee-operator v1.2.1 internal/controller/kbsconfig_controller.go
and config/templates/kbs-config-restricted.toml (secrets mount at /etc/<volume>/<key>).
"""

NAMESPACE = "trustee-operator-system"
PACKAGE = "trustee-operator"
KBS_CONFIG = "kbsconfig"
# Created by the operator for a KbsConfig: Service `kbs-service`, port `kbs-port` (8080).
SERVICE = "kbs-service"
SERVICE_PORT = "kbs-port"

CONFIG_MAP = "kbs-config"
CPU_POLICY = "attestation-policy-cpu"
GPU_POLICY = "attestation-policy-gpu"
RESOURCE_POLICY = "resource-policy"
REFERENCE_VALUES = "rvps-reference-values"
AUTH_SECRET = "kbs-auth-public-key"
HTTPS_KEY = "kbs-https-key"
HTTPS_CERT = "kbs-https-certificate"
TOKEN_KEY = "kbs-token-key"
TOKEN_CERT = "kbs-token-certificate"
# The public JWK sealed secrets are verified with, served as a KBS resource (the sealed secrets' `kid`).
SEALED_SECRET_KEY = "sealed-secret-key"
SEALED_SECRET_KEY_ENTRY = "public-jwk"
SEALED_SECRET_KEY_URI = f"kbs:///default/{SEALED_SECRET_KEY}/{SEALED_SECRET_KEY_ENTRY}"
# Each workload's TLS serving key (inference, components/tls.py InferenceCertificates), one key per
# workload: kbs:///default/inference-tls-keys/<workload>.
SERVING_KEYS = "inference-tls-keys"

# trustee-operator 1.2.x, on every reconcile, backs up and deletes (or rewrites, for reference values)
# each ConfigMap its KbsConfig names that lacks this annotation, expecting a TrusteeConfig to recreate it
# (openshift/trustee-operator v1.2.1 internal/controller/migration.go). The value is the one the
# operator writes itself (`MigrationVersion`).
MIGRATED_ANNOTATION = "kbs.confidentialcontainers.org/migrated-from-v1.1.0"
MIGRATED_VALUE = "v1.2.0"

# On the resource-policy ConfigMap: a random value replaced whenever a workload secret's value changes.
# KBS copies its secret resources only when its pod starts; the operator restarts the pod when one
# of the five ConfigMaps it mounts changes, and any change bumps the ConfigMap's resourceVersion
# (openshift/trustee-operator v1.2.1 kbsconfig_controller.go getConfigMapVersionAnnotations).
SECRETS_REVISION_ANNOTATION = "confidential-ai/secret-resources-revision"

# Names a workload secret may not take: they hold Trustee's own configuration.
RESERVED = frozenset(
    {
        CONFIG_MAP, CPU_POLICY, GPU_POLICY, RESOURCE_POLICY, REFERENCE_VALUES, AUTH_SECRET, HTTPS_KEY, HTTPS_CERT, TOKEN_KEY, TOKEN_CERT,
        SEALED_SECRET_KEY, SERVING_KEYS,
    }
)


def serving_key_resource(workload: str) -> str:
    """The logical name (in the kbsResources output) of a workload's TLS serving key."""
    return f"{workload}-tls-key"


def serving_key_uri(workload: str) -> str:
    return f"kbs:///default/{SERVING_KEYS}/{workload}"
