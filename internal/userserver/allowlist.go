package userserver

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// ExposedService is one entry of the exposed-services allowlist: a Service
// on every managed cluster that the user-server may forward to. An empty
// Port or Protocol matches any.
type ExposedService struct {
	Namespace string `json:"namespace"`
	Service   string `json:"service"`
	Port      int    `json:"port,omitempty"`
	Protocol  string `json:"protocol,omitempty"`
}

// Allowlist is the set of Services the user-server forwards to; the zero
// value allows nothing.
type Allowlist struct {
	entries []ExposedService
}

// ParseAllowlist reads the allowlist from a ConfigMap's data: every key
// holds a YAML list of ExposedService, read strictly (an unknown field, a
// missing namespace or service, a port outside 1-65535 or a protocol other
// than http and https is an error naming the key and the entry).
func ParseAllowlist(data map[string]string) (Allowlist, error) {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out Allowlist
	for _, key := range keys {
		var entries []ExposedService
		if err := yaml.UnmarshalStrict([]byte(data[key]), &entries); err != nil {
			return Allowlist{}, fmt.Errorf("key %q: not a YAML list of {namespace, service, port, protocol}: %w", key, err)
		}
		for i, e := range entries {
			if err := e.validate(); err != nil {
				return Allowlist{}, fmt.Errorf("key %q, entry %d: %w", key, i+1, err)
			}
			out.entries = append(out.entries, e)
		}
	}
	return out, nil
}

func (e ExposedService) validate() error {
	var problems []string
	for _, f := range []struct {
		field, value string
		check        func(string) []string
	}{{"namespace", e.Namespace, validation.IsDNS1123Label}, {"service", e.Service, validation.IsDNS1035Label}} {
		if f.value == "" {
			problems = append(problems, f.field+" is required")
			continue
		}
		if msgs := f.check(f.value); len(msgs) > 0 {
			problems = append(problems, fmt.Sprintf("invalid %s %q: %s", f.field, f.value, strings.Join(msgs, "; ")))
		}
	}
	if e.Port < 0 || e.Port > 65535 {
		problems = append(problems, fmt.Sprintf("invalid port %d: must be from 1 to 65535 (or left out for any)", e.Port))
	}
	if e.Protocol != "" && e.Protocol != "http" && e.Protocol != "https" {
		problems = append(problems, fmt.Sprintf("invalid protocol %q: must be http or https (or left out for any)", e.Protocol))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// Allows reports whether t is on the list.
func (a Allowlist) Allows(t Target) bool {
	for _, e := range a.entries {
		if e.Namespace == t.Namespace && e.Service == t.Name &&
			(e.Port == 0 || e.Port == t.Port) && (e.Protocol == "" || e.Protocol == t.Proto) {
			return true
		}
	}
	return false
}

// Len is the number of entries.
func (a Allowlist) Len() int { return len(a.entries) }
