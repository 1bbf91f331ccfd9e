// An amplihack hive in Azure Container Apps.
//
// One Container App per group of `agentsPerApp` agents: app i runs agents
// [i*k, min((i+1)*k, n)) as separate containers (`appAgents[i]`, rendered by
// `amplihack-hive start --target azure`), so any agent count works, not only multiples of k.
// Each container runs `python -m agent_runtime` for one agent, configured by AMPLIHACK_*
// variables, with its own health port (healthPortBase + j) probed over HTTP.
//
// /data is an EmptyDir (ephemeral): Kuzu needs POSIX file locks, which Azure Files does not
// give. A replaced replica starts with empty shards and replication restores them.
//
// Secrets (the broker's and the blob container's connection strings, a registry password)
// are @secure() parameters that only ever become Container Apps secrets, referenced from the
// containers with secretRef. deploy.sh passes them from the environment; the parameters file
// never holds one.
//
// Needs a recent Bicep (fail(), flatten()): `az bicep upgrade`.

targetScope = 'resourceGroup'

// -- the hive ---------------------------------------------------------------------------------
@description('Hive name (as in amplihack-hive).')
param hiveName string

@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Container image of the agents (see the Dockerfile at the repo root).')
param image string

@allowed([
  'redis'
  'azure_event_hubs'
  'azure_service_bus'
])
param transport string

@description('Every agent of the hive, in the hive\'s order.')
param agents array

@description('Per agent (same order), the Event Hubs consumer group it reads in (hive_core.transports.azure_names).')
param consumerGroups array

@description('Per agent (same order), its Service Bus subscription: HIVE.AGENT, at most 50 characters.')
param subscriptionNames array

@minValue(1)
@maxValue(20)
param agentsPerApp int = 5

@description('ceil(length(agents) / agentsPerApp), as rendered by the CLI (checked).')
param appCount int

@description('The agents of each app: appAgents[i] = agents[i*k : min((i+1)*k, n)].')
param appAgents array

@maxLength(26)
@description('Container App names are "<prefix>-<i>" (lowercase letters, digits, "-").')
param appNamePrefix string

@description('Container j of an app serves /healthz and /livez on healthPortBase + j.')
param healthPortBase int = 8080

@description('The hive config YAML for AMPLIHACK_HIVE_CONFIG, without any secret.')
param hiveConfigYaml string

@allowed([
  'auto'
  'dir'
  'blob'
])
@description('Where ring view, liveness and checkpoints live; blob when agents span apps.')
param stateStore string = 'auto'

param eventHubName string = 'hive-shards-${hiveName}'
param topicName string = 'hive-graph'
param replyQueueName string = 'hive-graph-replies'
param stateContainerName string = 'hive-state'

@description('Per container: vCPU as a string (an app may have at most 4 vCPU in all).')
param cpuPerAgent string = '0.5'
@description('Per container: memory, twice the vCPU in Gi.')
param memoryPerAgent string = '1Gi'

param logLevel string = 'INFO'

// -- the broker -------------------------------------------------------------------------------
@description('Create (or update) the Event Hubs / Service Bus namespace and its entities here.')
param createBroker bool = transport != 'redis'

@description('Namespace to create or update in this resource group (globally unique name).')
param brokerNamespaceName string = 'ah-${uniqueString(resourceGroup().id, hiveName)}'

@description('Event Hubs tier: Standard allows 20 consumer groups per hub, Premium 100.')
param eventHubsSku string = length(agents) <= 20 ? 'Standard' : 'Premium'

@description('Partitions of the hive\'s event hub (agent i reads partition i mod count).')
param eventHubPartitionCount int = min(32, max(1, length(agents)))

@secure()
@description('Broker connection string (redis://..., or Endpoint=sb://...); from deploy.sh. Empty: use the key of the namespace this template creates.')
param connectionString string = ''

// -- the hive's message secret ----------------------------------------------------------------
@secure()
@description('The key every message of the hive is signed with (hex, KEY[,OTHER...]); from deploy.sh, which reads AMPLIHACK_HIVE_SECRET or the hive\'s secret.json. Reaches the agents as AMPLIHACK_HIVE_SECRET.')
param hiveSecret string

// -- the hive's state (blob) ------------------------------------------------------------------
@description('Create a storage account + blob container for stateStore blob.')
param createStorage bool = stateStore == 'blob'

@secure()
@description('Blob connection string of an existing account (from deploy.sh); wins over createStorage.')
param blobConnectionString string = ''

// -- the image registry (optional) ------------------------------------------------------------
param registryServer string = ''
param registryUsername string = ''
@secure()
param registryPassword string = ''

