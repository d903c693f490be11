{{/*
One ConfigMap per run holding its recipe (the `recipe:` key of a jobs/ values file, docs/design.md), mounted
by the Job at /etc/sqlmaster/recipe.yaml. The recipe is data, not code: the schema already refused unknown
sections and keys, and `sqlmaster` validates it again (exit code 2) when it starts.
*/}}
{{- define "sqlmaster-lib.configmaps" -}}
{{- range $run := .Values.runs }}
{{- $ctx := dict "root" $ "run" $run }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "sqlmaster-lib.jobName" $ctx }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "sqlmaster-lib.runLabels" $ctx | nindent 4 }}
data:
  recipe.yaml: |
    {{- toYaml (default (dict) $run.recipe) | nindent 4 }}
{{- end }}
{{- end -}}
