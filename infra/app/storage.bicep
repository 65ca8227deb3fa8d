// The one storage account: the pipeline's containers, queues and readiness table, the Functions
// host's own bookkeeping (AzureWebJobsStorage) and the Flex Consumption deployment container.
// Shared-key access is disabled, so only Entra identities with data roles (roles.bicep) get in.
param location string
param tags object
param token string
param logAnalyticsWorkspaceId string

// Names the app reads through its settings (CRM_CONTAINER, ...); the defaults of shared/settings.py.
var crmContainerName = 'crm-snapshots'
var quarantineContainerName = 'crm-quarantine'
var rawContainerName = 'usage-raw'
var deploymentContainerName = 'app-package'
var queueNames = [
  'build-requests'
  'build-requests-poison'
  'webjobs-blobtrigger-poison' // where the blob trigger's failed blobs go after maxDequeueCount
]
var stateTableName = 'pipelinestate'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Default network action Allow: see CKV_AZURE_59; with shared keys disabled every request still needs an Entra identity holding a data role.
  // checkov:skip=CKV_AZURE_43:The name is 'st' + uniqueString(...), 15 lowercase alphanumerics, valid; checkov cannot evaluate the expression.
  // checkov:skip=CKV_AZURE_206:Locally redundant storage is enough: every input can be re-sent (CRM) or re-pulled (usage API), and the warehouse is the system of record.
  // checkov:skip=CKV_AZURE_59:Public network access stays on: Flex Consumption without VNet integration and Event Grid reach the account over its public endpoint; shared keys are off and every caller needs an Entra role.
  name: 'st${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in [crmContainerName, quarantineContainerName, rawContainerName, deploymentContainerName]: {
    parent: blobService
    name: name
    properties: { publicAccess: 'None' }
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in queueNames: {
    parent: queueService
    name: name
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource stateTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: stateTableName
}

// Read, write and delete logs of the queue service (and blobs, tables) to Log Analytics.
resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { category: 'StorageRead', enabled: true }
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

output accountName string = account.name
output crmContainerName string = crmContainerName
output deploymentContainerName string = deploymentContainerName
