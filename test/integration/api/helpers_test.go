package api_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// loadObject reads a YAML manifest relative to the repository root.
func loadObject(path string) *unstructured.Unstructured {
	root, err := framework.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(root, path))
	Expect(err).NotTo(HaveOccurred())
	// Through JSON and the unstructured decoder, so integers stay int64 as
	// they do in objects read from the server.
	data, err = yaml.YAMLToJSON(data)
	Expect(err).NotTo(HaveOccurred())
	obj := &unstructured.Unstructured{}
	Expect(obj.UnmarshalJSON(data)).To(Succeed())
	return obj
}

// minimalObject is a ManagedProxyConfiguration with only the required fields.
func minimalObject(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "proxy.open-cluster-management.io/v1alpha1",
		"kind":       "ManagedProxyConfiguration",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"authentication": map[string]any{},
			"proxyServer":    map[string]any{"image": "example.com/proxy-server:v1"},
			"proxyAgent":     map[string]any{"image": "example.com/proxy-agent:v1"},
		},
	}}
}

// subsetMismatch returns a description of the first place where got does not
// contain want (maps: every key of want, recursively; lists: same length and
// each element a subset), or "" when it does.
func subsetMismatch(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: want an object, got %#v", path, got)
		}
		for k, wv := range w {
			gv, found := g[k]
			if !found {
				return fmt.Sprintf("%s.%s: missing (pruned or dropped by the server)", path, k)
			}
			if m := subsetMismatch(path+"."+k, wv, gv); m != "" {
				return m
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("%s: want %#v, got %#v", path, want, got)
		}
		for i := range w {
			if m := subsetMismatch(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); m != "" {
				return m
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Sprintf("%s: want %#v, got %#v", path, want, got)
		}
		return ""
	}
}
