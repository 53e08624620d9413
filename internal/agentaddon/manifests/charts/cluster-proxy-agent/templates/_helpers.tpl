{{/*
Named templates of the cluster-proxy-agent chart.

Values that are optional, or that an addon-framework mapper may set to null
(which removes the key), are read with index/dig rather than .Values.x so the
chart also renders with the Helm engine in strict mode.
*/}}

{{/*
cluster-proxy-agent.namespace: the install namespace (addon-framework
built-in addonInstallNamespace).
*/}}
{{- define "cluster-proxy-agent.namespace" -}}
{{- required "addonInstallNamespace is required (addon-framework built-in)" (index .Values "addonInstallNamespace") -}}
{{- end -}}

{{/*
cluster-proxy-agent.clusterName: the managed cluster's name (addon-framework
built-in clusterName).
*/}}
{{- define "cluster-proxy-agent.clusterName" -}}
{{- required "clusterName is required (addon-framework built-in)" (index .Values "clusterName") -}}
{{- end -}}

{{/*
cluster-proxy-agent.isTrue: "true" when the value (the template's context) is
boolean true or a string equal to "true" in any case, else "false".
AddOnDeploymentConfig customizedVariables are always strings, so a plain
`if` would take "false" for true.
*/}}
{{- define "cluster-proxy-agent.isTrue" -}}
{{- if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if kindIs "string" . -}}
{{- ternary "true" "false" (eq (lower (trim .)) "true") -}}
{{- else -}}
false
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.kubeApiProxyEnabled: "true" when enableKubeApiProxy is on.
*/}}
{{- define "cluster-proxy-agent.kubeApiProxyEnabled" -}}
{{- include "cluster-proxy-agent.isTrue" (index .Values "enableKubeApiProxy") -}}
{{- end -}}

{{/*
cluster-proxy-agent.serviceProxyEnabled: "true" when enableServiceProxy is on.
*/}}
{{- define "cluster-proxy-agent.serviceProxyEnabled" -}}
{{- include "cluster-proxy-agent.isTrue" (index .Values "enableServiceProxy") -}}
{{- end -}}

{{/*
cluster-proxy-agent.impersonationEnabled: "true" when the service-proxy runs
and impersonates: enableImpersonation is on, or OIDC is configured (OIDC
users are always forwarded impersonated).
*/}}
{{- define "cluster-proxy-agent.impersonationEnabled" -}}
{{- if eq (include "cluster-proxy-agent.serviceProxyEnabled" .) "true" -}}
{{- if or (eq (include "cluster-proxy-agent.isTrue" (index .Values "enableImpersonation")) "true") (include "cluster-proxy-agent.oidcIssuer" .) -}}
true
{{- else -}}
false
{{- end -}}
{{- else -}}
false
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.oidcIssuer: the OIDC issuer URL the service-proxy
accepts, from oidcIssuerURL or an --oidc-issuer-url in
additionalServiceProxyArgs; empty when OIDC is off.
*/}}
{{- define "cluster-proxy-agent.oidcIssuer" -}}
{{- $issuer := index .Values "oidcIssuerURL" | default "" | toString | trim -}}
{{- if not $issuer -}}
{{- range $arg := include "cluster-proxy-agent.argList" (index .Values "additionalServiceProxyArgs") | fromYamlArray -}}
{{- if hasPrefix "--oidc-issuer-url=" (toString $arg) -}}
{{- $issuer = trimPrefix "--oidc-issuer-url=" (toString $arg) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $issuer -}}
{{- end -}}

