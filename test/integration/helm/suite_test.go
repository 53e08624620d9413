// Package helm_test tests the hub Helm chart charts/cluster-proxy with the
// pinned Helm CLI (path in $HELM, set by `make test-helm`): lint, renders
// under value profiles with assertions on the objects, renders that must
// fail, the values/schema/README and RBAC drift checks, the default render
// applied to a real hub kube-apiserver with the manager running under the
// chart's RBAC, helm install/upgrade/uninstall against a real
// kube-apiserver, and an install with enableServiceProxy=true and
// userServer.enabled=true that runs the real `cluster-proxy controllers` and
// `cluster-proxy user-server` binaries, built for the run, as the chart's
// addon-user ServiceAccount with the chart's arguments (the user-server with
// its Secret volumes' files, from certificates minted for the run).
//
// Specs labelled "static" need only the Helm CLI; the others start
// kube-apiservers (`make controlplane`).
package helm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// helmEnv names the environment variable holding the Helm CLI's path.
const helmEnv = "HELM"

// Release name and namespace the tests install and render with, the ones
// the README documents.
const (
	releaseName      = "cluster-proxy"
	releaseNamespace = "open-cluster-management-addon"
)

var (
	// helmBin is the Helm CLI.
	helmBin string
	// helmHome isolates Helm's cache, config and data from the user's.
	helmHome string
	// repoRoot is the repository root; chartDir the chart under test.
	repoRoot, chartDir string
	// appVersion is the chart's appVersion; kubeVersion the Kubernetes
	// version renders are made for (the control plane's).
	appVersion, kubeVersion string
)

func TestHelmChart(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cluster-proxy Helm chart")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	helmBin, err = helmBinary()
	Expect(err).NotTo(HaveOccurred())
	repoRoot, err = framework.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	chartDir = filepath.Join(repoRoot, "charts", "cluster-proxy")

	chart := struct {
		AppVersion string `json:"appVersion"`
	}{}
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.Unmarshal(data, &chart)).To(Succeed())
	Expect(chart.AppVersion).NotTo(BeEmpty())
	appVersion = chart.AppVersion

	kubeVersion, err = controlPlaneVersion()
	Expect(err).NotTo(HaveOccurred())

	helmHome = GinkgoT().TempDir()
})

// helmBinary returns the Helm CLI named by $HELM. It is an error, not a
// skip, when $HELM is unset or not an executable: the chart tests are part
// of `make test`.
func helmBinary() (string, error) {
	path := os.Getenv(helmEnv)
	if path == "" {
		return "", fmt.Errorf("$%s is not set: run the chart tests with `make test-helm`, which installs the pinned Helm CLI and sets it", helmEnv)
	}
	info, err := os.Stat(path)
	if err != nil || info.IsDir() || info.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("$%s=%s is not an executable Helm CLI: run `make test-helm`, which installs it", helmEnv, path)
	}
	return path, nil
}

// controlPlaneVersion is the Kubernetes version of the test control plane
// (the k8s.io/kubernetes version its tool module pins), so renders target
// the API server the other specs run.
func controlPlaneVersion() (string, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "hack", "tools", "controlplane", "go.mod"))
	if err != nil {
		return "", fmt.Errorf("failed to read the control plane's go.mod: %w", err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v[0-9][^\s]*)`).FindSubmatch(data)
	if m == nil {
		return "", errors.New("the control plane's go.mod requires no k8s.io/kubernetes version")
	}
	return string(m[1]), nil
}

// runHelm runs the Helm CLI with args and returns its standard output; the
// error carries standard error.
func runHelm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, helmBin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &helmError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// helmError is a failed Helm CLI run.
type helmError struct {
	args   []string
	err    error
	stderr string
}

func (e *helmError) Error() string {
	return fmt.Sprintf("helm %v: %v: %s", e.args, e.err, e.stderr)
}

func (e *helmError) Unwrap() error { return e.err }
