// BlobCreated events of the CRM container → the host's blob extension webhook of the function
// crm_snapshot_arrived. Deployed by infra/hooks/postdeploy.sh once the code runs: the webhook
// key (systemKeys.blobs_extension) is created by the host when it loads an EventGrid-source
// blob trigger, so it cannot be read while provisioning an app that has no code yet.
//   az deployment group create -g <rg> -f infra/app/crm-events-subscription.bicep \
//     -p functionAppName=<app> systemTopicName=<topic>
param functionAppName string
param systemTopicName string
param crmContainerName string = 'crm-snapshots'
param functionName string = 'crm_snapshot_arrived'

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' existing = {
  name: systemTopicName
}

var blobsExtensionKey = listKeys('${functionApp.id}/host/default', '2024-04-01').systemKeys.blobs_extension

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2024-06-01-preview' = {
  parent: systemTopic
  name: 'crm-snapshot-arrived'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${crmContainerName}/blobs/'
    }
    retryPolicy: { maxDeliveryAttempts: 30, eventTimeToLiveInMinutes: 1440 }
  }
}
