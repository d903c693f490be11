{{/*
Names and labels. Every template takes the chart's root context (.) unless it says otherwise;
per-run templates take (dict "root" $ "run" $run) and are documented with "ctx".
*/}}

{{/* Chart name (overridable with nameOverride), cut to 63 characters for DNS and label values. */}}
{{- define "sqlmaster-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide name for shared objects (the created PVC): release name, or release-chart when they differ. */}}
{{- define "sqlmaster-lib.fullname" -}}
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

{{/* Chart name and version as used by the helm.sh/chart label. */}}
{{- define "sqlmaster-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The task this chart runs (train | eval), declared by the chart in its own values as `task`. */}}
{{- define "sqlmaster-lib.task" -}}
{{- required "task is fixed by the chart (train or eval); do not unset it" .Values.task -}}
{{- end -}}

{{/* The run id: .Values.runId (sqlctl always sets it) or, for plain `helm install`, the release name. */}}
{{- define "sqlmaster-lib.runId" -}}
{{- default .Release.Name .Values.runId -}}
{{- end -}}

{{/* Labels on every object of the release (Bitnami/helm convention) plus the run and task. */}}
{{- define "sqlmaster-lib.labels" -}}
helm.sh/chart: {{ include "sqlmaster-lib.chart" . }}
{{ include "sqlmaster-lib.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sqlmaster
app.kubernetes.io/component: {{ include "sqlmaster-lib.task" . }}
sqlmaster.io/run-id: {{ include "sqlmaster-lib.runId" . | quote }}
sqlmaster.io/task: {{ include "sqlmaster-lib.task" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Immutable labels that pick the release's objects (name + instance), as in `helm create`. */}}
{{- define "sqlmaster-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sqlmaster-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* ctx: labels of one run's objects (Job, pod template, ConfigMap, Service): release labels + model; a GRPO run's
stage and the SFT run it starts from too (sqlctl refuses --from on a GRPO run with them). */}}
{{- define "sqlmaster-lib.runLabels" -}}
{{ include "sqlmaster-lib.labels" .root }}
sqlmaster.io/model: {{ .run.model }}
{{- if eq (toString (default "sft" .run.stage)) "grpo" }}
sqlmaster.io/stage: grpo
sqlmaster.io/init-from: {{ .run.initFromRunId | toString | quote }}
{{- end }}
{{- end -}}

{{/* ctx: labels that select exactly one run's pods (the headless Service uses them). */}}
{{- define "sqlmaster-lib.runSelectorLabels" -}}
{{ include "sqlmaster-lib.selectorLabels" .root }}
sqlmaster.io/run-id: {{ include "sqlmaster-lib.runId" .root | quote }}
sqlmaster.io/model: {{ .run.model }}
{{- end -}}

{{/*
ctx: name of one run's Job (also its ConfigMap and headless Service): "<runId>-<task>-<model>", a DNS-1123
label unique per run and model. Kept to 56 characters so that Indexed pod hostnames "<job>-<index>" stay
within 63; a longer name is cut to 47 and suffixed with 8 hex digits of its sha256 so it stays unique.
*/}}
{{- define "sqlmaster-lib.jobName" -}}
{{- $raw := printf "%s-%s-%s" (include "sqlmaster-lib.runId" .root) (include "sqlmaster-lib.task" .root) .run.model -}}
{{- $full := regexReplaceAll "[^a-z0-9-]+" (lower $raw) "-" -}}
{{- if le (len $full) 56 -}}
{{- $full | trimAll "-" -}}
{{- else -}}
{{- printf "%s-%s" ($full | trunc 47 | trimAll "-") (sha256sum $full | trunc 8) -}}
{{- end -}}
{{- end -}}

{{/* Name of the PVC the runs use: storage.existingClaim, else the one this release creates. */}}
{{- define "sqlmaster-lib.claimName" -}}
{{- if .Values.storage.existingClaim -}}
{{- .Values.storage.existingClaim -}}
{{- else -}}
{{- printf "%s-data" (include "sqlmaster-lib.fullname" . | trunc 58 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}

{{/* Where the PVC is mounted: HF cache, checkpoints and outputs all live below it (docs/design.md). */}}
{{- define "sqlmaster-lib.dataDir" -}}
/data
{{- end -}}

{{/* ctx: the run's output folder on the PVC, /data/runs/<runId>/<model> (docs/design.md, run directory). */}}
{{- define "sqlmaster-lib.outputDir" -}}
{{- printf "%s/runs/%s/%s" (include "sqlmaster-lib.dataDir" .root) (include "sqlmaster-lib.runId" .root) .run.model -}}
{{- end -}}