// -- checks -----------------------------------------------------------------------------------
var agentCount = length(agents)
var expectedAppCount = (agentCount + agentsPerApp - 1) / agentsPerApp
var splitIsExact = appCount == expectedAppCount && length(appAgents) == appCount && length(flatten(appAgents)) == agentCount && length(union(flatten(appAgents), agents)) == agentCount
var checkedAppCount = splitIsExact ? appCount : fail('appAgents must split the ${agentCount} agents into ceil(n / agentsPerApp) = ${expectedAppCount} apps, each agent exactly once: render them with amplihack-hive start --target azure --dry-run')

var useEventHubs = transport == 'azure_event_hubs'
var useServiceBus = transport == 'azure_service_bus'
var useBlob = stateStore == 'blob'
var tags = {
  'amplihack-hive': hiveName
}

// -- logs and the Container Apps environment --------------------------------------------------
resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${appNamePrefix}-logs'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource containerEnv 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: '${appNamePrefix}-env'
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'log-analytics'
      logAnalyticsConfiguration: {
        customerId: logs.properties.customerId
        sharedKey: logs.listKeys().primarySharedKey
      }
    }
  }
}

// -- Event Hubs: one hub per hive, one consumer group per agent -------------------------------
resource ehNamespace 'Microsoft.EventHub/namespaces@2021-11-01' = if (createBroker && useEventHubs) {
  name: brokerNamespaceName
  location: location
  tags: tags
  sku: {
    name: eventHubsSku
    tier: eventHubsSku
    capacity: 1
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2021-11-01' = if (createBroker && useEventHubs) {
  parent: ehNamespace
  name: eventHubName
  properties: {
    partitionCount: eventHubPartitionCount
    messageRetentionInDays: 1
  }
}

// One per distinct name: a shared template (e.g. '{hive}') gives every agent the same group.
resource ehConsumerGroups 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2021-11-01' = [for group in union(consumerGroups, []): if (createBroker && useEventHubs && group != '$Default') {
  parent: eventHub
  name: group
}]

resource ehRule 'Microsoft.EventHub/namespaces/authorizationRules@2021-11-01' = if (createBroker && useEventHubs) {
  parent: ehNamespace
  name: 'hive-agents'
  properties: {
    rights: [
      'Listen'
      'Send'
    ]
  }
}

// -- Service Bus: topic hive-graph, one filtered subscription per agent, a session reply queue
resource sbNamespace 'Microsoft.ServiceBus/namespaces@2021-11-01' = if (createBroker && useServiceBus) {
  name: brokerNamespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
}

resource sbTopic 'Microsoft.ServiceBus/namespaces/topics@2021-11-01' = if (createBroker && useServiceBus) {
  parent: sbNamespace
  name: topicName
  properties: {
    defaultMessageTimeToLive: 'P1D'
  }
}

resource sbSubscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2021-11-01' = [for (agent, i) in agents: if (createBroker && useServiceBus) {
  parent: sbTopic
  name: subscriptionNames[i]
  properties: {
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    deadLetteringOnMessageExpiration: true
    defaultMessageTimeToLive: 'P1D'
  }
}]

// Named $Default so it replaces the catch-all rule: a subscription sees only its agent's
// messages (application properties `hive` and `target`: hives may share one topic).
resource sbFilters 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2021-11-01' = [for (agent, i) in agents: if (createBroker && useServiceBus) {
  parent: sbSubscriptions[i]
  name: '$Default'
  properties: {
    filterType: 'CorrelationFilter'
    correlationFilter: {
      properties: {
        hive: hiveName
        target: agent
      }
    }
  }
}]

resource sbReplies 'Microsoft.ServiceBus/namespaces/queues@2021-11-01' = if (createBroker && useServiceBus) {
  parent: sbNamespace
  name: replyQueueName
  properties: {
    requiresSession: true
    lockDuration: 'PT1M'
    maxDeliveryCount: 10
    defaultMessageTimeToLive: 'PT1H'
  }
}

resource sbRule 'Microsoft.ServiceBus/namespaces/authorizationRules@2021-11-01' = if (createBroker && useServiceBus) {
  parent: sbNamespace
  name: 'hive-agents'
  properties: {
    rights: [
      'Listen'
      'Send'
    ]
  }
}

