{{/*
cluster-proxy.name is the chart's name, used in labels.
*/}}
{{- define "cluster-proxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
cluster-proxy.chart is <name>-<version>, the helm.sh/chart label.
*/}}
{{- define "cluster-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
cluster-proxy.labels are the labels of every object the chart creates. They
never include app.kubernetes.io/managed-by=cluster-proxy-addon-manager, the
label of the objects the addon-manager writes itself.
*/}}
{{- define "cluster-proxy.labels" -}}
helm.sh/chart: {{ include "cluster-proxy.chart" . }}
app.kubernetes.io/name: {{ include "cluster-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/*
cluster-proxy.tag is the tag of every cluster-proxy image: .Values.tag, or
"v" + the chart's appVersion (a leading "v" is not doubled).
*/}}
{{- define "cluster-proxy.tag" -}}
{{- .Values.tag | default (printf "v%s" (trimPrefix "v" .Chart.AppVersion)) -}}
{{- end -}}

{{/*
cluster-proxy.imageRef joins a repository (.repository) and the chart's tag
(.root is the top context): repository:tag, or repository@sha256:... when the
tag is a digest.
*/}}
{{- define "cluster-proxy.imageRef" -}}
{{- $tag := include "cluster-proxy.tag" .root -}}
{{- if hasPrefix "sha256:" $tag -}}
{{- printf "%s@%s" .repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy.image is the main cluster-proxy image: <registry>/<image>:<tag>
(the addon-manager, and the addon-agent on managed clusters).
*/}}
{{- define "cluster-proxy.image" -}}
{{- $registry := .Values.registry | trimSuffix "/" -}}
{{- $repository := ternary (printf "%s/%s" $registry .Values.image) .Values.image (ne $registry "") -}}
{{- include "cluster-proxy.imageRef" (dict "root" . "repository" $repository) -}}
{{- end -}}

{{/*
cluster-proxy.proxyServerImage is the hub proxy-server image:
<proxyServerImage>:<tag>.
*/}}
{{- define "cluster-proxy.proxyServerImage" -}}
{{- include "cluster-proxy.imageRef" (dict "root" . "repository" .Values.proxyServerImage) -}}
{{- end -}}

{{/*
cluster-proxy.proxyAgentImage is the proxy-agent image on managed clusters:
<proxyAgentImage>:<tag>.
*/}}
{{- define "cluster-proxy.proxyAgentImage" -}}
{{- include "cluster-proxy.imageRef" (dict "root" . "repository" .Values.proxyAgentImage) -}}
{{- end -}}

{{/*
cluster-proxy.managerServiceAccountName is the addon-manager's
ServiceAccount. It is not "cluster-proxy": the addon-manager itself applies a
ServiceAccount of that name (for the proxy-servers, owned by the
ManagedProxyConfiguration) into the same namespace.
*/}}
{{- define "cluster-proxy.managerServiceAccountName" -}}
cluster-proxy-addon-manager
{{- end -}}

{{/*
cluster-proxy.placementName is the Placement the addon is installed by.
*/}}
{{- define "cluster-proxy.placementName" -}}
{{- .Values.installByPlacement.placementName | default "cluster-proxy-placement" -}}
{{- end -}}

{{/*
cluster-proxy.placementNamespace is the namespace of that Placement.
*/}}
{{- define "cluster-proxy.placementNamespace" -}}
{{- .Values.installByPlacement.placementNamespace | default .Release.Namespace -}}
{{- end -}}

{{/*
cluster-proxy.entrypoint is the default ManagedProxyConfiguration's
spec.proxyServer.entrypoint: entrypointAddress set gives Hostname; else
entrypointLoadBalancer gives LoadBalancerService; else PortForward.
*/}}
{{- define "cluster-proxy.entrypoint" -}}
{{- if .Values.proxyServer.entrypointAddress -}}
type: Hostname
hostname:
  value: {{ .Values.proxyServer.entrypointAddress | quote }}
{{- else if .Values.proxyServer.entrypointLoadBalancer -}}
type: LoadBalancerService
loadBalancerService:
  name: proxy-agent-entrypoint
{{- else -}}
type: PortForward
{{- end }}
port: {{ .Values.proxyServer.port }}
{{- end -}}

{{/*
cluster-proxy.podSecurityContext is the hardened pod security context of the
hub pods (the image runs as the non-root uid 65532).
*/}}
{{- define "cluster-proxy.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
cluster-proxy.containerSecurityContext is the hardened container security
context of the hub containers.
*/}}
{{- define "cluster-proxy.containerSecurityContext" -}}
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
{{- end -}}

{{/*
cluster-proxy.nodePlacement is the nodeSelector and tolerations of a hub pod
spec, from .Values.nodeSelector and .Values.tolerations.
*/}}
{{- define "cluster-proxy.nodePlacement" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
cluster-proxy.userName is the name of Deployment cluster-proxy-addon-user
(container controllers, with enableServiceProxy) and of its ServiceAccount.
*/}}
{{- define "cluster-proxy.userName" -}}
cluster-proxy-addon-user
{{- end -}}

{{/*
cluster-proxy.validate fails the render on values the schema cannot express,
each message naming the value and what to do.
*/}}
{{- define "cluster-proxy.validate" -}}
{{- if and .Values.userServer.enabled (not .Values.enableServiceProxy) -}}
{{- fail "userServer.enabled needs enableServiceProxy=true: the user-server reaches every managed cluster through its service-proxy" -}}
{{- end -}}
{{- if and (not .Values.userServer.enabled) .Values.userServer.additionalSANs -}}
{{- fail "userServer.additionalSANs: only the user-server's serving certificate uses it; set userServer.enabled=true too, or leave it empty" -}}
{{- end -}}
{{- if and (not .Values.userServer.enabled) .Values.exposedServices -}}
{{- fail "exposedServices: only the user-server reads it; set userServer.enabled=true too, or leave it empty" -}}
{{- end -}}
{{- if and .Values.featureGates.clusterProfile (not .Values.userServer.enabled) -}}
{{- fail "featureGates.clusterProfile: the access provider it publishes in ClusterProfiles is the user-server's URL; set userServer.enabled=true too, or leave it false" -}}
{{- end -}}
{{- if and .Values.installByPlacement.placementNamespace (not .Values.installByPlacement.placementName) -}}
{{- fail "installByPlacement.placementNamespace is set without installByPlacement.placementName: name the Placement too, or unset the namespace" -}}
{{- end -}}
{{- end -}}
