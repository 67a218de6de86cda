{{/*
One alerting rule of the PrometheusRule: (dict "root" $ "name" alert-name "alert" its values
"expr" PromQL "summary" text "description" text). Its labels are its severity and
monitoring.prometheusRule.alertLabels.
*/}}
{{- define "synthgate.alert" -}}
{{- $labels := merge (dict "severity" .alert.severity) (deepCopy .root.Values.monitoring.prometheusRule.alertLabels) -}}
- alert: {{ .name }}
  expr: |-
    {{- .expr | nindent 4 }}
  for: {{ .alert.for }}
  labels:
    {{- toYaml $labels | nindent 4 }}
  annotations:
    summary: {{ .summary | quote }}
    description: {{ .description | quote }}
{{- end -}}
