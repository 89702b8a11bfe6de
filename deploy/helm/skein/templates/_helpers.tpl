{{/* Names and labels shared by every template. */}}

{{- define "skein.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "skein.labels" -}}
helm.sh/chart: {{ include "skein.chart" . }}
app.kubernetes.io/name: skein
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: skein
{{- end }}

{{- define "skein.agent.selector" -}}
app.kubernetes.io/name: skein
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end }}

{{- define "skein.ca.selector" -}}
app.kubernetes.io/name: skein
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: ca
{{- end }}

{{- define "skein.agent.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "skein.ca.image" -}}
{{ .Values.ca.image.repository }}:{{ .Values.ca.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The pod cgroup root inside the agent container (the host's cgroup2 mount is /host/cgroup2). */}}
{{- define "skein.agent.cgroupRoot" -}}
{{- if .Values.agent.cgroupRoot -}}
{{ .Values.agent.cgroupRoot }}
{{- else if eq .Values.agent.cgroupDriver "systemd" -}}
/host/cgroup2/kubepods.slice
{{- else if eq .Values.agent.cgroupDriver "cgroupfs" -}}
/host/cgroup2/kubepods
{{- else -}}
{{ fail (printf "agent.cgroupDriver %q: want systemd or cgroupfs" .Values.agent.cgroupDriver) }}
{{- end -}}
{{- end }}

{{- define "skein.caAddress" -}}
skein-ca.{{ .Release.Namespace }}.svc:{{ .Values.ca.port }}
{{- end }}

{{- define "skein.mode" -}}
{{- $m := upper .Values.mode -}}
{{- if not (has $m (list "PERMISSIVE" "STRICT")) -}}
{{ fail (printf "mode %q: want PERMISSIVE or STRICT" .Values.mode) }}
{{- end -}}
{{ $m }}
{{- end }}
