{{/*
Names, labels and the pieces every synthgate pod shares.
*/}}

{{- define "synthgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "synthgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's resource name: (dict "root" $ "component" "gateway"). */}}
{{- define "synthgate.componentName" -}}
{{- printf "%s-%s" (include "synthgate.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The Deployment (and ScaledObject) name of a GPU pool: (dict "root" $ "pool" $pool). */}}
{{- define "synthgate.gpuPoolName" -}}
{{- printf "%s-worker-gpu-%s" (include "synthgate.fullname" .root) .pool.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "synthgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: (dict "root" $ "component" "gateway"). */}}
{{- define "synthgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "synthgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels: (dict "root" $ "component" "gateway"). */}}
{{- define "synthgate.labels" -}}
{{ include "synthgate.selectorLabels" . }}
app.kubernetes.io/part-of: synthgate
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "synthgate.chart" .root }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* A pod template's labels: every object's labels and podLabels: (dict "root" $ "component" "gateway"). */}}
{{- define "synthgate.podLabels" -}}
{{ include "synthgate.labels" . }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
An image reference: (dict "root" $ "image" .Values.images.synthgate). global.imageRegistry,
when set, replaces the registry of the repository (its first part when that part names a
host: has a dot or a port, or is localhost) or is put in front of a repository without one.
*/}}
{{- define "synthgate.image" -}}
{{- $repository := .image.repository -}}
{{- with (.root.Values.global | default dict).imageRegistry -}}
{{- $parts := splitList "/" $repository -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $parts = rest $parts -}}
{{- end -}}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) (join "/" $parts) -}}
{{- end -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets of every pod: global.imagePullSecrets, then imagePullSecrets (names or {name}). */}}
{{- define "synthgate.imagePullSecrets" -}}
{{- $secrets := list -}}
{{- range concat ((.Values.global | default dict).imagePullSecrets | default list) .Values.imagePullSecrets -}}
{{- $name := . -}}
{{- if kindIs "map" . }}{{ $name = .name }}{{ end -}}
{{- if not (has (dict "name" $name) $secrets) -}}
{{- $secrets = append $secrets (dict "name" $name) -}}
{{- end -}}
{{- end -}}
{{- with $secrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "synthgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "synthgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "synthgate.secretName" -}}
{{- printf "%s-secrets" (include "synthgate.fullname" .) -}}
{{- end -}}

{{- define "synthgate.configMapName" -}}
{{- printf "%s-config" (include "synthgate.fullname" .) -}}
{{- end -}}

{{- define "synthgate.catalogConfigMapName" -}}
{{- printf "%s-catalog" (include "synthgate.fullname" .) -}}
{{- end -}}

{{/* The folder the catalog ConfigMap is mounted at, and the file SYNTHGATE_MODEL_CATALOG names. */}}
{{- define "synthgate.catalogDir" -}}/etc/synthgate/catalog{{- end -}}

{{- define "synthgate.catalogFile" -}}
{{- printf "%s/models.json" (include "synthgate.catalogDir" .) -}}
{{- end -}}

{{- define "synthgate.redisServiceName" -}}
{{- include "synthgate.componentName" (dict "root" . "component" "redis") -}}
{{- end -}}

