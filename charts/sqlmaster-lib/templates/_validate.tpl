{{/*
Bitnami-style validation: collect every problem in the values, then fail once listing them all, each naming
the key and the --set that fixes it. values.schema.json catches types and enums first; this covers what a
schema cannot say (cross-field rules) and repeats the safety checks for `--skip-schema-validation`.
*/}}
{{- define "sqlmaster-lib.validateValues" -}}
{{- $task := include "sqlmaster-lib.task" . -}}
{{- /* The registry names: each chart's templates/_registry.tpl, generated from sqlmaster/models/registry.py. */ -}}
{{- $models := include "sqlmaster.registryModels" . | fromJsonArray -}}
{{- $keyNames := list "HF_TOKEN" "WANDB_API_KEY" "OPENAI_API_KEY" "LANGSMITH_API_KEY" -}}
{{- $problems := list -}}
{{- $runId := include "sqlmaster-lib.runId" . -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $runId) -}}
{{- $problems = append $problems (printf "runId %q must be a DNS-1123 label (lowercase letters, digits, '-', at most 63). Fix: --set runId=my-run-1" $runId) -}}
{{- end -}}
{{- if not .Values.image.repository -}}
{{- $problems = append $problems "image.repository is empty. Fix: --set image.repository=ghcr.io/sqlmaster/sqlmaster-<task>" -}}
{{- end -}}
{{- if not (toString (default "" .Values.image.tag)) -}}
{{- $problems = append $problems "image.tag is empty. Fix: --set image.tag=0.1.0" -}}
{{- end -}}
{{- if not .Values.runs -}}
{{- $problems = append $problems "runs is empty: nothing to run. Fix: --set runs[0].model=mistral7b,runs[0].gpus=1 or -f jobs/<task>/<model>.yaml" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $run := .Values.runs -}}
{{- if not (has (toString $run.model) $models) -}}
{{- $problems = append $problems (printf "runs[%d].model %q is not a registry model (%s). Fix: --set runs[%d].model=mistral7b (use runs[%d].baseModel for a hub id)" $i (toString $run.model) (join ", " $models) $i $i) -}}
{{- end -}}
{{- if hasKey $seen (toString $run.model) -}}
{{- $problems = append $problems (printf "runs[%d].model %s appears twice: a run has one Job per model. Fix: remove one entry or use a second release" $i (toString $run.model)) -}}
{{- end -}}
{{- $_ := set $seen (toString $run.model) true -}}
{{- if lt (int $run.gpus) 1 -}}
{{- $problems = append $problems (printf "runs[%d].gpus must be >= 1 (got %v). Fix: --set runs[%d].gpus=1" $i $run.gpus $i) -}}
{{- end -}}
{{- $nodes := int (default 1 $run.nodes) -}}
{{- if lt $nodes 1 -}}
{{- $problems = append $problems (printf "runs[%d].nodes must be >= 1. Fix: --set runs[%d].nodes=1" $i $i) -}}
{{- end -}}
{{- if and (gt $nodes 1) (ne $task "train") -}}
{{- $problems = append $problems (printf "runs[%d].nodes: evaluation runs on one node (got %d). Fix: --set runs[%d].nodes=1" $i $nodes $i) -}}
{{- end -}}
{{- if and (gt $nodes 1) (not $.Values.storage.existingClaim) (has "ReadWriteOnce" $.Values.storage.accessModes) -}}
{{- $problems = append $problems (printf "runs[%d].nodes=%d needs storage every node can mount, but the created claim is ReadWriteOnce. Fix: --set storage.accessModes={ReadWriteMany} or --set storage.existingClaim=NAME" $i $nodes) -}}
{{- end -}}
{{- if and (hasKey $run "adapterRunId") (ne $task "eval") -}}
{{- $problems = append $problems (printf "runs[%d].adapterRunId is for evaluation: these look like eval values (jobs/eval/<model>.yaml). Fix: install them with the eval chart, helm install sqlmaster-eval charts/sqlmaster-eval -f FILE" $i) -}}
{{- end -}}
{{- if and (hasKey (default (dict) $run.recipe) "training") (not (hasKey $run "adapterRunId")) (eq $task "eval") -}}
{{- $problems = append $problems (printf "runs[%d] has recipe.training and no adapterRunId: these look like training values (jobs/train/<model>.yaml). Fix: install them with the train chart, helm install sqlmaster-train charts/sqlmaster-train -f FILE; evaluate with -f jobs/eval/<model>.yaml" $i) -}}
{{- end -}}
{{- $stage := toString (default "sft" $run.stage) -}}
{{- if and (ne $stage "sft") (ne $task "train") -}}
{{- $problems = append $problems (printf "runs[%d].stage is for training (the eval chart evaluates a run: runs[%d].adapterRunId). Fix: remove runs[%d].stage" $i $i $i) -}}
{{- else if not (has $stage (list "sft" "grpo")) -}}
{{- $problems = append $problems (printf "runs[%d].stage %q is not a stage (sft or grpo). Fix: --set runs[%d].stage=grpo,runs[%d].initFromRunId=SFT_RUN_ID" $i $stage $i $i) -}}
{{- else if and (eq $stage "grpo") (not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" (toString (default "" $run.initFromRunId)))) -}}
{{- $problems = append $problems (printf "runs[%d].stage=grpo needs runs[%d].initFromRunId: the runId of the finished SFT run of %s it starts from, on the same claim (got %q). Fix: --set runs[%d].initFromRunId=SFT_RUN_ID,storage.existingClaim=SFT_CLAIM" $i $i (toString $run.model) (toString (default "" $run.initFromRunId)) $i) -}}
{{- else if and (eq $stage "sft") (hasKey $run "initFromRunId") -}}
{{- $problems = append $problems (printf "runs[%d].initFromRunId is for runs[%d].stage=grpo (an SFT run starts from the base model). Fix: --set runs[%d].stage=grpo, or remove initFromRunId" $i $i $i) -}}
{{- end -}}
{{- range $j, $e := concat (default (list) $.Values.env) (default (list) $run.env) -}}
{{- if and (has (toString $e.name) $keyNames) (hasKey $e "value") -}}
{{- $problems = append $problems (printf "env %s has a literal value: API keys are read only from the Secret %s. Fix: remove it and run kubectl create secret generic %s --from-literal=%s=..." $e.name $.Values.secrets.name $.Values.secrets.name $e.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $k := default (list) .Values.secrets.required -}}
{{- if not (has $k $.Values.secrets.keys) -}}
{{- $problems = append $problems (printf "secrets.required names %s, which is not in secrets.keys. Fix: --set secrets.keys={%s}" $k (join "," (append $.Values.secrets.keys $k))) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.storage.existingClaim) (not .Values.storage.create) -}}
{{- $problems = append $problems "storage: no claim to mount. Fix: --set storage.existingClaim=NAME or --set storage.create=true" -}}
{{- end -}}
{{- $problems = concat $problems (include "sqlmaster-lib.validateDatabase" . | fromJsonArray) -}}
{{- if $problems -}}
{{- fail (printf "\n\nVALUES VALIDATION:\n  - %s\n" (join "\n  - " $problems)) -}}
{{- end -}}
{{- end -}}
