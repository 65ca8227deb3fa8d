// The pipeline's Azure deployment (azd layout): one resource group holding a Flex Consumption
// Function App with a system-assigned identity, one storage account without shared keys, Azure
// SQL with Entra-only authentication, Key Vault (RBAC) for the two secrets, Log Analytics with
// Application Insights, the CRM Event Grid system topic and the Azure Monitor alert rules.
// Every connection is identity-based; nothing here holds an account key or a password.
// After provisioning, infra/hooks/postprovision.sh applies the schema and creates the app's
// database user; after deploying the code, infra/hooks/postdeploy.sh subscribes the function
// to BlobCreated events (its webhook key exists only once the code runs).
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name: names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Azure region of every resource (Flex Consumption must be offered there).')
param location string

@description('Object id of the deploying user or service principal: Entra admin of the SQL server, secrets officer of the vault, blob contributor (to drop CRM files).')
param principalId string

@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@minLength(1)
@description('Base URL of the Product Usage API (required: the app\'s default is the local mock).')
param usageApiBaseUrl string

@secure()
@description('Bearer key of the Product Usage API. Empty keeps the secret already in the vault (rotation: see README).')
param usageApiKey string = ''

@secure()
@description('Teams/Slack incoming-webhook URL of the pipeline\'s own alerts; empty: alerts go to the log only.')
param alertWebhookUrl string = ''

@description('E-mail address the Azure Monitor action group notifies; empty: no e-mail receiver.')
param alertEmail string = ''

@description('Webhook the Azure Monitor action group calls (common alert schema); empty: no webhook receiver.')
param alertWebhookReceiverUrl string = ''

@description('Hours after a date\'s end by which its inputs must be present (app setting and freshness alert agree).')
param freshnessDeadlineHours int = 30

var tags = { 'azd-env-name': environmentName, workload: 'company-activity-pipeline' }
var token = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: { location: location, tags: tags, token: token }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: { location: location, tags: tags, token: token, logAnalyticsWorkspaceId: monitoring.outputs.workspaceId }
}

module vault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    location: location
    tags: tags
    token: token
    usageApiKey: usageApiKey
    alertWebhookUrl: alertWebhookUrl
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module sql 'app/sql.bicep' = {
  name: 'sql'
  scope: rg
  params: {
    location: location
    tags: tags
    token: token
    adminObjectId: principalId
    adminPrincipalType: principalType
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
  }
}

module app 'app/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    token: token
    storageAccountName: storage.outputs.accountName
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    sqlServerFqdn: sql.outputs.serverFqdn
    sqlDatabaseName: sql.outputs.databaseName
    usageApiBaseUrl: usageApiBaseUrl
    usageApiKeySecretUri: vault.outputs.usageApiKeySecretUri
    alertWebhookUrlSecretUri: vault.outputs.alertWebhookUrlSecretUri
    freshnessDeadlineHours: freshnessDeadlineHours
  }
}

module roles 'app/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    appPrincipalId: app.outputs.principalId
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    storageAccountName: storage.outputs.accountName
    keyVaultName: vault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
  }
}

module crmEvents 'app/crm-events.bicep' = {
  name: 'crm-events'
  scope: rg
  params: { location: location, tags: tags, storageAccountName: storage.outputs.accountName }
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmail: alertEmail
    alertWebhookReceiverUrl: alertWebhookReceiverUrl
    freshnessDeadlineHours: freshnessDeadlineHours
  }
}

// Read by the hooks (azd stores outputs as environment values) and by operators.
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.accountName
output AZURE_CRM_CONTAINER string = storage.outputs.crmContainerName
output AZURE_SQL_SERVER_NAME string = sql.outputs.serverName
output AZURE_SQL_SERVER_FQDN string = sql.outputs.serverFqdn
output AZURE_SQL_DATABASE string = sql.outputs.databaseName
output AZURE_KEY_VAULT_NAME string = vault.outputs.name
output AZURE_EVENTGRID_SYSTEM_TOPIC string = crmEvents.outputs.systemTopicName
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.appInsightsName
