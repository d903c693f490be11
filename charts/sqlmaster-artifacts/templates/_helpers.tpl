{{/* reader.name: the pod name ("<runId>-reader" unless .Values.name is set). */}}
{{- define "reader.name" -}}
{{- default (printf "%s-reader" .Values.runId) .Values.name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* reader.labels: standard labels plus the run id and the artifact-reader role sqlctl selects on. */}}
{{- define "reader.labels" -}}
app.kubernetes.io/name: sqlmaster-artifacts
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sqlmaster
app.kubernetes.io/component: artifact-reader
sqlmaster.io/run-id: {{ .Values.runId | quote }}
sqlmaster.io/role: artifact-reader
{{- end -}}
