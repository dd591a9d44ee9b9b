#!/usr/bin/env bash
# Create the Pulumi state backends and secrets providers, one per side (docs/pipelines.md, "State").
# Idempotent: re-running converges.
#
#   scripts/bootstrap_state.sh trusted STATE_URL TRANSIT_KEY
#   scripts/bootstrap_state.sh cloud RESOURCE_GROUP LOCATION STORAGE_ACCOUNT KEY_VAULT [CI_PRINCIPAL_OBJECT_ID]
#
# trusted: on premises, on the trusted runner. STATE_URL is file://<dir> or s3://<bucket>?endpoint=<host>
#   of an on-premises object store; TRANSIT_KEY is created in Vault/OpenBao's transit engine (needs
#   VAULT_ADDR and a VAULT_TOKEN allowed to manage transit). Nothing here touches the cloud: the trusted
#   stacks' state and the key that encrypts their secrets never leave the trusted side (scripts/custody.py).
# cloud: an Azure Blob container and a Key Vault key for the cloud stacks only. Needs `az login` as someone
#   who may create role assignments (Owner or User Access Administrator). Access is Entra ID only: shared
#   keys are disabled, and the backend authenticates with DefaultAzureCredential (pulumi/docs PR 18272).
set -euo pipefail

usage() {
  echo "usage: $0 trusted STATE_URL TRANSIT_KEY | $0 cloud RESOURCE_GROUP LOCATION STORAGE_ACCOUNT KEY_VAULT [CI_PRINCIPAL_OBJECT_ID]" >&2
  exit 2
}

trusted() { # trusted STATE_URL TRANSIT_KEY
  local url=$1 key=$2
  case "$url" in
    file://*)
      mkdir -p "${url#file://}"
      chmod 700 "${url#file://}"
      ;;
    s3://*endpoint=*)
      case "$url" in
        *amazonaws.com* | *core.windows.net* | *googleapis.com*)
          echo "$url is a public cloud's object store: the trusted state stays on premises" >&2
          exit 2
          ;;
      esac
      ;;
    *)
      echo "$url is not an on-premises backend: use file://<dir> or s3://<bucket>?endpoint=<on-premises host>" >&2
      exit 2
      ;;
  esac
  if ! vault secrets list -format=json | grep -q '"transit/"'; then
    vault secrets enable transit
  fi
  if ! vault read -format=json "transit/keys/${key}" > /dev/null 2>&1; then
    vault write -f "transit/keys/${key}" type=aes256-gcm96
  fi
  cat <<OUT
State backend (trusted stacks only):  ${url}
Secrets provider:                     hashivault://${key} (VAULT_ADDR and VAULT_TOKEN on the trusted runner)

  pulumi login '${url}'
  pulumi stack init dev-trusted --secrets-provider 'hashivault://${key}'
  pulumi stack init prod-trusted --secrets-provider 'hashivault://${key}'
OUT
}

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

cloud() { # cloud RESOURCE_GROUP LOCATION STORAGE_ACCOUNT KEY_VAULT [CI_PRINCIPAL_OBJECT_ID]
  local rg=$1 location=$2 account=$3 vault=$4 ci_principal=${5:-}
  local container=pulumi-state key=pulumi-secrets me account_id vault_id
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
    # The CI identity reads and writes the cloud stacks' state (and its lock files) and wraps/unwraps their keys.
    grant "Storage Blob Data Contributor" "$ci_principal" ServicePrincipal \
      "${account_id}/blobServices/default/containers/${container}"
    grant "Key Vault Crypto User" "$ci_principal" ServicePrincipal "${vault_id}/keys/${key}"
  fi

  cat <<OUT
State backend (cloud stacks only):  azblob://${container}?storage_account=${account}
Secrets provider:                   azurekeyvault://${vault}.vault.azure.net/keys/${key}

  pulumi login 'azblob://${container}?storage_account=${account}'
  pulumi stack init dev-cloud --secrets-provider 'azurekeyvault://${vault}.vault.azure.net/keys/${key}'
  pulumi stack init prod-cloud --secrets-provider 'azurekeyvault://${vault}.vault.azure.net/keys/${key}'
OUT
}

case "${1:-}" in
  trusted) [ "$#" -eq 3 ] || usage; trusted "$2" "$3" ;;
  cloud)
    if [ "$#" -lt 5 ] || [ "$#" -gt 6 ]; then usage; fi
    cloud "${@:2}"
    ;;
  *) usage ;;
esac
