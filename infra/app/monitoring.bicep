// Log Analytics workspace and workspace-based Application Insights. Local (key) authentication is
// off: the Functions host and the OpenTelemetry exporter send telemetry with the app's managed
// identity (Monitoring Metrics Publisher, see roles.bicep; APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
param location string
param tags object
param token string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${token}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
    features: { disableLocalAuth: true }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output workspaceId string = workspace.id
output appInsightsId string = appInsights.id
output appInsightsName string = appInsights.name
// The connection string holds no secret (an instrumentation key identifies, it does not authorise
// when local authentication is disabled).
output appInsightsConnectionString string = appInsights.properties.ConnectionString