{{/* SYNTHGATE_REDIS_URL when the chart's Secret holds it (bundled Redis or externalRedis.url). */}}
{{- define "synthgate.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- $auth := ternary (printf ":%s@" .Values.redis.password) "" (ne .Values.redis.password "") -}}
{{- printf "redis://%s%s:6379/0" $auth (include "synthgate.redisServiceName" .) -}}
{{- else -}}
{{- .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

{{/*
The Ingress host names as a JSON list (read it with fromJsonArray): gateway.ingress.hosts,
or the single gateway.ingress.host of earlier values.
*/}}
{{- define "synthgate.ingressHosts" -}}
{{- $ingress := .Values.gateway.ingress -}}
{{- $hosts := $ingress.hosts | default list -}}
{{- if and (not $hosts) $ingress.host -}}
{{- $hosts = list $ingress.host -}}
{{- end -}}
{{- toJson $hosts -}}
{{- end -}}

{{/* The public base URL: config.publicUrl, else the first Ingress host, else nothing. */}}
{{- define "synthgate.publicUrl" -}}
{{- $ingress := .Values.gateway.ingress -}}
{{- $hosts := include "synthgate.ingressHosts" . | fromJsonArray -}}
{{- if .Values.config.publicUrl -}}
{{- .Values.config.publicUrl | trimSuffix "/" -}}
{{- else if and $ingress.enabled $hosts -}}
{{- printf "%s://%s" (ternary "https" "http" $ingress.tls.enabled) (first $hosts) -}}
{{- end -}}
{{- end -}}

{{- define "synthgate.s3CredentialsSet" -}}
{{- $s3 := .Values.storage.s3 -}}
{{- if and (eq .Values.storage.backend "s3") (or $s3.existingSecret $s3.accessKeyId) -}}true{{- end -}}
{{- end -}}

{{- define "synthgate.upstreamKeySet" -}}
{{- if or .Values.upstream.existingSecret .Values.upstream.apiKey -}}true{{- end -}}
{{- end -}}

{{/* "true" when DashScope accounts are configured: upstream.accounts or upstream.accountsSecret. */}}
{{- define "synthgate.upstreamAccountsSet" -}}
{{- if or .Values.upstream.accounts .Values.upstream.accountsSecret.name -}}true{{- end -}}
{{- end -}}

{{/* The environment variable holding upstream.accounts[index]'s API key: (dict "index" i). */}}
{{- define "synthgate.accountKeyEnv" -}}
{{- printf "SYNTHGATE_UPSTREAM_ACCOUNT_KEY_%d" (int .index) -}}
{{- end -}}

{{/* The chart Secret's key of an account's API key given as a value: (dict "account" $a). */}}
{{- define "synthgate.accountSecretKey" -}}
{{- printf "upstream-account-%s" .account.name -}}
{{- end -}}

{{/*
SYNTHGATE_UPSTREAM_ACCOUNTS built from upstream.accounts, with each api_key a reference
$(SYNTHGATE_UPSTREAM_ACCOUNT_KEY_<i>) to a variable set from a Secret just before it:
Kubernetes substitutes it when it starts the container, so no key is in the manifest.
Limits left out of an account are left to the application's defaults.
*/}}
{{- define "synthgate.upstreamAccountsJson" -}}
{{- $accounts := list -}}
{{- range $index, $account := .Values.upstream.accounts -}}
{{- $entry := dict "name" $account.name "api_key" (printf "$(%s)" (include "synthgate.accountKeyEnv" (dict "index" $index))) -}}
{{- if hasKey $account "submitPerSecond" -}}
{{- $_ := set $entry "submit_per_second" $account.submitPerSecond -}}
{{- end -}}
{{- if hasKey $account "maxRunning" -}}
{{- $_ := set $entry "max_running" $account.maxRunning -}}
{{- end -}}
{{- with $account.maxRunningByModel -}}
{{- $_ := set $entry "max_running_by_model" . -}}
{{- end -}}
{{- with $account.models -}}
{{- $_ := set $entry "models" . -}}
{{- end -}}
{{- $accounts = append $accounts $entry -}}
{{- end -}}
{{- toJson $accounts -}}
{{- end -}}

{{- define "synthgate.adminTokenSet" -}}
{{- if or .Values.admin.existingSecret .Values.admin.token -}}true{{- end -}}
{{- end -}}

{{/*
Secret environment of a synthgate container, each variable from a Secret key:
(dict "root" $ "upstream" bool "adminToken" bool). Least privilege: the DashScope accounts
(or key) go to the upstream worker, and to the gateway only while an upstream worker is
deployed (it needs to know an account exists and which models each serves, and never
calls DashScope); the admin token goes to the gateway alone.
*/}}
{{- define "synthgate.secretEnv" -}}
{{- $root := .root -}}
{{- $chartSecret := include "synthgate.secretName" $root -}}
{{- include "synthgate.redisEnv" $root | trim }}
{{- if include "synthgate.s3CredentialsSet" $root }}
{{- $s3 := $root.Values.storage.s3 }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret | default $chartSecret }}
      key: {{ ternary $s3.accessKeyIdKey "aws-access-key-id" (ne $s3.existingSecret "") }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.existingSecret | default $chartSecret }}
      key: {{ ternary $s3.secretAccessKeyKey "aws-secret-access-key" (ne $s3.existingSecret "") }}
{{- end }}
{{- if .upstream }}
{{- $upstream := $root.Values.upstream }}
{{- if $upstream.accountsSecret.name }}
- name: SYNTHGATE_UPSTREAM_ACCOUNTS
  valueFrom:
    secretKeyRef:
      name: {{ $upstream.accountsSecret.name }}
      key: {{ $upstream.accountsSecret.key }}
{{- else if $upstream.accounts }}
{{- range $index, $account := $upstream.accounts }}
- name: {{ include "synthgate.accountKeyEnv" (dict "index" $index) }}
  valueFrom:
    secretKeyRef:
      {{- if $account.existingSecret }}
      name: {{ $account.existingSecret }}
      key: {{ $account.existingSecretKey | default $account.name }}
      {{- else }}
      name: {{ $chartSecret }}
      key: {{ include "synthgate.accountSecretKey" (dict "account" $account) }}
      {{- end }}
{{- end }}
- name: SYNTHGATE_UPSTREAM_ACCOUNTS
  value: {{ include "synthgate.upstreamAccountsJson" $root | quote }}
{{- else if include "synthgate.upstreamKeySet" $root }}
- name: SYNTHGATE_UPSTREAM_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $upstream.existingSecret | default $chartSecret }}
      key: {{ ternary $upstream.existingSecretKey "upstream-api-key" (ne $upstream.existingSecret "") }}
{{- end }}
{{- end }}
{{- if and .adminToken (include "synthgate.adminTokenSet" $root) }}
{{- $admin := $root.Values.admin }}
- name: SYNTHGATE_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $admin.existingSecret | default $chartSecret }}
      key: {{ ternary $admin.existingSecretKey "admin-token" (ne $admin.existingSecret "") }}
{{- end }}
{{- end -}}

