#!/usr/bin/env bash
# Create the Pulumi state backend (an Azure Blob container) and the secrets provider key (Azure Key
# Vault), and let the CI identity use them. Idempotent: re-running converges.
#
#   scripts/bootstrap_state.sh RESOURCE_GROUP LOCATION STORAGE_ACCOUNT KEY_VAULT [CI_PRINCIPAL_OBJECT_ID]
#
# Needs `az login` as someone who may create role assignments in the subscription (Owner or
# User Access Administrator). Access is Entra ID only: shared keys are disabled, and the backend
# authenticates with DefaultAzureCredential (pulumi/docs PR 18272, google/go-cloud PR 3161).
set -euo pipefail

if [ "$#" -lt 4 ] || [ "$#" -gt 5 ]; then
  echo "usage: $0 RESOURCE_GROUP LOCATION STORAGE_ACCOUNT KEY_VAULT [CI_PRINCIPAL_OBJECT_ID]" >&2
  exit 2
fi
rg=$1 location=$2 account=$3 vault=$4 ci_principal=${5:-}
container=pulumi-state
key=pulumi-secrets

# Role assignments take a few minutes to reach the data plane: retry data-plane calls.
retry() {
  local attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if "$@"; then return 0; fi
    echo "waiting for role assignments to propagate (attempt ${attempt}/10)..." >&2
    sleep 30
  done
  return 1
}

grant() { # grant ROLE ASSIGNEE_OBJECT_ID PRINCIPAL_TYPE SCOPE
  az role assignment create --role "$1" --assignee-object-id "$2" --assignee-principal-type "$3" \
    --scope "$4" --output none
}

me=$(az ad signed-in-user show --query id --output tsv)

az group create --name "$rg" --location "$location" --output none

az storage account create --name "$account" --resource-group "$rg" --location "$location" \
  --kind StorageV2 --sku Standard_ZRS --https-only true --min-tls-version TLS1_2 \
  --allow-blob-public-access false --allow-shared-key-access false --output none
# Versioning and soft delete keep every earlier state checkpoint recoverable.
az storage account blob-service-properties update --account-name "$account" --resource-group "$rg" \
  --enable-versioning true --enable-delete-retention true --delete-retention-days 30 \
  --enable-container-delete-retention true --container-delete-retention-days 30 --output none
account_id=$(az storage account show --name "$account" --resource-group "$rg" --query id --output tsv)
grant "Storage Blob Data Contributor" "$me" User "$account_id"
retry az storage container create --name "$container" --account-name "$account" --auth-mode login \
  --public-access off --output none

az keyvault create --name "$vault" --resource-group "$rg" --location "$location" \
  --enable-rbac-authorization true --enable-purge-protection true --retention-days 90 --output none
vault_id=$(az keyvault show --name "$vault" --resource-group "$rg" --query id --output tsv)
grant "Key Vault Crypto Officer" "$me" User "$vault_id"
if ! az keyvault key show --vault-name "$vault" --name "$key" --output none 2>/dev/null; then
  retry az keyvault key create --vault-name "$vault" --name "$key" --kty RSA --size 4096 \
    --ops encrypt decrypt wrapKey unwrapKey --output none
fi

if [ -n "$ci_principal" ]; then
  # The CI identity reads and writes state (and its lock files) and wraps/unwraps the stack keys.
  grant "Storage Blob Data Contributor" "$ci_principal" ServicePrincipal \
    "${account_id}/blobServices/default/containers/${container}"
  grant "Key Vault Crypto User" "$ci_principal" ServicePrincipal "${vault_id}/keys/${key}"
fi

cat <<EOF
State backend:     azblob://${container}?storage_account=${account}
Secrets provider:  azurekeyvault://${vault}.vault.azure.net/keys/${key}

  pulumi login 'azblob://${container}?storage_account=${account}'
  pulumi stack init dev-trusted --secrets-provider 'azurekeyvault://${vault}.vault.azure.net/keys/${key}'
EOF
