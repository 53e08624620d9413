// Package framework starts the real components the project's integration and
// end-to-end suites run against: kube-apiserver, etcd and
// kube-controller-manager built from Go modules by `make controlplane`.
package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneMakeTarget is the make target that builds the control-plane
// binaries; error messages name it so a missing build is easy to fix.
const ControlPlaneMakeTarget = "make controlplane"

// assetsEnv is the environment variable that points at the control-plane
// binaries (controller-runtime's envtest convention). The Makefile sets it.
const assetsEnv = "KUBEBUILDER_ASSETS"

// Control-plane binary names.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	Etcd                  = "etcd"
)

// ControlPlaneAssets returns the directory that holds the given control-plane
// binaries (all three when none are named). It uses $KUBEBUILDER_ASSETS when
// set; otherwise it looks for the newest build under the repository's
// bin/k8s/, so `go test` works without make once the binaries exist. When a
// binary is missing, the error names the directory, the binary and the make
// target that builds it.
func ControlPlaneAssets(binaries ...string) (string, error) {
	if len(binaries) == 0 {
		binaries = []string{KubeAPIServer, Etcd, KubeControllerManager}
	}
	dir := os.Getenv(assetsEnv)
	if dir == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", err
		}
		dir = newestBuild(filepath.Join(root, "bin", "k8s"))
		if dir == "" {
			return "", fmt.Errorf("no control-plane binaries under %s and %s is not set: run `%s` first",
				filepath.Join(root, "bin", "k8s"), assetsEnv, ControlPlaneMakeTarget)
		}
	}
	return dir, checkBinaries(dir, binaries)
}

func checkBinaries(dir string, binaries []string) error {
	var missing []string
	for _, b := range binaries {
		info, err := os.Stat(filepath.Join(dir, b))
		if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("control-plane binaries %s not found in %s: run `%s` first",
			strings.Join(missing, ", "), dir, ControlPlaneMakeTarget)
	}
	return nil
}

// newestBuild returns the subdirectory of dir named after the highest
// Kubernetes version, or "" when there is none.
func newestBuild(dir string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var newest string
	var newestVersion *version.Version
	for _, e := range entries {
		v, err := version.ParseSemantic(e.Name())
		if !e.IsDir() || err != nil {
			continue
		}
		if newestVersion == nil || v.GreaterThan(newestVersion) {
			newest, newestVersion = e.Name(), v
		}
	}
	if newest == "" {
		return ""
	}
	return filepath.Join(dir, newest)
}

// RepoRoot returns the root of the cluster-proxy repository: the nearest
// directory above the working directory whose go.mod declares the module.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("failed to get the working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module open-cluster-management.io/cluster-proxy\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("failed to find the cluster-proxy repository root above the working directory")
		}
		dir = parent
	}
}

// CRDDir returns the directory of the CRDs the Helm chart ships; tests
// install exactly these files.
func CRDDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "charts", "cluster-proxy", "crds"), nil
}

// APIServer is a running kube-apiserver and etcd with the project's CRDs
// installed.
type APIServer struct {
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// KubeConfig is a kubeconfig file's content for the same identity, for
	// tools such as kubectl.
	KubeConfig []byte

	env *envtest.Environment
}

// StartAPIServer starts etcd and kube-apiserver from the control-plane build
// (with the OwnerReferencesPermissionEnforcement admission plugin, as
// production hubs run) and installs the chart's CRDs plus any extra CRD
// directories. It fails (never skips) when the binaries are missing.
func StartAPIServer(extraCRDDirs ...string) (*APIServer, error) {
	return StartAPIServerWithOptions(APIServerOptions{ExtraCRDDirs: extraCRDDirs})
}

// APIServerOptions configure StartAPIServerWithOptions.
type APIServerOptions struct {
	// ExtraCRDDirs are CRD directories installed besides the chart's.
	ExtraCRDDirs []string
	// ServiceAccountAdmission enables the ServiceAccount admission plugin,
	// which envtest disables: pods then get their service account's
	// projected token volume (kube-api-access-*) as in a real cluster, and
	// are refused until the service account exists (kube-controller-manager's
	// "serviceaccount" controller creates "default").
	ServiceAccountAdmission bool
	// ServiceAccountIssuerDiscovery makes the API server an OpenID Connect
	// issuer anyone can use: its service-account issuer
	// (ServiceAccountIssuer) serves /.well-known/openid-configuration and
	// the keys at a loopback address (--external-hostname=127.0.0.1; by
	// default the keys' URL names the host's own address, where the API
	// server does not listen), and system:service-account-issuer-discovery
	// is bound to system:unauthenticated. Its TokenRequest tokens are then
	// ID tokens any OIDC client can verify.
	ServiceAccountIssuerDiscovery bool
}

