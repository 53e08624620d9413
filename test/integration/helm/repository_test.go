package helm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// chartIndex is the part of a Helm repository's index.yaml the specs
// check.
type chartIndex struct {
	APIVersion string `json:"apiVersion"`
	Entries    map[string][]struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		AppVersion string   `json:"appVersion"`
		URLs       []string `json:"urls"`
		Digest     string   `json:"digest"`
	} `json:"entries"`
}

// searchResult is one row of `helm search repo -o json`.
type searchResult struct {
	Name       string `json:"name"`
	Version    string `json:"version"`
	AppVersion string `json:"app_version"`
}

var _ = Describe("The packaged chart and its repository (make chart)", Ordered, Label("helm", "chart-repo"), func() {
	// The repository's name in the specs' Helm configuration.
	const repoName = "cpx"
	// A second version packaged into the same repository: a pre-release,
	// above any stable version the chart will have.
	const rcVersion = "999.0.0-rc.1"
	var (
		// out is CHART_OUT, the repository directory; repoURL where it is
		// served.
		out, repoURL string
		// version is the chart's version (Chart.yaml).
		version string
		// home holds the specs' own Helm configuration, cache and data.
		home string
	)

	// makeChart runs `make chart` with CHART_OUT=out and extra variables.
	makeChart := func(ctx context.Context, vars ...string) {
		GinkgoHelper()
		makeCmd := os.Getenv("MAKE")
		if makeCmd == "" {
			makeCmd = "make"
		}
		cmd := exec.CommandContext(ctx, makeCmd, append([]string{"-C", repoRoot, "chart", "CHART_OUT=" + out, "HELM=" + helmBin}, vars...)...)
		output, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "make chart %v:\n%s", vars, output)
	}
	// helmRepo runs the Helm CLI with the specs' own HELM_CONFIG_HOME,
	// HELM_CACHE_HOME and HELM_DATA_HOME, where the repository is added.
	helmRepo := func(ctx context.Context, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, helmBin, args...)
		cmd.Env = append(os.Environ(),
			"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
			"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
			"HELM_DATA_HOME="+filepath.Join(home, "data"),
		)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String(), &helmError{args: args, err: err, stderr: stderr.String()}
		}
		return stdout.String(), nil
	}
	readIndex := func() chartIndex {
		GinkgoHelper()
		data, err := os.ReadFile(filepath.Join(out, "index.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var index chartIndex
		Expect(yaml.Unmarshal(data, &index)).To(Succeed())
		return index
	}
	search := func(ctx context.Context, args ...string) []searchResult {
		GinkgoHelper()
		output, err := helmRepo(ctx, append([]string{"search", "repo", repoName + "/cluster-proxy", "--output", "json"}, args...)...)
		Expect(err).NotTo(HaveOccurred())
		var results []searchResult
		Expect(json.Unmarshal([]byte(output), &results)).To(Succeed())
		return results
	}

	BeforeAll(func(ctx SpecContext) {
		chart := struct {
			Version string `json:"version"`
		}{}
		data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.Unmarshal(data, &chart)).To(Succeed())
		Expect(chart.Version).NotTo(BeEmpty())
		version = chart.Version
		out = GinkgoT().TempDir()
		home = GinkgoT().TempDir()

		By("make chart")
		makeChart(ctx)

		By("serving the repository directory from a static file server on 127.0.0.1")
		srv := httptest.NewServer(http.FileServer(http.Dir(out)))
		DeferCleanup(srv.Close)
		repoURL = srv.URL
	})

	It("writes a versioned archive and an index naming it, relatively, with its digest", func() {
		archive, err := os.ReadFile(filepath.Join(out, "cluster-proxy-"+version+".tgz"))
		Expect(err).NotTo(HaveOccurred())
		sum := sha256.Sum256(archive)

		index := readIndex()
		Expect(index.APIVersion).To(Equal("v1"))
		Expect(index.Entries).To(HaveKey("cluster-proxy"))
		entries := index.Entries["cluster-proxy"]
		Expect(entries).To(HaveLen(1))
		Expect(entries[0].Name).To(Equal("cluster-proxy"))
		Expect(entries[0].Version).To(Equal(version))
		Expect(entries[0].AppVersion).To(Equal(appVersion))
		Expect(entries[0].URLs).To(Equal([]string{"cluster-proxy-" + version + ".tgz"}),
			"relative: the directory works wherever it is served")
		Expect(entries[0].Digest).To(Equal(hex.EncodeToString(sum[:])))
	})

	It("is added with helm repo add from the file server and found by helm search repo", func(ctx SpecContext) {
		_, err := helmRepo(ctx, "repo", "add", repoName, repoURL)
		Expect(err).NotTo(HaveOccurred())
		Expect(search(ctx)).To(Equal([]searchResult{{Name: repoName + "/cluster-proxy", Version: version, AppVersion: appVersion}}))
	})

	It("renders from the repository exactly what the chart directory renders", func(ctx SpecContext) {
		args := []string{"--namespace", releaseNamespace, "--kube-version", kubeVersion, "--include-crds"}
		fromRepo, err := helmRepo(ctx, append([]string{"template", releaseName, repoName + "/cluster-proxy", "--version", version}, args...)...)
		Expect(err).NotTo(HaveOccurred())
		fromDir, err := runHelm(ctx, append([]string{"template", releaseName, chartDir}, args...)...)
		Expect(err).NotTo(HaveOccurred())
		Expect(fromRepo).To(Equal(fromDir))
		objs, err := parseObjects(fromRepo)
		Expect(err).NotTo(HaveOccurred())
		Expect(objs.keys()).To(ContainElements(
			"CustomResourceDefinition/managedproxyconfigurations.proxy.open-cluster-management.io",
			"Deployment/"+releaseNamespace+"/cluster-proxy-addon-manager",
		))
	})

	It("adds a version packaged with CHART_VERSION and CHART_APP_VERSION next to the first", func(ctx SpecContext) {
		makeChart(ctx, "CHART_VERSION="+rcVersion, "CHART_APP_VERSION="+rcVersion)
		_, err := os.Stat(filepath.Join(out, "cluster-proxy-"+rcVersion+".tgz"))
		Expect(err).NotTo(HaveOccurred())
		versions := map[string]string{}
		for _, e := range readIndex().Entries["cluster-proxy"] {
			versions[e.Version] = e.AppVersion
		}
		Expect(versions).To(Equal(map[string]string{version: appVersion, rcVersion: rcVersion}))

		_, err = helmRepo(ctx, "repo", "update", repoName)
		Expect(err).NotTo(HaveOccurred())
		Expect(search(ctx)).To(Equal([]searchResult{{Name: repoName + "/cluster-proxy", Version: version, AppVersion: appVersion}}),
			"a pre-release is not the latest without --devel")
		Expect(search(ctx, "--versions", "--devel")).To(ConsistOf(
			searchResult{Name: repoName + "/cluster-proxy", Version: version, AppVersion: appVersion},
			searchResult{Name: repoName + "/cluster-proxy", Version: rcVersion, AppVersion: rcVersion},
		))
		rendered, err := helmRepo(ctx, "template", releaseName, repoName+"/cluster-proxy", "--version", rcVersion,
			"--namespace", releaseNamespace, "--kube-version", kubeVersion)
		Expect(err).NotTo(HaveOccurred())
		objs, err := parseObjects(rendered)
		Expect(err).NotTo(HaveOccurred())
		d := &appsv1.Deployment{}
		objs.into("Deployment/"+releaseNamespace+"/cluster-proxy-addon-manager", d)
		Expect(d.Labels).To(HaveKeyWithValue("helm.sh/chart", "cluster-proxy-"+rcVersion))
		Expect(d.Labels).To(HaveKeyWithValue("app.kubernetes.io/version", rcVersion))
	})

	It("installs from the repository onto a real kube-apiserver: helm install cluster-proxy cpx/cluster-proxy", func(ctx SpecContext) {
		ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		hub, err := framework.StartAPIServer(ocmCRDs)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(hub.Stop)
		kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, hub.KubeConfig, 0o600)).To(Succeed())
		scheme := runtime.NewScheme()
		Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
		Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
		Expect(proxyv1alpha1.AddToScheme(scheme)).To(Succeed())
		c, err := client.New(hub.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		_, err = helmRepo(ctx, "install", releaseName, repoName+"/cluster-proxy", "--version", version,
			"--namespace", releaseNamespace, "--create-namespace", "--kubeconfig", kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		listed, err := helmRepo(ctx, "list", "--namespace", releaseNamespace, "--kubeconfig", kubeconfig, "--output", "json")
		Expect(err).NotTo(HaveOccurred())
		var releases []struct {
			Name       string `json:"name"`
			Status     string `json:"status"`
			Chart      string `json:"chart"`
			AppVersion string `json:"app_version"`
		}
		Expect(json.Unmarshal([]byte(listed), &releases)).To(Succeed())
		Expect(releases).To(HaveLen(1))
		Expect(releases[0].Name).To(Equal(releaseName))
		Expect(releases[0].Status).To(Equal("deployed"))
		Expect(releases[0].Chart).To(Equal("cluster-proxy-" + version))
		Expect(releases[0].AppVersion).To(Equal(appVersion))

		Expect(c.Get(ctx, types.NamespacedName{Name: "managedproxyconfigurations.proxy.open-cluster-management.io"}, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed())
		Expect(c.Get(ctx, types.NamespacedName{Namespace: releaseNamespace, Name: "cluster-proxy-addon-manager"}, &appsv1.Deployment{})).To(Succeed())
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(c.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
		Expect(mpc.Spec.ProxyServer.Namespace).To(Equal(releaseNamespace))

		_, err = helmRepo(ctx, "uninstall", releaseName, "--namespace", releaseNamespace, "--kubeconfig", kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool {
			return apierrors.IsNotFound(c.Get(ctx, types.NamespacedName{Namespace: releaseNamespace, Name: "cluster-proxy-addon-manager"}, &appsv1.Deployment{}))
		}).WithContext(ctx).WithTimeout(timeout).Should(BeTrue())
	})
})
