#!/usr/bin/env bash
# Deploy, inspect or remove an amplihack hive in Azure Container Apps (main.bicep).
#
#   deploy.sh PARAMS_JSON [--resource-group RG] [--location L] [--no-broker]
#   deploy.sh PARAMS_JSON --status  [--resource-group RG]
#   deploy.sh PARAMS_JSON --cleanup [--resource-group RG] [--yes]
#
# PARAMS_JSON is what `amplihack-hive start --hive NAME --target azure --dry-run` writes
# (<hive dir>/deploy/azure/parameters.json). It holds no secret: they come from the
# environment and go straight to `az` as secure template parameters, which Container Apps
# stores as secrets:
#   AMPLIHACK_EH_CONNECTION_STRING / AMPLIHACK_SB_CONNECTION_STRING (the azure_* transports),
#   or AMPLIHACK_MEMORY_CONNECTION_STRING (any transport; required for redis);
#   AMPLIHACK_BLOB_CONNECTION_STRING (state_store blob; else a storage account is created);
#   AMPLIHACK_HIVE_SECRET (the key messages are signed with; else the keys of the hive's own
#   secret.json, <hive dir>/secret.json beside PARAMS_JSON's deploy/azure/ folder);
#   AMPLIHACK_REGISTRY_SERVER, AMPLIHACK_REGISTRY_USERNAME, AMPLIHACK_REGISTRY_PASSWORD.
# The secrets are never echoed, and tracing is switched off so `bash -x deploy.sh` cannot
# print them either.
#
# Exit codes: 0 ok, 1 failure (az failed, a secret or file missing), 2 bad arguments.

{ set +x; } 2>/dev/null
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TEMPLATE="$HERE/main.bicep"
USAGE="usage: deploy.sh PARAMS_JSON [--resource-group RG] [--location L] [--no-broker] | PARAMS_JSON --status [--resource-group RG] | PARAMS_JSON --cleanup [--resource-group RG] [--yes]"

usage_error() {
    echo "deploy.sh: error: $1" >&2
    echo "$USAGE" >&2
    exit 2
}

fail() {
    echo "deploy.sh: error: $1" >&2
    exit 1
}

params=""
resource_group=""
location=""
action="deploy"
assume_yes=0
no_broker=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) echo "$USAGE"; exit 0 ;;
        --resource-group|-g)
            [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
            resource_group="$2"; shift 2 ;;
        --location|-l)
            [[ $# -ge 2 && -n "$2" ]] || usage_error "$1 needs a value"
            location="$2"; shift 2 ;;
        --status)
            [[ "$action" == "deploy" ]] || usage_error "give only one of --status, --cleanup"
            action="status"; shift ;;
        --cleanup)
            [[ "$action" == "deploy" ]] || usage_error "give only one of --status, --cleanup"
            action="cleanup"; shift ;;
        --yes|-y) assume_yes=1; shift ;;
        --no-broker) no_broker=1; shift ;;
        -*) usage_error "unknown option $1" ;;
        *)
            [[ -z "$params" ]] || usage_error "unexpected argument $1"
            params="$1"; shift ;;
    esac
done

[[ -n "$params" ]] || usage_error "PARAMS_JSON is required"
[[ -f "$params" ]] || fail "no parameters file $params (render it with: amplihack-hive start --hive NAME --target azure --dry-run)"
command -v python3 >/dev/null 2>&1 || fail "python3 is needed to read $params"

# hiveName, transport and stateStore of the parameters file, one per line.
if ! meta="$(python3 - "$params" <<'PY'
import json, sys
values = {k: v.get("value") for k, v in json.load(open(sys.argv[1]))["parameters"].items()}
for key in ("hiveName", "transport", "stateStore"):
    print(values.get(key) or "")
PY
)"; then
    fail "$params is not a parameters file of amplihack-hive"
fi
{ read -r hive; read -r transport; read -r state_store; } <<<"$meta"
[[ "$hive" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] || fail "$params names no valid hive"
resource_group="${resource_group:-amplihack-$hive}"
command -v az >/dev/null 2>&1 || fail "the Azure CLI \`az\` is not installed (https://aka.ms/azure-cli), then run: az login"

hive_apps() {
    az containerapp list --resource-group "$resource_group" \
        --query "[?tags.\"amplihack-hive\"=='$hive'].name" --output tsv
}

status() {
    az group show --name "$resource_group" --output none 2>/dev/null \
        || fail "resource group $resource_group does not exist (nothing deployed?)"
    local apps
    apps="$(hive_apps)"
    [[ -n "$apps" ]] || { echo "hive $hive: no container apps in $resource_group"; exit 1; }
    echo "hive $hive in resource group $resource_group:"
    printf '%-28s %-12s %-12s %-7s %s\n' APP RUNNING PROVISIONED AGENTS REVISION
    local app
    while read -r app; do
        [[ -n "$app" ]] || continue
        az containerapp show --resource-group "$resource_group" --name "$app" \
            --query "[name, properties.runningStatus, properties.provisioningState, length(properties.template.containers), properties.latestReadyRevisionName]" \
            --output tsv | tr '\n' '\t' | awk -F'\t' '{printf "%-28s %-12s %-12s %-7s %s\n", $1, $2, $3, $4, $5}'
    done <<<"$apps"
}

cleanup() {
    az group show --name "$resource_group" --output none 2>/dev/null \
        || { echo "resource group $resource_group does not exist: nothing to clean up"; return 0; }
    local owner
    owner="$(az group show --name "$resource_group" --query "tags.\"amplihack-hive\"" --output tsv)"
    local what
    if [[ "$owner" == "$hive" ]]; then
        what="resource group $resource_group (created for hive $hive, with everything in it)"
    else
        what="hive $hive's resources in resource group $resource_group (tagged amplihack-hive=$hive)"
    fi
    if [[ "$assume_yes" -ne 1 ]]; then
        [[ -t 0 ]] || fail "refusing to delete $what without --yes (no terminal to confirm on)"
        read -r -p "delete $what? [y/N] " answer
        [[ "$answer" == "y" || "$answer" == "Y" || "$answer" == "yes" ]] || { echo "nothing deleted"; exit 1; }
    fi
    if [[ "$owner" == "$hive" ]]; then
        az group delete --name "$resource_group" --yes --no-wait
        echo "deleting $what (runs in the background; see: az group show --name $resource_group)"
        return 0
    fi
    local app
    while read -r app; do
        [[ -n "$app" ]] || continue
        echo "deleting container app $app"
        az containerapp delete --resource-group "$resource_group" --name "$app" --yes --output none
    done <<<"$(hive_apps)"
    local ids
    ids="$(az resource list --resource-group "$resource_group" --tag "amplihack-hive=$hive" --query "[].id" --output tsv)"
    if [[ -n "$ids" ]]; then
        echo "deleting the hive's other resources (environment, logs, broker, storage)"
        # shellcheck disable=SC2086  # one id per word
        az resource delete --ids $ids --output none
    fi
    echo "deleted $what"
}

