{{/* Names, labels and the addresses components give each other. */}}

{{- define "juggler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix of every object name: at most 46 characters, so
     "<fullname>-master-<ordinal>" and the other names stay within 63. */}}
{{- define "juggler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 46 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 46 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "juggler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "master"). */}}
{{- define "juggler.labels" -}}
helm.sh/chart: {{ include "juggler.chart" .ctx }}
{{ include "juggler.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: juggler
{{- end -}}

{{- define "juggler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "juggler.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "juggler.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "juggler.masterName" -}}
{{- printf "%s-master" (include "juggler.fullname" .) -}}
{{- end -}}

{{- define "juggler.etcdName" -}}
{{- printf "%s-etcd" (include "juggler.fullname" .) -}}
{{- end -}}

{{/* host:port of every master, comma-separated: the agents' and the apps
     service's --master (they find the leader among them). */}}
{{- define "juggler.masters" -}}
{{- $name := include "juggler.masterName" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.masters.replicas) -}}
{{- $addrs = append $addrs (printf "%s-%d.%s.%s.svc.%s:%d" $name $i $name $.Release.Namespace $.Values.clusterDomain (int $.Values.masters.port)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{/* etcd endpoints, comma-separated: the bundled members or the external ones. */}}
{{- define "juggler.etcdEndpoints" -}}
{{- if .Values.etcd.bundled.enabled -}}
{{- $name := include "juggler.etcdName" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.etcd.bundled.replicas) -}}
{{- $urls = append $urls (printf "http://%s-%d.%s.%s.svc.%s:2379" $name $i $name $.Release.Namespace $.Values.clusterDomain) -}}
{{- end -}}
{{- join "," $urls -}}
{{- else -}}
{{- if not .Values.etcd.external.endpoints -}}
{{- fail "etcd: set etcd.external.endpoints, or etcd.bundled.enabled=true" -}}
{{- end -}}
{{- join "," .Values.etcd.external.endpoints -}}
{{- end -}}
{{- end -}}

{{- define "juggler.etcdPrefix" -}}
{{- default (printf "/juggler/%s/" .Release.Name) .Values.etcd.prefix -}}
{{- end -}}

{{/* The --etcd flags shared by masters and the apps service. */}}
{{- define "juggler.etcdArgs" -}}
- --etcd={{ include "juggler.etcdEndpoints" . }}
- --etcd-prefix={{ include "juggler.etcdPrefix" . }}
{{- if and (not .Values.etcd.bundled.enabled) .Values.etcd.external.tls.secretName }}
- --etcd-ca=/etc/juggler/etcd/{{ .Values.etcd.external.tls.ca }}
- --etcd-cert=/etc/juggler/etcd/{{ .Values.etcd.external.tls.cert }}
- --etcd-key=/etc/juggler/etcd/{{ .Values.etcd.external.tls.key }}
{{- end }}
{{- end -}}

{{- define "juggler.etcdTlsEnabled" -}}
{{- if and (not .Values.etcd.bundled.enabled) .Values.etcd.external.tls.secretName -}}true{{- end -}}
{{- end -}}
