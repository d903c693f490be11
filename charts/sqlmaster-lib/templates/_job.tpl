{{/*
One batch/v1 Job per entry of .Values.runs (call with the chart's root context).
Why each part is there:
- restartPolicy Never + podFailurePolicy: exit code 2 is a configuration error (docs/design.md) and fails the
  Job at once; a pod evicted by a disruption (DisruptionTarget: preemption, node drain) is retried without
  counting against backoffLimit; any other failure is retried up to backoffLimit times.
- every retry writes to the same /data/runs/<runId>/<model> on the PVC, so `sqlmaster train` resumes from the
  last checkpoint there.
- database.source: the initContainer from-db builds the run's data folder from the user's database first
  (_database.tpl); it alone mounts the database password's Secret.
- nodes > 1: an Indexed Job (one pod per node, index = torchrun node rank) whose pods find pod 0 through the
  headless Service named like the Job (spec.subdomain).
*/}}
{{- define "sqlmaster-lib.jobs" -}}
{{- range $run := .Values.runs }}
{{- $ctx := dict "root" $ "run" $run }}
{{- $name := include "sqlmaster-lib.jobName" $ctx }}
{{- $nodes := int (default 1 $run.nodes) }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "sqlmaster-lib.runLabels" $ctx | nindent 4 }}
    {{- with $.Values.kueue.queueName }}
    kueue.x-k8s.io/queue-name: {{ . | quote }}
    {{- end }}
spec:
  backoffLimit: {{ int $.Values.job.backoffLimit }}
  activeDeadlineSeconds: {{ int $.Values.job.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ int $.Values.job.ttlSecondsAfterFinished }}
  {{- if gt $nodes 1 }}
  completionMode: Indexed
  completions: {{ $nodes }}
  parallelism: {{ $nodes }}
  {{- end }}
  podFailurePolicy:
    rules:
      - action: FailJob
        onExitCodes:
          containerName: sqlmaster
          operator: In
          values: [2]
      {{- if (default (dict) $.Values.database).source }}
      # the from-db initContainer's configuration errors (an empty database, an unreachable server) too
      - action: FailJob
        onExitCodes:
          containerName: from-db
          operator: In
          values: [2]
      {{- end }}
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
            status: "True"
  template:
    metadata:
      labels:
        {{- include "sqlmaster-lib.runLabels" $ctx | nindent 8 }}
      annotations:
        checksum/recipe: {{ toYaml (default (dict) $run.recipe) | sha256sum }}
    spec:
      {{- include "sqlmaster-lib.podSpec" $ctx | nindent 6 }}
{{- end }}
{{- end -}}

{{/* ctx: one run's pod spec: scheduling (GPU node selector, tolerations), security, the container, volumes. */}}
{{- define "sqlmaster-lib.podSpec" -}}
{{- $run := .run -}}
{{- $root := .root -}}
{{- $ctx := . -}}
{{- $name := include "sqlmaster-lib.jobName" $ctx -}}
{{- $nodes := int (default 1 $run.nodes) -}}
{{- $gpus := int $run.gpus -}}
{{- $res := default $root.Values.resources $run.resources -}}
{{- $gpuQty := dict "nvidia.com/gpu" $gpus -}}
{{- $requests := merge (dict) $gpuQty (omit (default (dict) $res.requests) "nvidia.com/gpu") -}}
{{- $limits := merge (dict) $gpuQty (omit (default (dict) $res.limits) "nvidia.com/gpu") -}}
restartPolicy: Never
{{- if gt $nodes 1 }}
subdomain: {{ $name }}
{{- end }}
automountServiceAccountToken: false
{{- with $root.Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with $root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ int $root.Values.podSecurityContext.runAsUser }}
  runAsGroup: {{ int $root.Values.podSecurityContext.runAsGroup }}
  fsGroup: {{ int $root.Values.podSecurityContext.fsGroup }}
  seccompProfile:
    type: RuntimeDefault
{{- if (default (dict) $root.Values.database).source }}
initContainers:
  {{- include "sqlmaster-lib.fromDbContainer" $ctx | nindent 2 }}
{{- end }}
containers:
  - name: sqlmaster
    image: {{ printf "%s:%s" $root.Values.image.repository (toString $root.Values.image.tag) | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: {{ include "sqlmaster-lib.command" $ctx }}
    env:
      {{- include "sqlmaster-lib.env" $ctx | nindent 6 }}
    resources:
      requests:
        {{- toYaml $requests | nindent 8 }}
      limits:
        {{- toYaml $limits | nindent 8 }}
    securityContext:
      runAsNonRoot: true
      allowPrivilegeEscalation: false
      privileged: false
      capabilities:
        drop: [ALL]
      seccompProfile:
        type: RuntimeDefault
    volumeMounts:
      - name: data
        mountPath: {{ include "sqlmaster-lib.dataDir" $root }}
      - name: shm
        mountPath: /dev/shm
      - name: recipe
        mountPath: /etc/sqlmaster
        readOnly: true
volumes:
  - name: data
    persistentVolumeClaim:
      claimName: {{ include "sqlmaster-lib.claimName" $root }}
  # PyTorch DataLoader workers and NCCL exchange tensors through /dev/shm; the container default is 64 MiB.
  - name: shm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $root.Values.shm.sizeLimit }}
{{- with (default (dict) $root.Values.database) }}
{{- if and .source .passwordSecret }}
  # The database password: only this key of the Secret, only in the from-db initContainer (never a literal).
  - name: db-password
    secret:
      secretName: {{ .passwordSecret }}
      defaultMode: 0440
      items:
        - key: {{ .passwordKey }}
          path: password
{{- end }}
{{- end }}
  - name: recipe
    configMap:
      name: {{ $name }}
      items:
        - key: recipe.yaml
          path: recipe.yaml
{{- end -}}

{{/* ctx: the container's env: run identity, torchrun's node rank, API keys by reference only, extra env. */}}
{{- define "sqlmaster-lib.env" -}}
{{- $run := .run -}}
{{- $root := .root -}}
{{- $nodes := int (default 1 $run.nodes) -}}
{{- $task := include "sqlmaster-lib.task" $root -}}
{{- $required := default (list) $root.Values.secrets.required -}}
- name: HF_HOME
  value: {{ printf "%s/hf-cache" (include "sqlmaster-lib.dataDir" $root) | quote }}
- name: PYTHONUNBUFFERED
  value: "1"
- name: SQLMASTER_RUN_ID
  value: {{ include "sqlmaster-lib.runId" $root | quote }}
- name: SQLMASTER_MODEL
  value: {{ $run.model | quote }}
- name: SQLMASTER_TASK
  value: {{ $task | quote }}
{{- if gt $nodes 1 }}
- name: NODE_RANK
  valueFrom:
    fieldRef:
      fieldPath: metadata.annotations['batch.kubernetes.io/job-completion-index']
{{- end }}
{{- /* API keys: only references to the existing Secret, never values (docs/design.md). */}}
{{- range $key := $root.Values.secrets.keys }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.name }}
      key: {{ $key }}
      optional: {{ not (has $key $required) }}
{{- end }}
{{- with concat (default (list) $root.Values.env) (default (list) $run.env) }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
