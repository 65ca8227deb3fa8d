// The Event Grid system topic of the storage account: the source of the CRM blob trigger
// (source=EventGrid in function_app.py; Flex Consumption has no polling blob trigger). Its
// subscription to the function is crm-events-subscription.bicep, deployed after the code
// (infra/hooks/postdeploy.sh) because the webhook's blobs_extension key exists only then.
param location string
param tags object
param storageAccountName string

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2024-06-01-preview' = {
  name: 'evgt-${storageAccountName}'
  location: location
  tags: tags
  properties: {
    source: storageAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output systemTopicName string = systemTopic.name
