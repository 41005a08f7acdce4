{{/* Names: <release>-<chart> unless the release already contains the chart name. */}}
{{- define "inference-ab.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "inference-ab.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "server" "arm" "stable"). */}}
{{- define "inference-ab.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- if .arm }}
inference-ab/arm: {{ .arm }}
{{- end }}
{{- end -}}

{{/* The headless Service (and Envoy cluster host) of an arm. */}}
{{- define "inference-ab.armService" -}}
{{- printf "%s-%s" (include "inference-ab.fullname" .root) .arm -}}
{{- end -}}

{{/*
terminationGracePeriodSeconds of a server pod: the preStop sleep, then the
server's own drain and shutdown grace (server/app.ts), plus a margin, so the
kubelet never SIGKILLs a server that is still finishing calls.
*/}}
{{- define "inference-ab.serverGraceSeconds" -}}
{{- $s := .Values.shutdown -}}
{{- add (int $s.preStopSleepSeconds) (div (int $s.drainMs) 1000) (div (int $s.shutdownGraceMs) 1000) (int $s.marginSeconds) -}}
{{- end -}}

{{/* Topology spread across nodes and zones for one component's pods. */}}
{{- define "inference-ab.topologySpread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .root.Values.topologySpread.nodes }}
    labelSelector:
      matchLabels:
        {{- include "inference-ab.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .root.Values.topologySpread.zones }}
    labelSelector:
      matchLabels:
        {{- include "inference-ab.selectorLabels" . | nindent 8 }}
{{- end -}}

{{- define "inference-ab.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}
