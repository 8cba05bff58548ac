{{- define "fink.name" -}}fink-operator{{- end -}}

{{- define "fink.fullname" -}}
{{- if contains "fink-operator" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-fink-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "fink.labels" -}}
app.kubernetes.io/name: fink-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fink.selector" -}}
app.kubernetes.io/name: fink-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fink.image" -}}
{{ .repository }}:{{ .tag | default $.appVersion }}
{{- end -}}

{{- define "fink.operatorImage" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fink.pipelineImage" -}}
{{ .Values.pipelineImage.repository }}:{{ .Values.pipelineImage.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "fink.connectionsSecret" -}}
{{- .Values.connections.existingSecret | default (printf "%s-connections" (include "fink.fullname" .)) -}}
{{- end -}}

{{/* Rules the operator needs in every namespace it watches; operator/fink_operator is the
     source, docs/deployment.md lists which code needs which rule. */}}
{{- define "fink.namespacedRules" -}}
- apiGroups: ["fink.broker.dev"]
  resources: [brokerpipelines]
  verbs: [get, list, watch, patch]
- apiGroups: ["fink.broker.dev"]
  resources: [brokerpipelines/status]
  verbs: [get, patch]
# ScienceFilters: validated, handed to their pipelines, their Live status written; kopf
# puts a finalizer on them (their status timer) and annotates what it handled
- apiGroups: ["fink.broker.dev"]
  resources: [sciencefilters]
  verbs: [get, list, watch, patch]
- apiGroups: ["fink.broker.dev"]
  resources: [sciencefilters/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.rbac.secretNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
# the job's objects; pods, services, config maps and claims with every verb because the
# operator grants exactly these to each driver's Role (Kubernetes lets no one grant more
# than it holds)
- apiGroups: [""]
  resources: [pods, services, configmaps, persistentvolumeclaims]
  verbs: [create, get, list, watch, update, patch, delete, deletecollection]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [create, get, patch]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: [roles, rolebindings]
  verbs: [create, get, patch]
{{- end -}}
