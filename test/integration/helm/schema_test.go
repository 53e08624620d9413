package helm_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"
)

// schemaOnlyKeys are schema properties deliberately absent from values.yaml.
var schemaOnlyKeys = []string{
	// Helm's values shared by a parent chart; allowed so the chart works as a
	// subchart, never set by this chart.
	"global",
}

// valuesWalk compares values.yaml with values.schema.json. It returns the
// documented values (leaves: a value that is not an object, or an object
// the schema leaves free-form) and every mismatch.
func valuesWalk(path string, values any, schema map[string]any) (leaves, problems []string) {
	props, hasProps := schema["properties"].(map[string]any)
	object, isObject := values.(map[string]any)
	if !hasProps {
		return []string{path}, nil
	}
	if !isObject {
		return nil, []string{path + ": the schema describes an object with properties, values.yaml has no object"}
	}
	for k := range object {
		p := strings.TrimPrefix(path+"."+k, ".")
		sub, ok := props[k].(map[string]any)
		if !ok {
			problems = append(problems, p+": in values.yaml, not in values.schema.json")
			continue
		}
		if d, _ := sub["description"].(string); d == "" {
			problems = append(problems, p+": no description in values.schema.json")
		}
		l, pr := valuesWalk(p, object[k], sub)
		leaves, problems = append(leaves, l...), append(problems, pr...)
	}
	for k := range props {
		p := strings.TrimPrefix(path+"."+k, ".")
		if _, ok := object[k]; !ok && !slices.Contains(schemaOnlyKeys, p) {
			problems = append(problems, p+": in values.schema.json, not in values.yaml")
		}
	}
	return leaves, problems
}

func readChartFile(name string) []byte {
	data, err := os.ReadFile(filepath.Join(chartDir, name))
	Expect(err).NotTo(HaveOccurred())
	return data
}

var _ = Describe("The chart's values", Label("helm", "static"), func() {
	var leaves []string

	BeforeEach(func() {
		var values map[string]any
		Expect(yaml.Unmarshal(readChartFile("values.yaml"), &values)).To(Succeed())
		var schema map[string]any
		Expect(json.Unmarshal(readChartFile("values.schema.json"), &schema)).To(Succeed())
		Expect(schema).To(HaveKeyWithValue("additionalProperties", false), "misspelt top-level values are refused")
		var problems []string
		leaves, problems = valuesWalk("", values, schema)
		Expect(problems).To(BeEmpty(), "values.yaml and values.schema.json out of step")
	})

	It("has every SPEC §8 value", func() {
		Expect(leaves).To(ContainElements(
			"registry", "image", "tag", "replicas", "spokeAddonNamespace", "proxyServerImage", "proxyAgentImage",
			"proxyServer.entrypointLoadBalancer", "proxyServer.entrypointAddress", "proxyServer.port", "proxyServer.imagePullPolicy",
			"installByPlacement.placementName", "installByPlacement.placementNamespace",
			"enableKubeApiProxy", "enableServiceProxy", "enableImpersonation", "featureGates.clusterProfile",
			"userServer.enabled", "userServer.additionalSANs", "exposedServicesConfigMapName", "exposedServices",
			"networkPolicies.enabled",
		))
	})

	It("lists every value in the README's values table, and nothing else", func() {
		row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
		var documented []string
		for _, m := range row.FindAllStringSubmatch(string(readChartFile("README.md")), -1) {
			documented = append(documented, m[1])
		}
		Expect(documented).To(ConsistOf(leaves))
	})

	It("comments every value in values.yaml", func() {
		// The values and the objects holding them (proxyServer, ...); not the
		// keys inside a free-form default such as resources.requests.
		documented := map[string]bool{}
		for _, leaf := range leaves {
			parts := strings.Split(leaf, ".")
			for i := range parts {
				documented[strings.Join(parts[:i+1], ".")] = true
			}
		}
		keyLine := regexp.MustCompile(`^(\s*)([A-Za-z][A-Za-z0-9]*):`)
		type level struct {
			indent int
			key    string
		}
		var stack []level
		var seen []string
		lines := strings.Split(string(readChartFile("values.yaml")), "\n")
		for i, line := range lines {
			m := keyLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			indent := len(m[1])
			for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
				stack = stack[:len(stack)-1]
			}
			stack = append(stack, level{indent, m[2]})
			var path []string
			for _, l := range stack {
				path = append(path, l.key)
			}
			if !documented[strings.Join(path, ".")] {
				continue
			}
			seen = append(seen, strings.Join(path, "."))
			Expect(i).To(BeNumerically(">", 0))
			Expect(strings.TrimSpace(lines[i-1])).To(HavePrefix("#"), "values.yaml line %d (%s) has no comment above it", i+1, strings.TrimSpace(line))
		}
		Expect(seen).To(ContainElements(leaves), "every value was found in values.yaml")
	})
})
