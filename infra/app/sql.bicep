// Azure SQL: a logical server that accepts Entra ID only (no SQL logins, no password anywhere)
// and one serverless database that pauses when idle. The deployer is the Entra admin, so the
// post-provision hook can apply migrations and create the app's contained database user.
param location string
param tags object
param token string
param adminObjectId string
@allowed(['User', 'ServicePrincipal', 'Group'])
param adminPrincipalType string
param logAnalyticsWorkspaceId string

var databaseName = 'pipeline'

resource server 'Microsoft.Sql/servers@2023-08-01-preview' = {
  // checkov:skip=CKV_AZURE_113:Public network access stays on: the Flex Consumption app has no VNet integration here; the firewall admits Azure services only (plus the deployer's IP while the hook runs) and authentication is Entra-only.
  name: 'sql-${token}'
  location: location
  tags: tags
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: 'pipeline-deployer'
      sid: adminObjectId
      tenantId: subscription().tenantId
      principalType: adminPrincipalType
    }
  }
}

// 0.0.0.0-0.0.0.0 is Azure's "allow Azure services" rule (not the internet): the Functions
// outbound addresses are not fixed on Flex Consumption without a VNet.
resource allowAzureServices 'Microsoft.Sql/servers/firewallRules@2023-08-01-preview' = {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: { startIpAddress: '0.0.0.0', endIpAddress: '0.0.0.0' }
}

resource database 'Microsoft.Sql/servers/databases@2023-08-01-preview' = {
  // checkov:skip=CKV_AZURE_26:Alert e-mails belong to Defender for SQL (see infra/checkov.yaml, CKV_AZURE_25); pipeline alerts go to the action group in alerts.bicep.
  // checkov:skip=CKV_AZURE_27:Same as CKV_AZURE_26: administrator e-mails are a Defender for SQL setting, not used here.
  // checkov:skip=CKV_AZURE_229:Zone redundancy adds cost and the database can be rebuilt from the raw inputs (CRM blobs, raw usage NDJSON) with the operator CLI.
  parent: server
  name: databaseName
  location: location
  tags: tags
  sku: { name: 'GP_S_Gen5', tier: 'GeneralPurpose', family: 'Gen5', capacity: 1 }
  properties: {
    autoPauseDelay: 60 // minutes idle before pausing: an idle day costs storage only
    minCapacity: json('0.5')
    maxSizeBytes: 34359738368 // 32 GB
    requestedBackupStorageRedundancy: 'Local'
    zoneRedundant: false
  }
}

// Server auditing to Log Analytics (the master database's diagnostic setting carries it).
resource auditing 'Microsoft.Sql/servers/auditingSettings@2023-08-01-preview' = {
  parent: server
  name: 'default'
  properties: {
    state: 'Enabled'
    isAzureMonitorTargetEnabled: true
    retentionDays: 0
  }
}

resource masterDatabase 'Microsoft.Sql/servers/databases@2023-08-01-preview' existing = {
  parent: server
  name: 'master'
}

resource auditDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: masterDatabase
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [{ category: 'SQLSecurityAuditEvents', enabled: true }]
  }
}

output serverName string = server.name
output serverFqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
