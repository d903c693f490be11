{{/*
A headless Service per multi-node run (nodes > 1), named like its Job: the Indexed Job's pods set
spec.subdomain to it, so pod 0 resolves as <job>-0.<job> and serves as torchrun's master address.
publishNotReadyAddresses: the pods have no readiness probe and must resolve each other while starting.
*/}}
{{- define "sqlmaster-lib.services" -}}
{{- range $run := .Values.runs }}
{{- if gt (int (default 1 $run.nodes)) 1 }}
{{- $ctx := dict "root" $ "run" $run }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sqlmaster-lib.jobName" $ctx }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "sqlmaster-lib.runLabels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "sqlmaster-lib.runSelectorLabels" $ctx | nindent 4 }}
  ports:
    - name: rendezvous
      port: {{ int $.Values.distributed.masterPort }}
      targetPort: {{ int $.Values.distributed.masterPort }}
      protocol: TCP
{{- end }}
{{- end }}
{{- end -}}
