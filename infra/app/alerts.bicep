// Azure Monitor alert rules beside the pipeline's own webhook alerts (issue 15), routed to one
// action group. Scheduled queries over Application Insights: function failures (requests) and
// the pipeline's OpenTelemetry metrics, which land in customMetrics under the agreed names
// (pipeline.poison.messages, pipeline.input.freshness_lag, pipeline.build.succeeded).
param location string
param tags object
param appInsightsId string
@description('E-mail receiver; empty: none.')
param alertEmail string
@description('Webhook receiver (common alert schema); empty: none.')
param alertWebhookReceiverUrl string
@description('Freshness deadline in hours (the app setting FRESHNESS_DEADLINE_HOURS has the same value).')
param freshnessDeadlineHours int

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-company-activity'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'pipeline'
    enabled: true
    emailReceivers: empty(alertEmail) ? [] : [
      { name: 'operators', emailAddress: alertEmail, useCommonAlertSchema: true }
    ]
    webhookReceivers: empty(alertWebhookReceiverUrl) ? [] : [
      { name: 'operators-webhook', serviceUri: alertWebhookReceiverUrl, useCommonAlertSchema: true }
    ]
  }
}

// One rule each; `query` returns one row per thing to alert on, `measure` is compared with
// `threshold`. Severity: 1 error (data is not arriving or cannot be processed), 2 warning.
var rules = [
  {
    name: 'function-failures'
    description: 'A function invocation failed (after the host\'s own retries the message or blob goes to poison).'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'requests | where success == false | summarize failures = count() by operation_Name'
    measure: 'failures'
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'poison-messages'
    description: 'Messages wait in a poison queue (build-requests-poison or webjobs-blobtrigger-poison): list and requeue them with the operator CLI.'
    severity: 1
    frequency: 'PT15M'
    window: 'PT1H'
    query: 'customMetrics | where name == "pipeline.poison.messages" | extend queue = tostring(customDimensions["queue"]) | summarize depth = max(value) by queue'
    measure: 'depth'
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    name: 'input-freshness'
    description: 'An input (CRM file or usage pull) of the latest expected day is later than FRESHNESS_DEADLINE_HOURS.'
    severity: 1
    frequency: 'PT1H'
    window: 'PT6H'
    query: 'customMetrics | where name == "pipeline.input.freshness_lag" | extend input = tostring(customDimensions["input"]) | summarize lag_hours = max(value) by input'
    measure: 'lag_hours'
    operator: 'GreaterThan'
    threshold: freshnessDeadlineHours
  }
  {
    name: 'no-successful-build'
    description: 'No build succeeded in the last 26 hours (the daily run plus two hours of slack).'
    severity: 1
    frequency: 'PT1H'
    window: 'P2D'
    // count() over no rows is 0, so silence (nothing emitted at all) also fires.
    query: 'customMetrics | where timestamp > ago(26h) | where name == "pipeline.build.succeeded" | summarize builds = sum(valueCount) | extend builds = coalesce(builds, 0)'
    measure: 'builds'
    operator: 'LessThan'
    threshold: 1
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [
  for rule in rules: {
    name: 'alert-${rule.name}'
    location: location
    tags: tags
    properties: {
      displayName: 'company-activity: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [appInsightsId]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Maximum'
            metricMeasureColumn: rule.measure
            operator: rule.operator
            threshold: rule.threshold
            failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
          }
        ]
      }
      actions: { actionGroups: [actionGroup.id] }
    }
  }
]

output actionGroupId string = actionGroup.id
