{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "keyrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name of every object; the release name alone when it already contains the chart name. */}}
{{- define "keyrelay.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The webhook's objects: "<fullname>-webhook" (Deployment, Service, PDB). */}}
{{- define "keyrelay.webhookName" -}}
{{- printf "%s-webhook" (include "keyrelay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Secret holding the webhook's serving certificate (generated or cert-manager's). */}}
{{- define "keyrelay.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "keyrelay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels on every object. */}}
{{- define "keyrelay.labels" -}}
helm.sh/chart: {{ include "keyrelay.chart" . }}
{{ include "keyrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keyrelay
{{- end }}

{{/* Labels the webhook's Service and PDB select on; never change between upgrades. */}}
{{- define "keyrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "keyrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyrelay.webhookName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The webhook's image. No image is published, so an unset repository fails the render
instead of installing pods that end in ImagePullBackOff. */}}
{{- define "keyrelay.repository" -}}
{{- required "image.repository is not set: keyrelay publishes no image. Build it (./scripts/build-image, see the README section \"Building the image\"), push it to a registry your cluster can pull from, and install with --set image.repository=REGISTRY/keyrelay" .Values.image.repository }}
{{- end }}

{{- define "keyrelay.image" -}}
{{- printf "%s:%s" (include "keyrelay.repository" .) (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The injected sidecar's image: its own values, else the webhook's image. */}}
{{- define "keyrelay.sidecarImage" -}}
{{- $repository := .Values.sidecar.image.repository | default (include "keyrelay.repository" .) }}
{{- $tag := .Values.sidecar.image.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/* DNS names the API server uses to reach the webhook Service. */}}
{{- define "keyrelay.webhookDnsNames" -}}
{{- $svc := include "keyrelay.webhookName" . }}
{{- $ns := .Release.Namespace }}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* The restricted securityContext (Pod Security Standard "restricted"), uid 65532. */}}
{{- define "keyrelay.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}
