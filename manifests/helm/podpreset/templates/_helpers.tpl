{{/* Names: the release's name is their prefix (podpreset: the kustomize install's names). */}}
{{- define "podpreset.webhook" -}}{{ .Release.Name }}-webhook{{- end -}}
{{- define "podpreset.service" -}}{{ .Release.Name }}-webhook-service{{- end -}}
{{- define "podpreset.certSecret" -}}{{ .Release.Name }}-webhook-certs{{- end -}}
{{- define "podpreset.tlsSecret" -}}{{ .Release.Name }}-webhook-tls{{- end -}}
{{- define "podpreset.sources" -}}{{ .Release.Name }}-sources{{- end -}}

{{/* Labels on every object: the kustomize install's, and Helm's. */}}
{{- define "podpreset.labels" -}}
app.kubernetes.io/part-of: podpreset
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The image: a digest pins it; else the tag, else the chart's appVersion. */}}
{{- define "podpreset.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* What every podpreset container shares: security context, probes. */}}
{{- define "podpreset.containerSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}
{{- define "podpreset.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: health
  periodSeconds: 5
  timeoutSeconds: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: health
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
{{- end -}}
{{- define "podpreset.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  seccompProfile:
    type: RuntimeDefault
{{- end -}}
{{- define "podpreset.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