{{/* Pod annotations that roll the pods when the chart's settings, model catalog or secrets change. */}}
{{- define "synthgate.checksumAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmaps/configmap.yaml") . | sha256sum }}
checksum/catalog: {{ include (print .Template.BasePath "/configmaps/catalog-configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secrets/secret.yaml") . | sha256sum }}
{{- end -}}

{{/* Pod-level fields every synthgate pod shares. */}}
{{- define "synthgate.podCommon" -}}
serviceAccountName: {{ include "synthgate.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- include "synthgate.imagePullSecrets" . }}
{{- end -}}

{{/* Volumes of the gateway and every worker: a writable /tmp, the model catalog, the local image store, extraVolumes. */}}
{{- define "synthgate.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.catalog.models }}
- name: catalog
  configMap:
    name: {{ include "synthgate.catalogConfigMapName" . }}
{{- end }}
{{- if eq .Values.storage.backend "local" }}
- name: storage
  persistentVolumeClaim:
    claimName: {{ .Values.storage.local.existingClaim }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Their mounts in the main container (extraVolumeMounts last). */}}
{{- define "synthgate.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.catalog.models }}
- name: catalog
  mountPath: {{ include "synthgate.catalogDir" . }}
  readOnly: true
{{- end }}
{{- if eq .Values.storage.backend "local" }}
- name: storage
  mountPath: {{ .Values.storage.local.mountPath }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
A GPU pool with the shared workers.gpu keys filled in: (dict "root" $ "pool" $entry "out" $dict).
The result is written into "out" (a template cannot return a dict). A pool's own key
replaces the shared one, even when false or zero; keda, pdb and the probes are merged key by key.
*/}}
{{- define "synthgate.resolveGpuPool" -}}
{{- $shared := .root.Values.workers.gpu -}}
{{- $pool := .pool -}}
{{- $out := .out -}}
{{- range $key := list "device" "gpuResourceName" "replicas" "terminationGracePeriodSeconds" "shmSize" "strategy" "extraEnv" "resources" "podAnnotations" "nodeSelector" "tolerations" "affinity" "priorityClassName" "topologySpreadConstraints" -}}
{{- $_ := set $out $key (ternary (get $pool $key) (get $shared $key) (hasKey $pool $key)) -}}
{{- end -}}
{{- range $key := list "keda" "pdb" "startupProbe" "livenessProbe" "readinessProbe" -}}
{{- $merged := deepCopy (get $shared $key) -}}
{{- range $field, $value := (get $pool $key | default dict) -}}
{{- $_ := set $merged $field $value -}}
{{- end -}}
{{- $_ := set $out $key $merged -}}
{{- end -}}
{{- $_ := set $out "name" $pool.name -}}
{{- $_ := set $out "kind" $pool.kind -}}
{{- $_ := set $out "queue" ($pool.queue | default (printf "gpu.%s" $pool.kind)) -}}
{{- $_ := set $out "weights" $pool.weights -}}
{{- end -}}

{{/* Every GPU pool, resolved, as a list in (dict "root" $ "out" (dict)) under "pools". */}}
{{- define "synthgate.resolveGpuPools" -}}
{{- $pools := list -}}
{{- range $entry := .root.Values.workers.gpu.pools -}}
{{- $pool := dict -}}
{{- $_ := include "synthgate.resolveGpuPool" (dict "root" $.root "pool" $entry "out" $pool) -}}
{{- $pools = append $pools $pool -}}
{{- end -}}
{{- $_ := set .out "pools" $pools -}}
{{- end -}}

{{/*
Every model and where it runs, as the application's catalog will have it, written into
(dict "root" $ "out" $dict): "models" (name -> {runs, family}: the built-in entries of
files/builtin-models.yaml, then catalog.models, then config.routes over their runs) and
"upstreamPools" (upstream.<model> for each model that runs upstream or both, sorted).
*/}}
{{- define "synthgate.resolveModels" -}}
{{- $models := dict -}}
{{- range $name, $spec := (.root.Files.Get "files/builtin-models.yaml" | fromYaml) -}}
{{- $_ := set $models $name (dict "runs" $spec.runs "family" ($spec.family | default "")) -}}
{{- end -}}
{{- range $entry := .root.Values.catalog.models -}}
{{- $_ := set $models (toString $entry.name) (dict "runs" ($entry.runs | default "upstream") "family" ($entry.family | default "")) -}}
{{- end -}}
{{- range $name, $runs := .root.Values.config.routes -}}
{{- if hasKey $models $name -}}
{{- $_ := set (get $models $name) "runs" $runs -}}
{{- end -}}
{{- end -}}
{{- $pools := list -}}
{{- range $name, $spec := $models -}}
{{- if ne $spec.runs "local" -}}
{{- $pools = append $pools (printf "upstream.%s" $name) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .out "models" $models -}}
{{- $_ := set .out "upstreamPools" $pools -}}
{{- end -}}

{{/*
The pools the upstream worker consumes, as a list in (dict "root" $ "out" $dict) under
"pools": workers.upstream.queue split at commas, `upstream` standing for every upstream
pool of the catalog (as SYNTHGATE_WORKER_QUEUES does).
*/}}
{{- define "synthgate.upstreamWorkerPools" -}}
{{- $resolved := dict -}}
{{- $_ := include "synthgate.resolveModels" (dict "root" .root "out" $resolved) -}}
{{- $pools := list -}}
{{- range $name := splitList "," .root.Values.workers.upstream.queue -}}
{{- $name = trim $name -}}
{{- if eq $name "upstream" -}}
{{- $pools = concat $pools $resolved.upstreamPools -}}
{{- else if $name -}}
{{- $pools = append $pools $name -}}
{{- end -}}
{{- end -}}
{{- $_ := set .out "pools" (uniq $pools) -}}
{{- end -}}

{{/* "true" when any worker has a KEDA ScaledObject. */}}
{{- define "synthgate.kedaEnabled" -}}
{{- $resolved := dict -}}
{{- $_ := include "synthgate.resolveGpuPools" (dict "root" . "out" $resolved) -}}
{{- $enabled := and .Values.workers.upstream.enabled .Values.workers.upstream.keda.enabled -}}
{{- range $resolved.pools -}}
{{- if .keda.enabled }}{{ $enabled = true }}{{ end -}}
{{- end -}}
{{- if $enabled }}true{{ end -}}
{{- end -}}

{{/*
How KEDA reaches Redis, written into (dict "root" $ "out" $dict): address, databaseIndex,
enableTLS, and the Secret keys of the password and username ("passwordName"/"passwordKey",
"usernameName"/"usernameKey"), or none. KEDA runs in its own namespace, so a bare host name
is qualified with the release namespace.
*/}}
{{- define "synthgate.resolveKedaRedis" -}}
{{- if include "synthgate.sentinelEnabled" .root -}}
{{- include "synthgate.resolveKedaRedisSentinel" . -}}
{{- else -}}
{{- $root := .root -}}
{{- $out := .out -}}
{{- $cfg := $root.Values.keda.redis -}}
{{- $chartSecret := include "synthgate.secretName" $root -}}
{{- $address := "" -}}
{{- $db := 0 -}}
{{- $tls := false -}}
{{- if $root.Values.redis.enabled -}}
{{- $address = printf "%s.%s.svc:6379" (include "synthgate.redisServiceName" $root) $root.Release.Namespace -}}
{{- if $root.Values.redis.password -}}
{{- $_ := set $out "passwordName" $chartSecret -}}
{{- $_ := set $out "passwordKey" "redis-password" -}}
{{- end -}}
{{- else if not $root.Values.externalRedis.existingSecret -}}
{{- $url := urlParse $root.Values.externalRedis.url -}}
{{- if eq $url.scheme "unix" -}}
{{- fail "KEDA cannot read queue lengths over a unix:// Redis URL; set keda.redis.address" -}}
{{- end -}}
{{- $host := $url.hostname -}}
{{- if not (contains "." $host) -}}
{{- $host = printf "%s.%s.svc" $host $root.Release.Namespace -}}
{{- end -}}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" | default "6379" -}}
{{- $address = printf "%s:%s" $host $port -}}
{{- $db = trimPrefix "/" $url.path | default "0" | int -}}
{{- $tls = eq $url.scheme "rediss" -}}
{{- if contains ":" $url.userinfo -}}
{{- $user := index (splitList ":" $url.userinfo) 0 -}}
{{- $_ := set $out "passwordName" $chartSecret -}}
{{- $_ := set $out "passwordKey" "keda-redis-password" -}}
{{- if $user -}}
{{- $_ := set $out "usernameName" $chartSecret -}}
{{- $_ := set $out "usernameKey" "keda-redis-username" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $cfg.address -}}{{- $address = $cfg.address -}}{{- end -}}
{{- if not (kindIs "invalid" $cfg.databaseIndex) -}}{{- $db = $cfg.databaseIndex -}}{{- end -}}
{{- if not (kindIs "invalid" $cfg.enableTLS) -}}{{- $tls = $cfg.enableTLS -}}{{- end -}}
{{- if $cfg.passwordSecret.name -}}
{{- $_ := set $out "passwordName" $cfg.passwordSecret.name -}}
{{- $_ := set $out "passwordKey" $cfg.passwordSecret.key -}}
{{- $_ := unset $out "usernameName" -}}
{{- end -}}
{{- $_ := set $out "address" (required "keda.redis.address is required when a worker uses KEDA with externalRedis.existingSecret" $address) -}}
{{- $_ := set $out "databaseIndex" (int $db) -}}
{{- $_ := set $out "enableTLS" $tls -}}
{{- end -}}
{{- end -}}

{{/* The user and password in externalRedis.url, for KEDA: (dict "root" $ "part" 0|1). */}}
{{- define "synthgate.externalRedisUserinfo" -}}
{{- $userinfo := (urlParse .root.Values.externalRedis.url).userinfo -}}
{{- if contains ":" $userinfo -}}
{{- index (splitList ":" $userinfo) .part -}}
{{- end -}}
{{- end -}}

{{/* The name of the KEDA TriggerAuthentication for Redis. */}}
{{- define "synthgate.kedaAuthName" -}}
{{- include "synthgate.componentName" (dict "root" . "component" "keda-redis") -}}
{{- end -}}

{{/*
A worker's KEDA ScaledObject: (dict "root" $ "name" deployment "component" c "queues" list "keda" cfg).
Two triggers per pool (queue), since waiting tasks are in two lists: the pool's Celery
queue (a few tasks, fed by the fair queue) and the pool's backlog list, one entry per task
still waiting in a tenant's list (named in taskcore/redis_keys.py: backlog). KEDA scales
on the largest.
*/}}
{{- define "synthgate.scaledObject" -}}
{{- $redis := dict -}}
{{- $_ := include "synthgate.resolveKedaRedis" (dict "root" .root "out" $redis) -}}
{{- $keda := .keda -}}
{{- $root := .root -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ .name }}
  labels:
    {{- include "synthgate.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  pollingInterval: {{ .keda.pollingInterval }}
  cooldownPeriod: {{ .keda.cooldownPeriod }}
  minReplicaCount: {{ .keda.minReplicaCount }}
  maxReplicaCount: {{ .keda.maxReplicaCount }}
  {{- with .keda.behavior }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- toYaml . | nindent 8 }}
  {{- end }}
  triggers:
    {{- range $queue := .queues }}
    {{- range $list := list $queue (printf "synthgate:pool:%s:backlog" $queue) }}
    {{- if $redis.sentinelMaster }}
    - type: redis-sentinel
      metadata:
        addresses: {{ $redis.sentinelAddresses | quote }}
        sentinelMaster: {{ $redis.sentinelMaster | quote }}
    {{- else }}
    - type: redis
      metadata:
        address: {{ $redis.address | quote }}
    {{- end }}
        listName: {{ $list | quote }}
        listLength: {{ $keda.listLength | quote }}
        activationListLength: {{ $keda.activationListLength | quote }}
        databaseIndex: {{ $redis.databaseIndex | quote }}
        enableTLS: {{ $redis.enableTLS | quote }}
      {{- if or $redis.passwordName $redis.sentinelPasswordName }}
      authenticationRef:
        name: {{ include "synthgate.kedaAuthName" $root }}
      {{- end }}
    {{- end }}
    {{- end }}
{{- end -}}


{{/*
A worker container's probes, all on its metrics port (the worker serves them next to
/metrics): liveness on /livez (503 once its consumer loop or lease renewal has stalled),
readiness and startup on /readyz (503 until its pipelines are loaded or its consumer is
connected): (dict "probes" cfg) where cfg holds livenessProbe, readinessProbe and maybe
startupProbe, each with enabled and the timings. Nothing for a probe that is off.
*/}}
{{- define "synthgate.workerProbes" -}}
{{- $paths := dict "livenessProbe" "/livez" "readinessProbe" "/readyz" "startupProbe" "/readyz" -}}
{{- range $name := list "startupProbe" "livenessProbe" "readinessProbe" }}
{{- $probe := get $.probes $name }}
{{- if and $probe $probe.enabled }}
{{ $name }}:
  httpGet:
    path: {{ get $paths $name }}
    port: metrics
  {{- range $field := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" }}
  {{- if hasKey $probe $field }}
  {{ $field }}: {{ get $probe $field }}
  {{- end }}
  {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
topologySpreadConstraints of a pod: (dict "constraints" list "matchLabels" dict). A
constraint without a labelSelector gets one selecting the pods it spreads (matchLabels).
*/}}
{{- define "synthgate.topologySpread" -}}
{{- $constraints := list -}}
{{- range .constraints -}}
{{- $constraint := deepCopy . -}}
{{- if not (hasKey $constraint "labelSelector") -}}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" $.matchLabels) -}}
{{- end -}}
{{- $constraints = append $constraints $constraint -}}
{{- end -}}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
A worker pool's PodDisruptionBudget: (dict "root" $ "name" n "component" c "matchLabels"
dict "pdb" cfg). minAvailable when set, else maxUnavailable: a node drain evicts the
pool's pods a few at a time and never the whole pool at once.
*/}}
{{- define "synthgate.workerPdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "synthgate.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .pdb.minAvailable) }}
  minAvailable: {{ .pdb.minAvailable | toJson }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable | toJson }}
  {{- end }}
  selector:
    matchLabels:
      {{- toYaml .matchLabels | nindent 6 }}
{{- end -}}
