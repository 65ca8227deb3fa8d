// Key Vault in RBAC mode holding the two secrets the app reads: the usage API key and the alert
// webhook URL. App settings reference them as @Microsoft.KeyVault(SecretUri=...) without a
// version, so a new secret version reaches the app without a redeploy (README: rotation).
param location string
param tags object
param token string
@secure()
param usageApiKey string
@secure()
param alertWebhookUrl string
param logAnalyticsWorkspaceId string

var usageApiKeySecretName = 'usage-api-key'
var alertWebhookUrlSecretName = 'alert-webhook-url'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:No network ACL default-deny: the Flex Consumption app has no VNet integration here, so Key Vault references resolve over the public endpoint; access is RBAC-only (Key Vault Secrets User for the app identity).
  // checkov:skip=CKV_AZURE_189:Same reason as CKV_AZURE_109: public network access is needed for Key Vault references without VNet integration.
  name: 'kv-${token}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }
}

// Written only when a value is given: a later `azd provision` without the value keeps the
// version an operator rotated in with `az keyvault secret set`.
resource usageApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(usageApiKey)) {
  // checkov:skip=CKV_AZURE_114:contentType is set (text/plain); checkov does not read it on a conditional resource.
  // checkov:skip=CKV_AZURE_41:No expiry date: the usage API key is rotated on the provider's schedule (README), and an expired secret would stop the pipeline silently at the next pull.
  parent: vault
  name: usageApiKeySecretName
  properties: { value: usageApiKey, contentType: 'text/plain' }
}

resource alertWebhookUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(alertWebhookUrl)) {
  // checkov:skip=CKV_AZURE_114:contentType is set (text/plain); checkov does not read it on a conditional resource.
  // checkov:skip=CKV_AZURE_41:No expiry date: an incoming-webhook URL does not expire on its own; it is replaced when the channel changes.
  parent: vault
  name: alertWebhookUrlSecretName
  properties: { value: alertWebhookUrl, contentType: 'text/plain' }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [{ categoryGroup: 'audit', enabled: true }]
  }
}

output name string = vault.name
// Versionless secret URIs (built from the vault URI, as the secrets may be written later by hand).
output usageApiKeySecretUri string = '${vault.properties.vaultUri}secrets/${usageApiKeySecretName}'
output alertWebhookUrlSecretUri string = empty(alertWebhookUrl) ? '' : '${vault.properties.vaultUri}secrets/${alertWebhookUrlSecretName}'