// -- Blob storage for the hive's state ---------------------------------------------------------
resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = if (useBlob && createStorage && empty(blobConnectionString)) {
  name: take('ahst${uniqueString(resourceGroup().id, hiveName)}', 24)
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-01-01' = if (useBlob && createStorage && empty(blobConnectionString)) {
  parent: storage
  name: 'default'
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = if (useBlob && createStorage && empty(blobConnectionString)) {
  parent: blobService
  name: stateContainerName
  properties: {
    publicAccess: 'None'
  }
}

// -- secrets: only ever Container Apps secrets --------------------------------------------------
var brokerSecret = !empty(connectionString) ? connectionString : (createBroker && useEventHubs ? ehRule.listKeys().primaryConnectionString : (createBroker && useServiceBus ? sbRule.listKeys().primaryConnectionString : fail('connectionString is required for transport ${transport}: deploy.sh reads it from AMPLIHACK_MEMORY_CONNECTION_STRING')))

var blobSecret = !empty(blobConnectionString) ? blobConnectionString : (createStorage ? 'DefaultEndpointsProtocol=https;AccountName=${storage.name};AccountKey=${storage.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}' : fail('stateStore blob needs a storage account: set AMPLIHACK_BLOB_CONNECTION_STRING or createStorage=true'))

var secrets = concat([
  {
    name: 'broker-connection-string'
    value: brokerSecret
  }
  {
    name: 'hive-secret'
    value: hiveSecret
  }
], useBlob ? [
  {
    name: 'blob-connection-string'
    value: blobSecret
  }
] : [], empty(registryServer) ? [] : [
  {
    name: 'registry-password'
    value: registryPassword
  }
])

var registries = empty(registryServer) ? [] : [
  {
    server: registryServer
    username: registryUsername
    passwordSecretRef: 'registry-password'
  }
]

// -- what every agent container gets -----------------------------------------------------------
var transportSecretEnv = useEventHubs ? [
  {
    name: 'AMPLIHACK_EH_CONNECTION_STRING'
    secretRef: 'broker-connection-string'
  }
] : (useServiceBus ? [
  {
    name: 'AMPLIHACK_SB_CONNECTION_STRING'
    secretRef: 'broker-connection-string'
  }
] : [])

var blobEnv = useBlob ? [
  {
    name: 'AMPLIHACK_BLOB_CONNECTION_STRING'
    secretRef: 'blob-connection-string'
  }
  {
    name: 'AMPLIHACK_BLOB_CONTAINER'
    value: stateContainerName
  }
] : []

var commonEnv = concat([
  {
    name: 'AMPLIHACK_HIVE'
    value: hiveName
  }
  {
    name: 'AMPLIHACK_HIVE_CONFIG'
    value: hiveConfigYaml
  }
  {
    name: 'AMPLIHACK_HOME'
    value: '/data/home'
  }
  {
    name: 'AMPLIHACK_LOG_LEVEL'
    value: logLevel
  }
  {
    name: 'AMPLIHACK_MEMORY_CONNECTION_STRING'
    secretRef: 'broker-connection-string'
  }
  {
    name: 'AMPLIHACK_HIVE_SECRET'
    secretRef: 'hive-secret'
  }
], transportSecretEnv, blobEnv)

// -- the agents: ceil(n / k) apps, app i runs appAgents[i] --------------------------------------
resource apps 'Microsoft.App/containerApps@2024-03-01' = [for i in range(0, checkedAppCount): {
  name: '${appNamePrefix}-${i}'
  location: location
  tags: union(tags, {
    'amplihack-app-index': string(i)
  })
  properties: {
    managedEnvironmentId: containerEnv.id
    configuration: {
      activeRevisionsMode: 'Single'
      secrets: secrets
      registries: registries
    }
    template: {
      containers: [for (agent, j) in appAgents[i]: {
        name: 'agent-${i * agentsPerApp + j}'
        image: image
        env: concat(commonEnv, [
          {
            name: 'AMPLIHACK_AGENT_NAME'
            value: agent
          }
          {
            name: 'AMPLIHACK_HEALTH_PORT'
            value: string(healthPortBase + j)
          }
          {
            // The {app} of a per-app Event Hubs consumer group template.
            name: 'AMPLIHACK_APP'
            value: '${appNamePrefix}-${i}'
          }
        ])
        resources: {
          cpu: json(cpuPerAgent)
          memory: memoryPerAgent
        }
        probes: [
          {
            type: 'Startup'
            httpGet: {
              path: '/livez'
              port: healthPortBase + j
            }
            periodSeconds: 5
            failureThreshold: 24
            timeoutSeconds: 3
          }
          {
            type: 'Liveness'
            httpGet: {
              path: '/livez'
              port: healthPortBase + j
            }
            periodSeconds: 15
            failureThreshold: 3
            timeoutSeconds: 3
          }
          {
            type: 'Readiness'
            httpGet: {
              path: '/healthz'
              port: healthPortBase + j
            }
            periodSeconds: 10
            failureThreshold: 3
            timeoutSeconds: 3
          }
        ]
        volumeMounts: [
          {
            volumeName: 'data'
            mountPath: '/data'
          }
        ]
      }]
      // Exactly one replica: a second one would run the same agents twice.
      scale: {
        minReplicas: 1
        maxReplicas: 1
      }
      volumes: [
        {
          name: 'data'
          storageType: 'EmptyDir'
        }
      ]
    }
  }
}]

output appNames array = [for i in range(0, checkedAppCount): apps[i].name]
output environmentName string = containerEnv.name
output brokerNamespace string = createBroker && transport != 'redis' ? brokerNamespaceName : ''
output storageAccount string = useBlob && createStorage && empty(blobConnectionString) ? storage.name : ''
