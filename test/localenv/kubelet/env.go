package kubelet

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// env is c's environment, built as the kubelet builds it: envFrom, then
// env (expanding $(VAR) references to variables defined before), then the
// kubernetes service's variables, plus HOSTNAME and the runner's PATH.
func (k *Kubelet) env(ctx context.Context, pod *corev1.Pod, c *corev1.Container, podIP string) ([]string, error) {
	var names []string
	vars := map[string]string{}
	set := func(name, value string) {
		if _, ok := vars[name]; !ok {
			names = append(names, name)
		}
		vars[name] = value
	}
	service := k.serviceEnv()
	for _, from := range c.EnvFrom {
		kind, name, optional := "Secret", "", (*bool)(nil)
		if ref := from.SecretRef; ref != nil {
			name, optional = ref.Name, ref.Optional
		} else if ref := from.ConfigMapRef; ref != nil {
			kind, name, optional = "ConfigMap", ref.Name, ref.Optional
		}
		data, err := k.objectData(ctx, kind, pod.Namespace, name, optional)
		if err != nil {
			return nil, err
		}
		for _, key := range slices.Sorted(maps.Keys(data)) {
			if !strings.Contains(key, "=") {
				set(from.Prefix+key, string(data[key]))
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, vars, service))
			continue
		}
		value, ok, err := k.envValue(ctx, pod, c, e.ValueFrom, podIP)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, value)
		}
	}
	for _, kv := range append(service, [2]string{"HOSTNAME", pod.Name}, [2]string{"PATH", os.Getenv("PATH")}) {
		if _, ok := vars[kv[0]]; !ok {
			set(kv[0], kv[1])
		}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, n+"="+vars[n])
	}
	return out, nil
}

// serviceEnv is the environment of the kubernetes service, pointing at the
// API server.
func (k *Kubelet) serviceEnv() [][2]string {
	host, port := k.opts.APIServerHost, k.opts.APIServerPort
	addr := "tcp://" + net.JoinHostPort(host, port)
	p := "KUBERNETES_PORT_" + port + "_TCP"
	return [][2]string{
		{"KUBERNETES_SERVICE_HOST", host}, {"KUBERNETES_SERVICE_PORT", port}, {"KUBERNETES_SERVICE_PORT_HTTPS", port},
		{"KUBERNETES_PORT", addr}, {p, addr}, {p + "_PROTO", "tcp"}, {p + "_PORT", port}, {p + "_ADDR", host},
	}
}

// envValue resolves a valueFrom; ok is false for a missing optional
// reference, which leaves the variable unset.
func (k *Kubelet) envValue(ctx context.Context, pod *corev1.Pod, c *corev1.Container, src *corev1.EnvVarSource, podIP string) (string, bool, error) {
	switch {
	case src.FieldRef != nil:
		v, err := fieldValue(pod, src.FieldRef.FieldPath, podIP, k.opts.NodeIP)
		return v, err == nil, err
	case src.ResourceFieldRef != nil:
		v, err := resourceValue(c, src.ResourceFieldRef)
		return v, err == nil, err
	case src.SecretKeyRef != nil, src.ConfigMapKeyRef != nil:
		kind, name, key, optional := "Secret", "", "", (*bool)(nil)
		if ref := src.SecretKeyRef; ref != nil {
			name, key, optional = ref.Name, ref.Key, ref.Optional
		} else {
			ref := src.ConfigMapKeyRef
			kind, name, key, optional = "ConfigMap", ref.Name, ref.Key, ref.Optional
		}
		data, err := k.objectData(ctx, kind, pod.Namespace, name, optional)
		if err != nil {
			return "", false, err
		}
		v, ok := data[key]
		if !ok && !ptr.Deref(optional, false) {
			return "", false, fmt.Errorf("couldn't find key %s in %s %s/%s", key, kind, pod.Namespace, name)
		}
		return string(v), ok, nil
	default:
		return "", false, fmt.Errorf("unsupported valueFrom")
	}
}

// fieldValue is the downward API's value of a pod field.
func fieldValue(pod *corev1.Pod, path, podIP, hostIP string) (string, error) {
	for _, m := range []struct {
		prefix string
		values map[string]string
	}{{"metadata.labels", pod.Labels}, {"metadata.annotations", pod.Annotations}} {
		if path == m.prefix {
			return formatMap(m.values), nil
		}
		if key, ok := strings.CutPrefix(path, m.prefix+"['"); ok && strings.HasSuffix(key, "']") {
			return m.values[strings.TrimSuffix(key, "']")], nil
		}
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	return "", fmt.Errorf("unsupported fieldPath %q", path)
}

// formatMap formats labels or annotations as the downward API does.
func formatMap(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// resourceValue is the downward API's value of a container resource; an
// unset limit is the node's allocatable amount.
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	kind, name, _ := strings.Cut(ref.Resource, ".")
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	} else if kind != "requests" {
		return "", fmt.Errorf("unsupported resource %q", ref.Resource)
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok && kind == "limits" {
		q, ok = allocatable()[corev1.ResourceName(name)]
	}
	if !ok {
		q = resource.Quantity{}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if name == string(corev1.ResourceCPU) {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

// varRef matches what expand replaces: an escaped $ or a $(VAR) reference.
var varRef = regexp.MustCompile(`\$\$|\$\(([^)]*)\)`)

// expand replaces $(VAR) references with the variables' values (looked up
// in vars, then in more), as the kubelet does: $$ escapes a $, and unknown
// references stay as they are.
func expand(s string, vars map[string]string, more ...[][2]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if ref == "$$" {
			return "$"
		}
		name := ref[2 : len(ref)-1]
		if v, ok := vars[name]; ok {
			return v
		}
		for _, list := range more {
			for _, kv := range list {
				if kv[0] == name {
					return kv[1]
				}
			}
		}
		return ref
	})
}