deploy() {
    [[ -f "$TEMPLATE" ]] || fail "template $TEMPLATE not found"
    local broker=""
    case "$transport" in
        azure_event_hubs) broker="${AMPLIHACK_EH_CONNECTION_STRING:-${AMPLIHACK_MEMORY_CONNECTION_STRING:-}}" ;;
        azure_service_bus) broker="${AMPLIHACK_SB_CONNECTION_STRING:-${AMPLIHACK_MEMORY_CONNECTION_STRING:-}}" ;;
        redis) broker="${AMPLIHACK_MEMORY_CONNECTION_STRING:-}"
               [[ -n "$broker" ]] || fail "transport redis: set AMPLIHACK_MEMORY_CONNECTION_STRING to the Redis URL the agents use (it is never written to a file)" ;;
        *) fail "$params: transport '$transport' cannot be deployed to Azure (use redis, azure_event_hubs or azure_service_bus)" ;;
    esac

    if ! az group show --name "$resource_group" --output none 2>/dev/null; then
        local where="${location:-${AMPLIHACK_AZURE_LOCATION:-eastus}}"
        echo "creating resource group $resource_group in $where"
        az group create --name "$resource_group" --location "$where" \
            --tags "amplihack-hive=$hive" --output none
    fi

    local args=(deployment group create --resource-group "$resource_group"
                --name "amplihack-$hive" --template-file "$TEMPLATE"
                --parameters "@$params")
    local passed=()
    [[ -z "$location" ]] || args+=(--parameters "location=$location")
    if [[ -n "$broker" ]]; then
        args+=(--parameters "connectionString=$broker")
        passed+=(connectionString)
        # An Azure namespace given by its connection string: the template creates the hub /
        # topic and the per-agent entities in it (it must be in this resource group).
        if [[ "$broker" =~ [Ee]ndpoint=sb://([A-Za-z0-9-]+)\. ]]; then
            args+=(--parameters "brokerNamespaceName=${BASH_REMATCH[1]}")
        fi
    fi
    [[ "$no_broker" -eq 0 ]] || args+=(--parameters createBroker=false)
    local hive_secret="${AMPLIHACK_HIVE_SECRET:-}"
    if [[ -z "$hive_secret" ]]; then
        local secret_file
        secret_file="$(cd "$(dirname "$params")/../.." && pwd)/secret.json"
        [[ -f "$secret_file" ]] || fail "no hive secret: set AMPLIHACK_HIVE_SECRET, or render PARAMS_JSON in the hive's folder (its secret.json is read)"
        # current signs; a rotation's other key (next or previous) is accepted too.
        hive_secret="$(python3 - "$secret_file" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
print(",".join(data[k] for k in ("current", "next", "previous") if data.get(k)))
PY
)" || fail "$secret_file is not a hive secret file"
    fi
    args+=(--parameters "hiveSecret=$hive_secret")
    passed+=(hiveSecret)
    if [[ "$state_store" == "blob" && -n "${AMPLIHACK_BLOB_CONNECTION_STRING:-}" ]]; then
        args+=(--parameters "blobConnectionString=$AMPLIHACK_BLOB_CONNECTION_STRING" createStorage=false)
        passed+=(blobConnectionString)
    fi
    if [[ -n "${AMPLIHACK_REGISTRY_SERVER:-}" ]]; then
        args+=(--parameters "registryServer=$AMPLIHACK_REGISTRY_SERVER"
               "registryUsername=${AMPLIHACK_REGISTRY_USERNAME:-}"
               "registryPassword=${AMPLIHACK_REGISTRY_PASSWORD:-}")
        passed+=(registryPassword)
    fi
    echo "deploying hive $hive ($transport) to resource group $resource_group"
    echo "  az deployment group create --template-file $TEMPLATE --parameters @$params (secure parameters from the environment: ${passed[*]:-none})"
    az "${args[@]}" --query "properties.outputs" --output json
    echo "deployed; check with: $0 $params --resource-group $resource_group --status"
}

case "$action" in
    deploy) deploy ;;
    status) status ;;
    cleanup) cleanup ;;
esac
