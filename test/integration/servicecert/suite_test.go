// Package servicecert_test runs the service-proxy certificate controller
// against a real kube-apiserver: in process with a fake clock for rotation,
// and as the real `cluster-proxy controllers` binary for its wiring.
package servicecert_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// inProcessNamespace holds the CA and the certificate of the in-process
	// reconciler; binaryNamespace those of the binary's specs.
	inProcessNamespace = "in-process"
	binaryNamespace    = "binary"
	signerSecretName   = "cluster-proxy-signer"
)

var (
	apiServer *framework.APIServer
	k8sClient client.Client
	// fakeClock is the in-process reconciler's clock.
	fakeClock *clocktesting.FakeClock
	// binary is `cluster-proxy` built for this run.
	binary string
	// kubeConfigPath is the administrator kubeconfig the binary uses.
	kubeConfigPath string
	// logDir holds the binary's logs.
	logDir string
)

func TestServiceCert(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Service-proxy certificate controller")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	binary, err = framework.BuildBinary("./cmd/cluster-proxy", "cluster-proxy")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, filepath.Dir(binary))

	apiServer, err = framework.StartAPIServer()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(apiServer.Stop)
	logDir = GinkgoT().TempDir()
	kubeConfigPath = filepath.Join(logDir, "kubeconfig")
	Expect(os.WriteFile(kubeConfigPath, apiServer.KubeConfig, 0o600)).To(Succeed())

	k8sClient, err = client.New(apiServer.Config, client.Options{})
	Expect(err).NotTo(HaveOccurred())
	for _, ns := range []string{inProcessNamespace, binaryNamespace} {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}

	fakeClock = clocktesting.NewFakeClock(time.Now())
	mgr, err := ctrl.NewManager(apiServer.Config, ctrl.Options{
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{inProcessNamespace: {}}},
		}},
	})
	Expect(err).NotTo(HaveOccurred())
	r := &servicecert.Reconciler{
		Client:          mgr.GetClient(),
		CA:              &signer.Store{Client: k8sClient, Namespace: inProcessNamespace, Name: signerSecretName, Clock: fakeClock},
		Clock:           fakeClock,
		Namespace:       inProcessNamespace,
		SignerNamespace: inProcessNamespace,
		SignerName:      signerSecretName,
	}
	Expect(r.SetupWithManager(mgr)).To(Succeed())
	mgrCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	DeferCleanup(stop)
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
})
