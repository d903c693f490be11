{{/*
One batch/v1 Job per entry of .Values.runs (call with the chart's root context).
Why each part is there:
- restartPolicy Never + podFailurePolicy: exit code 2 is a configuration error (docs/design.md) and fails the
  Job at once; a pod evicted by a disruption (DisruptionTarget: preemption, node drain) is retried without
  counting against backoffLimit; any other failure is retried up to backoffLimit times.
- every retry writes to the same /data/runs/<runId>/<model> on the PVC, so `sqlmaster train` resumes from the
  last checkpoint there.
- nodes > 1: an Indexed Job (one pod per node, index = torchrun node rank) whose pods find pod 0 through the
  headless Service named like the Job (spec.subdomain).
*/}}
{{- define "sqlmaster-lib.jobs" -}}
{{- $task := include "sqlmaster-lib.task" . -}}
{{- range $run := .Values.runs }}
{{- $ctx := dict "root" $ "run" $run }}
{{- $name := include "sqlmaster-lib.jobName" $ctx }}
{{- $nodes := int (default 1 $run.nodes) }}
{{- $gpus := int $run.gpus }}
{{- $res := default $.Values.resources $run.resources }}
{{- $gpuQty := dict "nvidia.com/gpu" $gpus }}
{{- $requests := merge (dict) $gpuQty (omit (default (dict) $res.requests) "nvidia.com/gpu") }}
{{- $limits := merge (dict) $gpuQty (omit (default (dict) $res.limits) "nvidia.com/gpu") }}
{{- $required := default (list) $.Values.secrets.required }}
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
      - action: Ignore
        onPodConditions:
          - type: DisruptionTarget
  template:
    metadata:
      labels:
        {{- include "sqlmaster-lib.runLabels" $ctx | nindent 8 }}
      annotations:
        checksum/recipe: {{ toYaml (default (dict) $run.recipe) | sha256sum }}
    spec:
      restartPolicy: Never
      {{- if gt $nodes 1 }}
      subdomain: {{ $name }}
      {{- end }}
      automountServiceAccountToken: false
      {{- with $.Values.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      {{- with $.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      {{- with $.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ int $.Values.podSecurityContext.runAsUser }}
        runAsGroup: {{ int $.Values.podSecurityContext.runAsGroup }}
        fsGroup: {{ int $.Values.podSecurityContext.fsGroup }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: sqlmaster
          image: {{ printf "%s:%s" $.Values.image.repository (toString $.Values.image.tag) | quote }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          command: {{ include "sqlmaster-lib.command" $ctx }}
          env:
            - name: HF_HOME
              value: {{ printf "%s/hf-cache" (include "sqlmaster-lib.dataDir" $) | quote }}
            - name: PYTHONUNBUFFERED
              value: "1"
            - name: SQLMASTER_RUN_ID
              value: {{ include "sqlmaster-lib.runId" $ | quote }}
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
            {{- range $key := $.Values.secrets.keys }}
            - name: {{ $key }}
              valueFrom:
                secretKeyRef:
                  name: {{ $.Values.secrets.name }}
                  key: {{ $key }}
                  optional: {{ not (has $key $required) }}
            {{- end }}
            {{- with concat (default (list) $.Values.env) (default (list) $run.env) }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            requests:
              {{- toYaml $requests | nindent 14 }}
            limits:
              {{- toYaml $limits | nindent 14 }}
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
              mountPath: {{ include "sqlmaster-lib.dataDir" $ }}
            - name: shm
              mountPath: /dev/shm
            - name: recipe
              mountPath: /etc/sqlmaster
              readOnly: true
      volumes:
        - name: data
          persistentVolumeClaim:
            claimName: {{ include "sqlmaster-lib.claimName" $ }}
        # PyTorch DataLoader workers and NCCL exchange tensors through /dev/shm; the container default is 64 MiB.
        - name: shm
          emptyDir:
            medium: Memory
            sizeLimit: {{ $.Values.shm.sizeLimit }}
        - name: recipe
          configMap:
            name: {{ $name }}
            items:
              - key: recipe.yaml
                path: recipe.yaml
{{- end }}
{{- end -}}
