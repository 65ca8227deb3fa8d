// The Function App on Flex Consumption (Linux, Python 3.11) with a system-assigned identity.
// Every connection is identity-based: storage through <CONNECTION>__*ServiceUri / __accountName
// settings, Azure SQL with an Entra token (AZURE_SQL_AUTH=managed_identity), secrets as Key Vault
// references, the deployment package in a blob container read with the same identity.
// The app settings are the ones shared/settings.py reads (a test keeps the two in agreement);
// settings left out have defaults that are right in Azure.
param location string
param tags object
param token string
param storageAccountName string
param deploymentContainerName string
param appInsightsConnectionString string
param sqlServerFqdn string
param sqlDatabaseName string
param usageApiBaseUrl string
param usageApiKeySecretUri string
param alertWebhookUrlSecretUri string
param freshnessDeadlineHours int

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

var blobEndpoint = storageAccount.properties.primaryEndpoints.blob
var queueEndpoint = storageAccount.properties.primaryEndpoints.queue
var tableEndpoint = storageAccount.properties.primaryEndpoints.table

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy needs always-ready instances (billed idle); a daily batch pipeline tolerates a zone outage by retrying.
  name: 'plan-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Public network access stays on: Event Grid delivers blob events to the host's blob extension webhook over the public endpoint (authenticated by the blobs_extension system key); the app serves no HTTP functions.
  // checkov:skip=CKV_AZURE_17:No client certificates: Event Grid's webhook delivery does not present one; the webhook is protected by the blobs_extension key.
  // checkov:skip=CKV_AZURE_213:No health check path: the app has no HTTP functions to probe; failures surface through the alert rules.
  // checkov:skip=CKV_AZURE_212:No always-ready instances on Flex Consumption: they bill while idle, and a daily batch pipeline tolerates a cold start.
  name: 'func-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'pipeline' })
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // The Functions host's own storage (timer locks, blob receipts, keys): identity-based.
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        // connection="PIPELINE_STORAGE" of every binding, identity-based per service; the app's
        // own clients read PIPELINE_STORAGE__accountName (shared/settings.py).
        { name: 'PIPELINE_STORAGE__blobServiceUri', value: blobEndpoint }
        { name: 'PIPELINE_STORAGE__queueServiceUri', value: queueEndpoint }
        { name: 'PIPELINE_STORAGE__tableServiceUri', value: tableEndpoint }
        { name: 'PIPELINE_STORAGE__credential', value: 'managedidentity' }
        { name: 'PIPELINE_STORAGE__accountName', value: storageAccountName }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD' }
        { name: 'PIPELINE_NAME', value: 'company-activity' }
        { name: 'CRM_CONTAINER', value: 'crm-snapshots' }
        { name: 'QUARANTINE_CONTAINER', value: 'crm-quarantine' }
        { name: 'RAW_CONTAINER', value: 'usage-raw' }
        { name: 'BUILD_QUEUE', value: 'build-requests' }
        { name: 'STATE_TABLE', value: 'pipelinestate' }
        { name: 'USAGE_SCHEDULE', value: '0 0 1 * * *' }
        { name: 'USAGE_API_BASE_URL', value: usageApiBaseUrl }
        { name: 'USAGE_API_KEY', value: '@Microsoft.KeyVault(SecretUri=${usageApiKeySecretUri})' }
        { name: 'WAREHOUSE_ENGINE', value: 'azure_sql' }
        {
          name: 'AZURE_SQL_CONNECTION_STRING'
          value: 'Driver={ODBC Driver 18 for SQL Server};Server=tcp:${sqlServerFqdn},1433;Database=${sqlDatabaseName};Encrypt=yes;TrustServerCertificate=no;'
        }
        { name: 'AZURE_SQL_AUTH', value: 'managed_identity' }
        { name: 'FRESHNESS_DEADLINE_HOURS', value: string(freshnessDeadlineHours) }
        {
          name: 'ALERT_WEBHOOK_URL'
          value: empty(alertWebhookUrlSecretUri) ? '' : '@Microsoft.KeyVault(SecretUri=${alertWebhookUrlSecretUri})'
        }
        { name: 'LOG_LEVEL', value: 'INFO' }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

output name string = functionApp.name
output principalId string = functionApp.identity.principalId
output defaultHostName string = functionApp.properties.defaultHostName
