{{/* NOTES.txt body shared by both charts: the exact commands to follow this release's runs. */}}
{{- define "sqlmaster-lib.notes" -}}
{{- $runId := include "sqlmaster-lib.runId" . -}}
{{- $ns := .Release.Namespace -}}
{{- $task := include "sqlmaster-lib.task" . -}}
SQLMaster {{ $task }} run {{ $runId }}: {{ len .Values.runs }} Job(s) in namespace {{ $ns }}.
{{ range $run := .Values.runs }}
  - {{ include "sqlmaster-lib.jobName" (dict "root" $ "run" $run) }}: {{ $run.model }}, {{ int (default 1 $run.nodes) }} node(s) x {{ int $run.gpus }} GPU(s), outputs in {{ include "sqlmaster-lib.outputDir" (dict "root" $ "run" $run) }}{{ if eq $task "eval" }}/eval{{ end }} on PVC {{ include "sqlmaster-lib.claimName" $ }}
{{- if eq (toString (default "sft" $run.stage)) "grpo" }}, GRPO from the SFT run in {{ include "sqlmaster-lib.dataDir" $ }}/runs/{{ $run.initFromRunId }}/{{ $run.model }}{{ end }}
{{- end }}
{{- with (default (dict) .Values.database) }}
{{- if .source }}

Data: built in each pod first from {{ include "sqlmaster-lib.redactUrl" .source }} by `sqlmaster data from-db` (initContainer from-db, read-only){{ if .passwordSecret }}; the password is read from the Secret {{ .passwordSecret }} (key {{ .passwordKey }}), mounted into that initContainer only{{ end }}. Its log:
  kubectl logs -n {{ $ns }} -l sqlmaster.io/run-id={{ $runId }} -c from-db
{{- else if .dataDir }}

Data: the from-db folder {{ .dataDir }} on PVC {{ include "sqlmaster-lib.claimName" $ }} ({{ if eq $task "train" }}train.jsonl{{ else }}test.jsonl{{ end }}).
{{- end }}
{{- end }}

Watch the pods:
  kubectl get pods -n {{ $ns }} -l sqlmaster.io/run-id={{ $runId }}

Follow the logs (all models of the run):
  kubectl logs -n {{ $ns }} -f -l sqlmaster.io/run-id={{ $runId }} --max-log-requests={{ add 1 (len .Values.runs) }} --prefix
{{- range $run := .Values.runs }}
  kubectl logs -n {{ $ns }} -f -l sqlmaster.io/run-id={{ $runId }},sqlmaster.io/model={{ $run.model }}
{{- end }}

or, across pod retries:
  sqlctl logs {{ $runId }} -n {{ $ns }} -f

API keys come from the Secret {{ .Values.secrets.name }} (keys: {{ join ", " .Values.secrets.keys }}{{ with .Values.secrets.required }}; required: {{ join ", " . }}{{ end }}). Create it once with:
  kubectl create secret generic {{ .Values.secrets.name }} -n {{ $ns }} --from-literal=HF_TOKEN=... --from-literal=WANDB_API_KEY=...
{{- end -}}