// StartAPIServerWithOptions is StartAPIServer with options.
func StartAPIServerWithOptions(o APIServerOptions) (*APIServer, error) {
	extraCRDDirs := o.ExtraCRDDirs
	assets, err := ControlPlaneAssets(KubeAPIServer, Etcd)
	if err != nil {
		return nil, err
	}
	crds, err := CRDDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     append([]string{crds}, extraCRDDirs...),
		ErrorIfCRDPathMissing: true,
	}
	// As production hubs (OpenShift among them) run it: setting
	// blockOwnerDeletion owner references then needs update on the owner's
	// finalizers, which RBAC must grant.
	env.ControlPlane.GetAPIServer().Configure().Append("enable-admission-plugins", "OwnerReferencesPermissionEnforcement")
	if o.ServiceAccountAdmission {
		env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins")
	}
	if o.ServiceAccountIssuerDiscovery {
		env.ControlPlane.GetAPIServer().Configure().Set("external-hostname", "127.0.0.1")
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("failed to start kube-apiserver and etcd from %s: %w", assets, err)
	}
	s := &APIServer{Config: cfg, KubeConfig: env.KubeConfig, env: env}
	if o.ServiceAccountIssuerDiscovery {
		if err := s.allowIssuerDiscovery(); err != nil {
			_ = s.Stop()
			return nil, err
		}
	}
	return s, nil
}

// allowIssuerDiscovery binds system:service-account-issuer-discovery to
// system:unauthenticated.
func (s *APIServer) allowIssuerDiscovery() error {
	c, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		return fmt.Errorf("failed to create a client of the API server: %w", err)
	}
	// Bounded: the API server has just reported healthy.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const role = "system:service-account-issuer-discovery"
	_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role + ":unauthenticated"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:unauthenticated"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("failed to bind %s to system:unauthenticated: %w", role, err)
	}
	return nil
}

// Stop stops the API server and etcd and removes their data.
func (s *APIServer) Stop() error {
	if err := s.env.Stop(); err != nil {
		return fmt.Errorf("failed to stop kube-apiserver and etcd: %w", err)
	}
	return nil
}

// AddUser returns a configuration that authenticates to the API server as
// user name in groups (a client certificate from the test control plane), so
// a test can act as another identity, for instance a klusterlet.
func (s *APIServer) AddUser(name string, groups ...string) (*rest.Config, error) {
	user, err := s.env.AddUser(envtest.User{Name: name, Groups: groups}, s.Config)
	if err != nil {
		return nil, fmt.Errorf("failed to add user %s: %w", name, err)
	}
	return user.Config(), nil
}

// ServiceAccountIssuer returns the API server's service-account issuer
// (envtest sets https://<address>:<port>/): the "iss" of the tokens its
// TokenRequest API issues, and an OpenID Connect issuer whose
// /.well-known/openid-configuration and keys the API server serves — to
// callers the RBAC role system:service-account-issuer-discovery is bound to.
func (s *APIServer) ServiceAccountIssuer() string {
	return s.env.ControlPlane.GetAPIServer().SecureServing.URL("https", "/").String()
}

// CAPEM returns the CA that issued the API server's serving certificate.
func (s *APIServer) CAPEM() []byte {
	return s.Config.CAData
}

// StartOCMHub starts a kube-apiserver with the chart's CRDs and OCM's hub
// CRDs (rendered into dir) and writes its administrator kubeconfig to
// dir/kubeconfig, whose path it returns: the hub the addon-manager
// binary's suites run it against.
func StartOCMHub(dir string) (*APIServer, string, error) {
	ocmCRDs, err := OCMHubCRDs(dir)
	if err != nil {
		return nil, "", err
	}
	apiServer, err := StartAPIServer(ocmCRDs)
	if err != nil {
		return nil, "", err
	}
	kubeConfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeConfigPath, apiServer.KubeConfig, 0o600); err != nil {
		_ = apiServer.Stop()
		return nil, "", fmt.Errorf("failed to write the hub kubeconfig: %w", err)
	}
	return apiServer, kubeConfigPath, nil
}
