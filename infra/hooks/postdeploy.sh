#!/bin/sh
# azd postdeploy: subscribe the CRM blob trigger (source=EventGrid) to BlobCreated events.
# Runs after the code is deployed because the webhook key (systemKeys.blobs_extension) is created
# by the host when it loads the trigger; the subscription itself is Bicep
# (infra/app/crm-events-subscription.bicep). Idempotent: re-running updates the subscription.
set -eu
cd "$(dirname "$0")/../.."
: "${AZURE_RESOURCE_GROUP:?run through azd, or export the azd outputs (azd env get-values)}"
: "${AZURE_FUNCTION_APP_NAME:?}" "${AZURE_EVENTGRID_SYSTEM_TOPIC:?}" "${AZURE_CRM_CONTAINER:?}"

# The key appears a little after the first start of the new code; wait for it (at most ~5 min).
tries=0
until az functionapp keys list -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" \
    --query "systemKeys.blobs_extension" -o tsv 2>/dev/null | grep -q .; do
  tries=$((tries + 1))
  [ "$tries" -le 30 ] || { echo "no blobs_extension key on $AZURE_FUNCTION_APP_NAME after 5 minutes" >&2; exit 1; }
  sleep 10
done

echo "==> Event Grid subscription: BlobCreated in $AZURE_CRM_CONTAINER -> crm_snapshot_arrived"
az deployment group create -g "$AZURE_RESOURCE_GROUP" -n crm-events-subscription \
  -f infra/app/crm-events-subscription.bicep \
  -p functionAppName="$AZURE_FUNCTION_APP_NAME" systemTopicName="$AZURE_EVENTGRID_SYSTEM_TOPIC" \
     crmContainerName="$AZURE_CRM_CONTAINER" -o none
