{{/*
How synthgate's pods and KEDA reach Redis through Redis Sentinel (externalRedis.sentinel).
*/}}

{{/* "true" when the pods connect through sentinels. */}}
{{- define "synthgate.sentinelEnabled" -}}
{{- if and .Values.externalRedis.sentinel.enabled (not .Values.redis.enabled) -}}true{{- end -}}
{{- end -}}

{{/*
The Redis environment of a synthgate container: SYNTHGATE_REDIS_URL from the chart's
Secret or externalRedis.existingSecret; or, with sentinels, the URL the chart builds (its
password a $(reference) to a variable set from the operator's Secret just before it,
which Kubernetes substitutes when it starts the container) and the sentinel settings.
*/}}
{{- define "synthgate.redisEnv" -}}
{{- $sentinel := .Values.externalRedis.sentinel -}}
{{- if include "synthgate.sentinelEnabled" . -}}
{{- $auth := "" -}}
{{- with $sentinel.passwordSecret.name }}
- name: SYNTHGATE_REDIS_URL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $sentinel.passwordSecret.key }}
{{- $auth = ":$(SYNTHGATE_REDIS_URL_PASSWORD)@" }}
{{- end }}
- name: SYNTHGATE_REDIS_URL
  value: {{ printf "%s://%s%s:6379/%d" (ternary "rediss" "redis" $sentinel.tls) $auth $sentinel.masterName (int $sentinel.database) | quote }}
- name: SYNTHGATE_REDIS_SENTINELS
  value: {{ join "," $sentinel.hosts | quote }}
- name: SYNTHGATE_REDIS_SENTINEL_MASTER
  value: {{ $sentinel.masterName | quote }}
{{- with $sentinel.sentinelPasswordSecret.name }}
- name: SYNTHGATE_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $sentinel.sentinelPasswordSecret.key }}
{{- end }}
- name: SYNTHGATE_REDIS_MIN_REPLICAS
  value: {{ int $sentinel.minReplicas | toString | quote }}
{{- if not (kindIs "invalid" $sentinel.waitTimeoutMs) }}
- name: SYNTHGATE_REDIS_WAIT_TIMEOUT_MS
  value: {{ int $sentinel.waitTimeoutMs | toString | quote }}
{{- end }}
{{- else }}
- name: SYNTHGATE_REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if and .Values.externalRedis.existingSecret (not .Values.redis.enabled) }}
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
      {{- else }}
      name: {{ include "synthgate.secretName" . }}
      key: redis-url
      {{- end }}
{{- end }}
{{- end -}}

{{/*
How KEDA's redis-sentinel scaler reaches Redis, written into (dict "root" $ "out" $dict):
"sentinelAddresses" (each sentinel, a bare host name qualified with the release namespace
since KEDA runs in its own), "sentinelMaster", databaseIndex, enableTLS, and the Secret
keys of the Redis password ("passwordName"/"passwordKey") and of the sentinels' password
("sentinelPasswordName"/"sentinelPasswordKey"), or none. keda.redis.databaseIndex,
enableTLS and passwordSecret still override.
*/}}
{{- define "synthgate.resolveKedaRedisSentinel" -}}
{{- $root := .root -}}
{{- $out := .out -}}
{{- $sentinel := $root.Values.externalRedis.sentinel -}}
{{- $cfg := $root.Values.keda.redis -}}
{{- $addresses := list -}}
{{- range $address := $sentinel.hosts -}}
{{- $port := regexFind "[0-9]+$" $address -}}
{{- $host := trimSuffix (printf ":%s" $port) $address -}}
{{- if not (contains "." $host) -}}
{{- $host = printf "%s.%s.svc" $host $root.Release.Namespace -}}
{{- end -}}
{{- $addresses = append $addresses (printf "%s:%s" $host $port) -}}
{{- end -}}
{{- $_ := set $out "sentinelAddresses" (join "," $addresses) -}}
{{- $_ := set $out "sentinelMaster" $sentinel.masterName -}}
{{- $_ := set $out "databaseIndex" (int (ternary $sentinel.database $cfg.databaseIndex (kindIs "invalid" $cfg.databaseIndex))) -}}
{{- $_ := set $out "enableTLS" (ternary $sentinel.tls $cfg.enableTLS (kindIs "invalid" $cfg.enableTLS)) -}}
{{- if $cfg.passwordSecret.name -}}
{{- $_ := set $out "passwordName" $cfg.passwordSecret.name -}}
{{- $_ := set $out "passwordKey" $cfg.passwordSecret.key -}}
{{- else if $sentinel.passwordSecret.name -}}
{{- $_ := set $out "passwordName" $sentinel.passwordSecret.name -}}
{{- $_ := set $out "passwordKey" $sentinel.passwordSecret.key -}}
{{- end -}}
{{- if $sentinel.sentinelPasswordSecret.name -}}
{{- $_ := set $out "sentinelPasswordName" $sentinel.sentinelPasswordSecret.name -}}
{{- $_ := set $out "sentinelPasswordKey" $sentinel.sentinelPasswordSecret.key -}}
{{- end -}}
{{- end -}}
