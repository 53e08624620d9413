package v1alpha1

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// TestDefaultMatchesTheCRD holds Default to the CRD's defaults: every scalar
// default in the chart's CRD schema is what Default writes at that path, and
// Default writes nothing the CRD does not default.
func TestDefaultMatchesTheCRD(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "charts", "cluster-proxy", "crds",
		"proxy.open-cluster-management.io_managedproxyconfigurations.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(yaml.Unmarshal(data, crd)).To(Succeed())
	g.Expect(crd.Spec.Versions).To(HaveLen(1))
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]

	crdDefaults := map[string]any{}
	collectDefaults(t, spec, "spec", crdDefaults)

	// Every optional struct that holds defaults is present, so Default has
	// somewhere to write each of them.
	m := &ManagedProxyConfiguration{Spec: ManagedProxyConfigurationSpec{
		ProxyServer: ManagedProxyConfigurationProxyServer{Entrypoint: &ManagedProxyConfigurationProxyServerEntrypoint{
			LoadBalancerService: &EntryPointLoadBalancerService{},
		}},
		Deploy: &ManagedProxyConfigurationDeploy{},
	}}
	m.Default()
	raw, err := json.Marshal(m.Spec)
	g.Expect(err).NotTo(HaveOccurred())
	var obj map[string]any
	g.Expect(json.Unmarshal(raw, &obj)).To(Succeed())
	written := map[string]any{}
	collectScalars(obj, "spec", written)

	g.Expect(written).To(Equal(crdDefaults), "Default() and the CRD's +kubebuilder:default markers disagree")
	g.Expect(sortedKeys(crdDefaults)).To(ContainElements("spec.proxyServer.entrypoint.port", "spec.deploy.ports.agentServer"))
}

// collectDefaults records every scalar default under s, by JSON path.
func collectDefaults(t *testing.T, s apiextensionsv1.JSONSchemaProps, path string, out map[string]any) {
	t.Helper()
	if s.Default != nil {
		var v any
		if err := json.Unmarshal(s.Default.Raw, &v); err != nil {
			t.Fatalf("default at %s: %v", path, err)
		}
		if _, isObject := v.(map[string]any); !isObject {
			out[path] = v
		}
	}
	for name, p := range s.Properties {
		collectDefaults(t, p, path+"."+name, out)
	}
}

// collectScalars records every non-empty scalar under v, by JSON path.
func collectScalars(v any, path string, out map[string]any) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			collectScalars(child, path+"."+k, out)
		}
	case string:
		if v != "" {
			out[path] = v
		}
	case float64:
		if v != 0 {
			out[path] = v
		}
	case bool, nil, []any:
	}
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestDeployPortsAndLoadBalancerName(t *testing.T) {
	g := NewWithT(t)
	m := &ManagedProxyConfiguration{}
	g.Expect(m.DeployPorts()).To(Equal(DefaultDeployPorts()))
	g.Expect(m.Spec.Deploy).To(BeNil(), "DeployPorts does not change the object")
	m.Spec.Deploy = &ManagedProxyConfigurationDeploy{Ports: ManagedProxyConfigurationDeployPorts{AgentServer: 18091}}
	g.Expect(m.DeployPorts()).To(Equal(ManagedProxyConfigurationDeployPorts{
		ProxyServer: ProxyServerPort, AgentServer: 18091, HealthServer: HealthServerPort, AdminServer: AdminServerPort,
	}))
	g.Expect(m.LoadBalancerServiceName()).To(Equal(DefaultLoadBalancerServiceName))
	m.Spec.ProxyServer.Entrypoint = &ManagedProxyConfigurationProxyServerEntrypoint{LoadBalancerService: &EntryPointLoadBalancerService{Name: "lb"}}
	g.Expect(m.LoadBalancerServiceName()).To(Equal("lb"))
}
