// Package tlsprofile is the one home of OCM's TLS profile: the ConfigMap
// ocm-tls-profile (keys minTLSVersion and cipherSuites) parsed into a
// Profile, rendered as the proxy-server's flags, applied to a server's
// tls.Config for every new handshake, and watched so that a change applies
// without a restart.
//
// The rules are sdk-go's (open-cluster-management.io/sdk-go/pkg/tls) with
// two deliberate differences, both because the proxy-server
// (apiserver-network-proxy) refuses to start with what sdk-go lets through:
// a cipher suite name that is unknown is an error rather than dropped with a
// warning, and an insecure one (crypto/tls InsecureCipherSuites) is an error
// rather than a warning.
package tlsprofile

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	sdktls "open-cluster-management.io/sdk-go/pkg/tls"
)

const (
	// ConfigMapName is the name of OCM's TLS profile ConfigMap.
	ConfigMapName = sdktls.ConfigMapName
	// KeyMinVersion is the ConfigMap key of the minimum TLS version:
	// VersionTLS10 … VersionTLS13 (or TLSv1.0 … TLSv1.3).
	KeyMinVersion = sdktls.ConfigMapKeyMinVersion
	// KeyCipherSuites is the ConfigMap key of the TLS 1.0–1.2 cipher suites:
	// IANA names, comma-separated. TLS 1.3 suites are not configurable.
	KeyCipherSuites = sdktls.ConfigMapKeyCipherSuites
)

// Profile is a TLS minimum version and cipher suites.
type Profile struct {
	// MinVersion is a crypto/tls version constant (tls.VersionTLS12, ...).
	MinVersion uint16
	// CipherSuites restrict TLS 1.0–1.2 handshakes; empty means Go's
	// defaults.
	CipherSuites []uint16
}

// Default is the profile without a ConfigMap, as sdk-go defines it: TLS 1.2
// at least, Go's default cipher suites.
func Default() Profile {
	return Profile{MinVersion: tls.VersionTLS12}
}

// KeyError is an invalid value of one key of the ConfigMap.
type KeyError struct {
	// Key is the ConfigMap key: KeyMinVersion or KeyCipherSuites.
	Key string
	// Value is the offending value (for cipherSuites, the offending names).
	Value string
	// Err says what is wrong with it.
	Err error
}

// Error names the key and the value.
func (e *KeyError) Error() string {
	return fmt.Sprintf("invalid %s %q: %v", e.Key, e.Value, e.Err)
}

// Unwrap returns what is wrong with the value.
func (e *KeyError) Unwrap() error { return e.Err }

// FromConfigMap returns the profile of cm; nil (the ConfigMap does not
// exist) is Default. A key that is missing or empty gets its default
// (minTLSVersion VersionTLS12, cipherSuites Go's defaults). An invalid value
// is a *KeyError naming the key.
func FromConfigMap(cm *corev1.ConfigMap) (Profile, error) {
	if cm == nil {
		return Default(), nil
	}
	return Parse(cm.Data)
}

// Parse returns the profile of a ConfigMap's data; see FromConfigMap.
func Parse(data map[string]string) (Profile, error) {
	p := Default()
	var errs []error
	if v := strings.TrimSpace(data[KeyMinVersion]); v != "" {
		version, err := sdktls.ParseTLSVersion(v)
		if err != nil {
			errs = append(errs, &KeyError{Key: KeyMinVersion, Value: v, Err: err})
		} else {
			p.MinVersion = version
		}
	}
	if v := data[KeyCipherSuites]; strings.TrimSpace(v) != "" {
		suites, suiteErrs := parseCipherSuites(v)
		errs = append(errs, suiteErrs...)
		p.CipherSuites = suites
	}
	if len(errs) > 0 {
		return Profile{}, errorList(errs)
	}
	return p, nil
}

// errorList is every problem of a ConfigMap, on one line (it ends up in a
// status condition).
type errorList []error

func (l errorList) Error() string {
	msgs := make([]string, 0, len(l))
	for _, err := range l {
		msgs = append(msgs, err.Error())
	}
	return strings.Join(msgs, "; ")
}

func (l errorList) Unwrap() []error { return l }