{{/*
cluster-proxy-agent.oidcArgs: YAML list items of the service-proxy's OIDC
flags from the oidc* values; nothing when oidcIssuerURL is empty. Fails the
render, naming the value, when the issuer and client ID are not set
together, when additionalServiceProxyArgs also sets --oidc-issuer-url, or
when oidcRequiredClaimsJSON is not a JSON object of strings.
*/}}
{{- define "cluster-proxy-agent.oidcArgs" -}}
{{- $v := .Values -}}
{{- $str := dict -}}
{{- range $k := list "oidcIssuerURL" "oidcClientID" "oidcUsernameClaim" "oidcUsernamePrefix" "oidcGroupsClaim" "oidcGroupsPrefix" "oidcSigningAlgs" "oidcCAConfigMap" "oidcRequiredClaimsJSON" -}}
{{- $_ := set $str $k (index $v $k | default "" | toString | trim) -}}
{{- end -}}
{{- if and $str.oidcIssuerURL (not $str.oidcClientID) -}}
{{- fail "oidcClientID: required when oidcIssuerURL is set (the audience the ID tokens must be issued for)" -}}
{{- end -}}
{{- if and $str.oidcClientID (not $str.oidcIssuerURL) -}}
{{- fail "oidcIssuerURL: required when oidcClientID is set" -}}
{{- end -}}
{{- if $str.oidcIssuerURL -}}
{{- range $arg := include "cluster-proxy-agent.argList" (index $v "additionalServiceProxyArgs") | fromYamlArray -}}
{{- if hasPrefix "--oidc-issuer-url" (toString $arg) -}}
{{- fail (printf "additionalServiceProxyArgs: %q conflicts with oidcIssuerURL; set the issuer in one place" (toString $arg)) -}}
{{- end -}}
{{- end -}}
{{- $args := list (printf "--oidc-issuer-url=%s" $str.oidcIssuerURL) (printf "--oidc-client-id=%s" $str.oidcClientID) -}}
{{- range $pair := list (list "oidcUsernameClaim" "--oidc-username-claim") (list "oidcUsernamePrefix" "--oidc-username-prefix") (list "oidcGroupsClaim" "--oidc-groups-claim") (list "oidcGroupsPrefix" "--oidc-groups-prefix") (list "oidcSigningAlgs" "--oidc-signing-algs") (list "oidcCAConfigMap" "--oidc-ca-configmap") -}}
{{- with index $str (index $pair 0) -}}
{{- $args = append $args (printf "%s=%s" (index $pair 1) .) -}}
{{- end -}}
{{- end -}}
{{- $reserved := index $v "oidcReservedNamePrefixes" -}}
{{- if kindIs "slice" $reserved -}}
{{- $reserved = join "," $reserved -}}
{{- else if kindIs "invalid" $reserved -}}
{{- $reserved = "system:" -}}
{{- end -}}
{{- $args = append $args (printf "--oidc-reserved-name-prefixes=%s" (toString $reserved | trim)) -}}
{{- with $str.oidcRequiredClaimsJSON -}}
{{- $claims := . | fromJson -}}
{{- if or (hasKey $claims "Error") (not (hasPrefix "{" .)) -}}
{{- fail (printf "oidcRequiredClaimsJSON: %q is not a JSON object of claim names to string values" .) -}}
{{- end -}}
{{- range $name := keys $claims | sortAlpha -}}
{{- $value := index $claims $name -}}
{{- if not (kindIs "string" $value) -}}
{{- fail (printf "oidcRequiredClaimsJSON: claim %q must have a string value, not %v" $name $value) -}}
{{- end -}}
{{- $args = append $args (printf "--oidc-required-claim=%s=%s" $name $value) -}}
{{- end -}}
{{- end -}}
{{- include "cluster-proxy-agent.argList" $args -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.validateServiceProxyArgs fails the render when
additionalServiceProxyArgs sets a flag the chart owns.
*/}}
{{- define "cluster-proxy-agent.validateServiceProxyArgs" -}}
{{- range $arg := include "cluster-proxy-agent.argList" (index .Values "additionalServiceProxyArgs") | fromYamlArray -}}
{{- range $owned := list "--enable-impersonation" "--cert" "--key" "--client-ca" "--hub-kubeconfig" -}}
{{- if or (eq (toString $arg) $owned) (hasPrefix (printf "%s=" $owned) (toString $arg)) -}}
{{- fail (printf "additionalServiceProxyArgs: %q is set by the chart (use the enableImpersonation value for impersonation)" (toString $arg)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.networkPoliciesEnabled: "true" when networkPolicies.enabled
is on.
*/}}
{{- define "cluster-proxy-agent.networkPoliciesEnabled" -}}
{{- include "cluster-proxy-agent.isTrue" (dig "networkPolicies" "enabled" false .Values.AsMap) -}}
{{- end -}}

{{/*
cluster-proxy-agent.labels: labels of every object of the chart.
*/}}
{{- define "cluster-proxy-agent.labels" -}}
open-cluster-management.io/addon: cluster-proxy
{{- end -}}

{{/*
cluster-proxy-agent.selectorLabels: labels selecting the agent pods.
*/}}
{{- define "cluster-proxy-agent.selectorLabels" -}}
open-cluster-management.io/addon: cluster-proxy
proxy.open-cluster-management.io/component-name: proxy-agent
{{- end -}}

{{/*
cluster-proxy-agent.agentImage: image of the addon-agent and service-proxy
containers: global.imageOverrides.agentImage, else
<registry>/<image>:<tag> (<registry>/<image>@<digest> for a tag starting
with "@").
*/}}
{{- define "cluster-proxy-agent.agentImage" -}}
{{- $override := dig "global" "imageOverrides" "agentImage" "" .Values.AsMap | toString -}}
{{- if $override -}}
{{- $override -}}
{{- else -}}
{{- $repo := required "image is required" (index .Values "image") | toString -}}
{{- $registry := index .Values "registry" | default "" | toString | trimSuffix "/" -}}
{{- if $registry -}}
{{- $repo = printf "%s/%s" $registry $repo -}}
{{- end -}}
{{- $tag := index .Values "tag" | default "" | toString -}}
{{- if not $tag -}}
{{- $repo -}}
{{- else if hasPrefix "@" $tag -}}
{{- printf "%s%s" $repo $tag -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.proxyAgentImage: image of the proxy-agent container:
global.imageOverrides.proxyAgentImage, else proxyAgentImage, else the agent
image.
*/}}
{{- define "cluster-proxy-agent.proxyAgentImage" -}}
{{- $override := dig "global" "imageOverrides" "proxyAgentImage" "" .Values.AsMap | toString -}}
{{- $image := index .Values "proxyAgentImage" | default "" | toString -}}
{{- if $override -}}
{{- $override -}}
{{- else if $image -}}
{{- $image -}}
{{- else -}}
{{- include "cluster-proxy-agent.agentImage" . -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.serviceProxyHost: host name of this cluster's
service-proxy: serviceProxyHost, else
cluster-<first 48 hex digits of sha256(clusterName)>.open-cluster-management.proxy.
*/}}
{{- define "cluster-proxy-agent.serviceProxyHost" -}}
{{- $host := index .Values "serviceProxyHost" | default "" | toString -}}
{{- if $host -}}
{{- $host -}}
{{- else -}}
{{- printf "cluster-%s.open-cluster-management.proxy" (sha256sum (include "cluster-proxy-agent.clusterName" .) | trunc 48) -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.agentIdentifiers: the proxy-agent's --agent-identifiers:
agentIdentifiers, else host=<cluster>&host=<cluster>.<namespace> (with the
kube-apiserver proxy) followed by host=<service-proxy host>.
*/}}
{{- define "cluster-proxy-agent.agentIdentifiers" -}}
{{- $ids := index .Values "agentIdentifiers" | default "" | toString -}}
{{- if $ids -}}
{{- $ids -}}
{{- else -}}
{{- $list := list -}}
{{- if eq (include "cluster-proxy-agent.kubeApiProxyEnabled" .) "true" -}}
{{- $cluster := include "cluster-proxy-agent.clusterName" . -}}
{{- $list = append $list (printf "host=%s" $cluster) -}}
{{- $list = append $list (printf "host=%s.%s" $cluster (include "cluster-proxy-agent.namespace" .)) -}}
{{- end -}}
{{- $list = append $list (printf "host=%s" (include "cluster-proxy-agent.serviceProxyHost" .)) -}}
{{- join "&" $list -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.proxyConfig: JSON object of the proxy-agent's HTTP proxy
settings (keys HTTP_PROXY, HTTPS_PROXY, NO_PROXY, PROXY_CA_BUNDLE) from
global.proxyConfig (ToAddOnProxyConfigValues) overlaid with HTTPProxy,
HTTPSProxy, NoProxy and ProxyCABundle (ToAddOnDeploymentConfigValues).
*/}}
{{- define "cluster-proxy-agent.proxyConfig" -}}
{{- $out := dict -}}
{{- $global := dig "global" "proxyConfig" nil .Values.AsMap -}}
{{- if kindIs "map" $global -}}
{{- $global = $global | toJson | fromJson -}}
{{- range $key := list "HTTP_PROXY" "HTTPS_PROXY" "NO_PROXY" "PROXY_CA_BUNDLE" -}}
{{- with index $global $key -}}
{{- $_ := set $out $key (toString .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $from, $to := dict "HTTPProxy" "HTTP_PROXY" "HTTPSProxy" "HTTPS_PROXY" "NoProxy" "NO_PROXY" "ProxyCABundle" "PROXY_CA_BUNDLE" -}}
{{- with index $.Values $from -}}
{{- $_ := set $out $to (toString .) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
cluster-proxy-agent.caData: base64 of the CA bundle the proxy-agent trusts:
base64EncodedCAData, with the HTTPS proxy's CA bundle appended when the
HTTPS proxy is an https:// URL and the bundle is not already in it.
*/}}
{{- define "cluster-proxy-agent.caData" -}}
{{- $data := required "base64EncodedCAData is required" (index .Values "base64EncodedCAData") | toString -}}
{{- $proxy := include "cluster-proxy-agent.proxyConfig" . | fromJson -}}
{{- $bundle := index $proxy "PROXY_CA_BUNDLE" | default "" | trim -}}
{{- $https := index $proxy "HTTPS_PROXY" | default "" | lower -}}
{{- if and $bundle (hasPrefix "https://" $https) -}}
{{- $ca := b64dec $data -}}
{{- if contains $bundle $ca -}}
{{- $data -}}
{{- else -}}
{{- printf "%s\n%s\n" (trimSuffix "\n" $ca) $bundle | b64enc -}}
{{- end -}}
{{- else -}}
{{- $data -}}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.nodeSelector: JSON object of the agent pod's node
selector: nodeSelector, global.nodeSelector (ToAddOnNodePlacementValues) and
NodeSelector (ToAddOnDeploymentConfigValues) merged, later winning per key.
*/}}
{{- define "cluster-proxy-agent.nodeSelector" -}}
{{- $out := dict -}}
{{- range $src := list (index .Values "nodeSelector") (dig "global" "nodeSelector" nil .Values.AsMap) (index .Values "NodeSelector") -}}
{{- if kindIs "map" $src -}}
{{- $out = mergeOverwrite $out ($src | toJson | fromJson) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
cluster-proxy-agent.tolerations: JSON list of the agent pod's tolerations:
Tolerations (ToAddOnDeploymentConfigValues) when it is a non-empty list, else
tolerations (values.yaml's infra-taint defaults, which an
AddOnDeploymentConfig's nodePlacement replaces through
ToAddOnNodePlacementValues). A list given replaces the defaults, as in the
existing addon, so a user can drop the infra tolerations.
*/}}
{{- define "cluster-proxy-agent.tolerations" -}}
{{- $out := list -}}
{{- $fromConfig := index .Values "Tolerations" -}}
{{- $fromValues := index .Values "tolerations" -}}
{{- if and (kindIs "slice" $fromConfig) $fromConfig -}}
{{- $out = $fromConfig -}}
{{- else if kindIs "slice" $fromValues -}}
{{- $out = $fromValues -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
cluster-proxy-agent.resources: the `resources:` block of one agent container,
called with (dict "root" $ "container" "<name>"). Rules come from
global.resourceRequirements (ToAddOnResourceRequirementsValues) then
ResourceRequirements (ToAddOnDeploymentConfigValues); the last rule whose
containerIDRegex matches deployments:cluster-proxy-proxy-agent:<name> wins.
Renders nothing when no rule matches.
*/}}
{{- define "cluster-proxy-agent.resources" -}}
{{- $id := printf "deployments:cluster-proxy-proxy-agent:%s" .container -}}
{{- $rules := list -}}
{{- range $src := list (dig "global" "resourceRequirements" nil .root.Values.AsMap) (index .root.Values "ResourceRequirements") -}}
{{- if kindIs "slice" $src -}}
{{- $rules = concat $rules ($src | toJson | fromJsonArray) -}}
{{- end -}}
{{- end -}}
{{- $match := dict -}}
{{- range $rule := $rules -}}
{{- if and (kindIs "map" $rule) (index $rule "containerIDRegex") -}}
{{- if mustRegexMatch (index $rule "containerIDRegex" | default "" | toString) $id -}}
{{- $match = index $rule "resources" | default dict -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- with $match -}}
resources:
{{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.argList: YAML list items ("- <quoted arg>", one per line)
of an argument-list value (the template's context): each element of a list,
or a non-empty string as a single argument (customizedVariables are strings).
Renders nothing for anything else.
*/}}
{{- define "cluster-proxy-agent.argList" -}}
{{- if kindIs "slice" . -}}
{{- range . }}
{{ printf "- %s" (toString . | quote) }}
{{- end -}}
{{- else if and (kindIs "string" .) . -}}
{{ printf "- %s" (quote .) }}
{{- end -}}
{{- end -}}

{{/*
cluster-proxy-agent.containerSecurityContext: the hardened security context
of every agent container.
*/}}
{{- define "cluster-proxy-agent.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop:
      - ALL
  privileged: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
{{- end -}}
