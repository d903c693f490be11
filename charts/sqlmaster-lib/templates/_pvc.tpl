{{/*
The PVC for HF cache, checkpoints and outputs, created only when storage.existingClaim is empty and
storage.create is true. helm.sh/resource-policy keep: `helm uninstall` must not delete trained adapters and
checkpoints; delete the claim yourself when the runs on it are no longer needed.
*/}}
{{- define "sqlmaster-lib.pvc" -}}
{{- if and (not .Values.storage.existingClaim) .Values.storage.create }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "sqlmaster-lib.claimName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "sqlmaster-lib.labels" . | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
spec:
  accessModes:
    {{- toYaml .Values.storage.accessModes | nindent 4 }}
  {{- with .Values.storage.storageClassName }}
  storageClassName: {{ . | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ .Values.storage.size }}
{{- end }}
{{- end -}}