// parseCipherSuites turns comma-separated IANA names into IDs; unknown and
// insecure names are each a *KeyError listing them.
func parseCipherSuites(v string) ([]uint16, []error) {
	var suites []uint16
	var unknown, insecure []string
	for name := range strings.SplitSeq(v, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if id, ok := secureSuites[name]; ok {
			if !slices.Contains(suites, id) {
				suites = append(suites, id)
			}
			continue
		}
		if _, ok := insecureSuites[name]; ok {
			insecure = append(insecure, name)
			continue
		}
		unknown = append(unknown, name)
	}
	var errs []error
	if len(unknown) > 0 {
		errs = append(errs, &KeyError{Key: KeyCipherSuites, Value: strings.Join(unknown, ","),
			Err: errors.New("unknown cipher suite (IANA names as crypto/tls spells them, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")})
	}
	if len(insecure) > 0 {
		errs = append(errs, &KeyError{Key: KeyCipherSuites, Value: strings.Join(insecure, ","),
			Err: errors.New("insecure cipher suite (crypto/tls InsecureCipherSuites), refused: the proxy-server does not accept it")})
	}
	return suites, errs
}

var secureSuites, insecureSuites = suitesByName(tls.CipherSuites()), suitesByName(tls.InsecureCipherSuites())

func suitesByName(suites []*tls.CipherSuite) map[string]uint16 {
	m := make(map[string]uint16, len(suites))
	for _, s := range suites {
		m[s.Name] = s.ID
	}
	return m
}

// MinVersionName is the minimum version as the proxy-server's
// --tls-min-version spells it (VersionTLS12, ...).
func (p Profile) MinVersionName() string {
	return sdktls.VersionToString(p.MinVersion)
}

// CipherSuiteNames are the cipher suites' IANA names, in order.
func (p Profile) CipherSuiteNames() []string {
	names := make([]string, 0, len(p.CipherSuites))
	for _, id := range p.CipherSuites {
		names = append(names, tls.CipherSuiteName(id))
	}
	return names
}

// Args are the proxy-server's (apiserver-network-proxy's) flags for p:
// --tls-min-version always, --cipher-suites when p restricts them. The
// existing addon passes the same: --tls-min-version=VersionTLS12 and no
// --cipher-suites without a ConfigMap.
func (p Profile) Args() []string {
	args := []string{"--tls-min-version=" + p.MinVersionName()}
	if len(p.CipherSuites) > 0 {
		args = append(args, "--cipher-suites="+strings.Join(p.CipherSuiteNames(), ","))
	}
	return args
}

// Equal reports whether p and q are the same profile.
func (p Profile) Equal(q Profile) bool {
	return p.MinVersion == q.MinVersion && slices.Equal(p.CipherSuites, q.CipherSuites)
}

// Apply sets c's minimum version and cipher suites to p's. Without a
// cipher suite that HTTP/2 requires (RFC 7540 9.2.2) in a list that applies
// (a minimum below TLS 1.3), "h2" is dropped from c.NextProtos, so clients
// fall back to HTTP/1.1 instead of failing on the cipher.
func (p Profile) Apply(c *tls.Config) {
	c.MinVersion = p.MinVersion
	c.CipherSuites = slices.Clone(p.CipherSuites)
	if len(p.CipherSuites) > 0 && p.MinVersion < tls.VersionTLS13 &&
		!slices.Contains(p.CipherSuites, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) &&
		!slices.Contains(p.CipherSuites, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) {
		c.NextProtos = slices.DeleteFunc(slices.Clone(c.NextProtos), func(proto string) bool { return proto == "h2" })
	}
}

// ServerConfig returns a copy of base whose every handshake uses the profile
// that current returns at its start: a new profile applies to new
// connections without a restart; established connections keep theirs.
// Fields that an http.Server fills in when it starts serving (NextProtos)
// are taken from the returned config, so hand that one to the server.
func ServerConfig(base *tls.Config, current func() Profile) *tls.Config {
	cfg := base.Clone()
	// The static fields hold the floor even for code that reads them.
	Default().Apply(cfg)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := cfg.Clone()
		c.GetConfigForClient = nil
		current().Apply(c)
		return c, nil
	}
	return cfg
}
