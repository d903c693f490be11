{{/*
ctx: the container command of one run, as a JSON list (docs/design.md, workload CLI contract).

train, 1 GPU:       sqlmaster train --model M --recipe /etc/sqlmaster/recipe.yaml --output-dir /data/runs/<runId>/<model>
train, stage grpo:  ... --output-dir /data/runs/<runId>/<model> --stage grpo --init-from /data/runs/<initFromRunId>/<model>
                    (the finished SFT run on the same claim; the workload refuses anything else with exit 2)
train, G GPUs:      sqlmaster-torchrun --no-python --standalone --nproc_per_node=G sqlmaster train ...
train, N nodes:     sqlmaster-torchrun --no-python --nnodes=N --node_rank=$(NODE_RANK) --nproc_per_node=G
                      --master_addr=<job>-0.<job> --master_port=29500 sqlmaster train ...
                    (pod 0 of the Indexed Job, reached through the headless Service named like the Job)
eval:               sqlmaster eval run --model M [--adapter /data/runs/<adapterRunId>/<model>]
                      --output-dir /data/runs/<runId>/<model>/eval --recipe /etc/sqlmaster/recipe.yaml
                    (one process sees every GPU of the pod; vLLM shards across them itself)
database.dataDir or .source (_database.tpl): train adds --set data.source=DIR, eval --dataset DIR/test.jsonl
`--no-python` makes torchrun start the `sqlmaster` console script itself instead of `python <script>`.
`sqlmaster-torchrun` is torchrun that exits with the first failed worker's exit code (plain torchrun exits 1,
so a configuration error, exit 2, would not fail the Job at once through the podFailurePolicy).
*/}}
{{- define "sqlmaster-lib.command" -}}
{{- $task := include "sqlmaster-lib.task" .root -}}
{{- $recipe := "/etc/sqlmaster/recipe.yaml" -}}
{{- $model := default .run.model .run.baseModel -}}
{{- $out := include "sqlmaster-lib.outputDir" . -}}
{{- $cli := list -}}
{{- if eq $task "train" -}}
{{- $cli = list "sqlmaster" "train" "--model" $model "--recipe" $recipe "--output-dir" $out -}}
{{- if eq (toString (default "sft" .run.stage)) "grpo" -}}
{{- $init := printf "%s/runs/%s/%s" (include "sqlmaster-lib.dataDir" .root) (toString .run.initFromRunId) .run.model -}}
{{- $cli = concat $cli (list "--stage" "grpo" "--init-from" $init) -}}
{{- end -}}
{{- else -}}
{{- $cli = list "sqlmaster" "eval" "run" "--model" $model -}}
{{- if .run.adapterRunId -}}
{{- $adapter := printf "%s/runs/%s/%s" (include "sqlmaster-lib.dataDir" .root) .run.adapterRunId .run.model -}}
{{- $cli = concat $cli (list "--adapter" $adapter) -}}
{{- end -}}
{{- $cli = concat $cli (list "--output-dir" (printf "%s/eval" $out) "--recipe" $recipe) -}}
{{- end -}}
{{- $cli = concat $cli (include "sqlmaster-lib.fromDbArgs" . | fromJsonArray) -}}
{{- $cli = concat $cli (default (list) .run.extraArgs) -}}
{{- $gpus := int .run.gpus -}}
{{- $nodes := int (default 1 .run.nodes) -}}
{{- if and (eq $task "train") (gt $nodes 1) -}}
{{- $job := include "sqlmaster-lib.jobName" . -}}
{{- $launcher := list "sqlmaster-torchrun" "--no-python" (printf "--nnodes=%d" $nodes) "--node_rank=$(NODE_RANK)" (printf "--nproc_per_node=%d" $gpus) (printf "--master_addr=%s-0.%s" $job $job) (printf "--master_port=%d" (int .root.Values.distributed.masterPort)) -}}
{{- $cli = concat $launcher $cli -}}
{{- else if and (eq $task "train") (gt $gpus 1) -}}
{{- $cli = concat (list "sqlmaster-torchrun" "--no-python" "--standalone" (printf "--nproc_per_node=%d" $gpus)) $cli -}}
{{- end -}}
{{- toJson $cli -}}
{{- end -}}
