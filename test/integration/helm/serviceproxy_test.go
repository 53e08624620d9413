package helm_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// userSubject is the addon-user ServiceAccount as an RBAC subject.
var userSubject = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: userName, Namespace: releaseNamespace}

// signerSecretName is the CA Secret the chart names (the addon-manager's
// default).
const signerSecretName = "cluster-proxy-signer"

// parseManagerArgs parses the addon-manager container's arguments with the
// addon-manager's own flags.
func parseManagerArgs(args []string) *addonmanager.Options {
	opts := addonmanager.NewOptions()
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	opts.AddFlags(fs)
	Expect(fs.Parse(args)).To(Succeed())
	Expect(fs.Args()).To(BeEmpty())
	return opts
}

// parseControllersArgs parses the arguments of a /cluster-proxy container
// running `controllers` with that command's own flags, and validates them
// with POD_NAMESPACE set to the release namespace.
func parseControllersArgs(args []string) *servicecert.Options {
	Expect(args).NotTo(BeEmpty())
	Expect(args[0]).To(Equal("controllers"))
	opts := servicecert.NewOptions()
	fs := pflag.NewFlagSet("controllers", pflag.ContinueOnError)
	opts.AddFlags(fs)
	Expect(fs.Parse(args[1:])).To(Succeed())
	Expect(fs.Args()).To(BeEmpty(), "the command takes no positional arguments")
	opts.PodNamespace = releaseNamespace
	Expect(opts.Validate()).To(Succeed())
	return opts
}

var _ = Describe("Installing the chart with enableServiceProxy=true", Ordered, Label("helm", "install", "service-proxy"), func() {
	const (
		// negativeWait is how long the unbound binary is watched not writing
		// the certificate.
		negativeWait = 3 * time.Second
	)
	var (
		hub        *framework.APIServer
		c          client.Client
		clientset  kubernetes.Interface
		kubeconfig string
		// binary is `cluster-proxy` built for this run; logDir holds its logs.
		binary, logDir string
		// deployment is Deployment cluster-proxy-addon-user as installed.
		deployment *appsv1.Deployment
		// userKubeconfig authenticates as the Deployment's ServiceAccount
		// with a token from the TokenRequest API.
		userKubeconfig string
	)

	helmAt := func(ctx context.Context, args ...string) (string, error) {
		return runHelm(ctx, append(args, "--kubeconfig", kubeconfig, "--namespace", releaseNamespace)...)
	}
	get := func(ctx context.Context, name string, obj client.Object) error {
		return c.Get(ctx, types.NamespacedName{Namespace: releaseNamespace, Name: name}, obj)
	}
	// userCan asks the API server whether the Deployment's ServiceAccount
	// may do verb on resource of group in the release namespace.
	userCan := func(ctx context.Context, verb, group, resource string) bool {
		sa := deployment.Spec.Template.Spec.ServiceAccountName
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   "system:serviceaccount:" + releaseNamespace + ":" + sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: releaseNamespace, Verb: verb, Group: group, Resource: resource,
			},
		}}
		Expect(c.Create(ctx, review)).To(Succeed())
		return review.Status.Allowed
	}
	// issued returns the certificate in Secret
	// cluster-proxy-service-proxy-server-cert, checked against the CA in the
	// chart's signer Secret.
	issued := func(ctx context.Context) error {
		s := &corev1.Secret{}
		if err := get(ctx, proxyv1alpha1.ServiceProxyCertSecretName, s); err != nil {
			return err
		}
		caSecret := &corev1.Secret{}
		if err := get(ctx, signerSecretName, caSecret); err != nil {
			return err
		}
		if s.Type != corev1.SecretTypeTLS {
			return fmt.Errorf("Secret %s has type %s", s.Name, s.Type)
		}
		if len(s.Data[corev1.TLSPrivateKeyKey]) == 0 {
			return fmt.Errorf("Secret %s has no %s", s.Name, corev1.TLSPrivateKeyKey)
		}
		if string(s.Data[proxyv1alpha1.CASecretKey]) != string(caSecret.Data[signer.CertKey]) {
			return fmt.Errorf("the %s of Secret %s is not the CA's", proxyv1alpha1.CASecretKey, s.Name)
		}
		cert, err := certs.ParseCertificate(s.Data[corev1.TLSCertKey])
		if err != nil {
			return err
		}
		ca, err := certs.ParseCA(caSecret.Data[signer.CertKey], caSecret.Data[signer.KeyKey])
		if err != nil {
			return err
		}
		return cert.CheckSignatureFrom(ca.Cert)
	}
	// start runs the built binary as the chart's controllers container does
	// (its arguments and environment), with the ServiceAccount's kubeconfig
	// and the health and metrics endpoints on free loopback ports, and waits
	// until the probes' paths answer.
	start := func(ctx context.Context, name string) *framework.Process {
		container := containerNamed(deployment, "controllers")
		Expect(container.Command).To(Equal([]string{"/cluster-proxy"}))
		var env []string
		for _, e := range container.Env {
			switch {
			case e.ValueFrom == nil:
				env = append(env, e.Name+"="+e.Value)
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
				env = append(env, e.Name+"="+deployment.Namespace)
			default:
				Fail("the test cannot resolve environment variable " + e.Name)
			}
		}
		Expect(env).To(ContainElement("POD_NAMESPACE=" + releaseNamespace))
		healthPort, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		metricsPort, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		args := append(append([]string{}, container.Args...),
			"--kubeconfig="+userKubeconfig,
			fmt.Sprintf("--health-probe-addr=127.0.0.1:%d", healthPort),
			fmt.Sprintf("--metrics-addr=127.0.0.1:%d", metricsPort),
		)
		p, err := framework.StartProcess(name, binary, args, env, logDir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(p.Stop)
		for _, probe := range []*corev1.Probe{container.LivenessProbe, container.ReadinessProbe} {
			Expect(framework.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d%s", healthPort, probe.HTTPGet.Path), false, p)).To(Succeed(),
				"log:\n%s", p.LogTail(40))
		}
		Expect(framework.WaitHTTPOK(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), false, p)).To(Succeed(),
			"log:\n%s", p.LogTail(40))
		return p
	}
	logOf := func(p *framework.Process) string {
		data, err := os.ReadFile(p.LogPath)
		Expect(err).NotTo(HaveOccurred())
		return string(data)
	}
	// allowed wraps a polled check of the binary's work: it stops the
	// polling at once when the binary logs that something was forbidden.
	allowed := func(p *framework.Process, check func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			if strings.Contains(strings.ToLower(logOf(p)), "forbidden") {
				return StopTrying("the chart's Role does not grant all the command does; log:\n" + p.LogTail(40))
			}
			return check(ctx)
		}
	}

	BeforeAll(func(ctx SpecContext) {
		var err error
		binary, err = framework.BuildBinary("./cmd/cluster-proxy", "cluster-proxy")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, filepath.Dir(binary))

		ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		hub, err = framework.StartAPIServer(ocmCRDs)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(hub.Stop)
		logDir = GinkgoT().TempDir()
		kubeconfig = filepath.Join(logDir, "admin.kubeconfig")
		Expect(os.WriteFile(kubeconfig, hub.KubeConfig, 0o600)).To(Succeed())

		scheme := runtime.NewScheme()
		Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
		c, err = client.New(hub.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		clientset, err = kubernetes.NewForConfig(hub.Config)
		Expect(err).NotTo(HaveOccurred())
	})

	It("installs Deployment cluster-proxy-addon-user with its ServiceAccount, Role and RoleBinding", func(ctx SpecContext) {
		_, err := helmAt(ctx, "install", releaseName, chartDir, "--create-namespace", "--set", "enableServiceProxy=true")
		Expect(err).NotTo(HaveOccurred())

		Expect(get(ctx, userName, &corev1.ServiceAccount{})).To(Succeed())
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", &rbacv1.Role{})).To(Succeed())
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", &rbacv1.RoleBinding{})).To(Succeed())
		deployment = &appsv1.Deployment{}
		Expect(get(ctx, userName, deployment)).To(Succeed())
		Expect(deployment.Spec.Template.Spec.ServiceAccountName).To(Equal(userName))
		manager := &appsv1.Deployment{}
		Expect(get(ctx, "cluster-proxy-addon-manager", manager)).To(Succeed())
		Expect(containerNamed(manager, "manager").Args).To(ContainElement("--enable-service-proxy=true"))

		By("nothing has created the CA yet: no addon-manager runs here")
		Expect(get(ctx, signerSecretName, &corev1.Secret{})).To(Satisfy(apierrors.IsNotFound))
		Expect(get(ctx, proxyv1alpha1.ServiceProxyCertSecretName, &corev1.Secret{})).To(Satisfy(apierrors.IsNotFound))

		By("a token of the Deployment's ServiceAccount from the TokenRequest API")
		tr, err := clientset.CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, deployment.Spec.Template.Spec.ServiceAccountName,
			&authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		data, err := framework.KubeconfigFor(&rest.Config{
			Host: hub.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: hub.Config.CAData}, BearerToken: tr.Status.Token,
		})
		Expect(err).NotTo(HaveOccurred())
		userKubeconfig = filepath.Join(logDir, "addon-user.kubeconfig")
		Expect(os.WriteFile(userKubeconfig, data, 0o600)).To(Succeed())
		// The authorizer sees the RoleBinding a moment after it is created:
		// wait until it grants the Role's first permission (whether the Role
		// grants enough is for the binary to show).
		role := &rbacv1.Role{}
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", role)).To(Succeed())
		Expect(role.Rules).NotTo(BeEmpty())
		first := role.Rules[0]
		Expect(first.APIGroups).NotTo(BeEmpty())
		Expect(first.Resources).NotTo(BeEmpty())
		Expect(first.Verbs).NotTo(BeEmpty())
		Eventually(userCan).WithContext(ctx).WithArguments(first.Verbs[0], first.APIGroups[0], first.Resources[0]).
			WithTimeout(timeout).WithPolling(interval).Should(BeTrue(), "RoleBinding open-cluster-management:cluster-proxy:addon-user takes effect")
	})

	It("runs the real cluster-proxy controllers under the chart's RBAC: the CA, the certificate and the lease, nothing forbidden", func(ctx SpecContext) {
		p := start(ctx, "controllers")

		By("creating the missing CA and issuing the certificate signed by it")
		Eventually(allowed(p, issued)).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed(), "log:\n%s", p.LogTail(40))
		caSecret := &corev1.Secret{}
		Expect(get(ctx, signerSecretName, caSecret)).To(Succeed())
		Expect(caSecret.Data).To(And(HaveKey(signer.CertKey), HaveKey(signer.KeyKey)))
		cert := &corev1.Secret{}
		Expect(get(ctx, proxyv1alpha1.ServiceProxyCertSecretName, cert)).To(Succeed())
		Expect(cert.Data).To(And(HaveKey(corev1.TLSCertKey), HaveKey(corev1.TLSPrivateKeyKey)))

		By("holding the leader lease in POD_NAMESPACE")
		lease := &coordinationv1.Lease{}
		Expect(get(ctx, servicecert.LeaderElectionID, lease)).To(Succeed())
		Expect(lease.Spec.HolderIdentity).To(HaveValue(Not(BeEmpty())))
		Expect(logOf(p)).To(And(ContainSubstring("Successfully acquired lease"), ContainSubstring(releaseNamespace+"/"+servicecert.LeaderElectionID)))
		By("recording the election as an Event")
		Eventually(allowed(p, func(ctx context.Context) error {
			events := &corev1.EventList{}
			if err := c.List(ctx, events, client.InNamespace(releaseNamespace)); err != nil {
				return err
			}
			for _, e := range events.Items {
				if e.InvolvedObject.Kind == "Lease" && e.InvolvedObject.Name == servicecert.LeaderElectionID && e.Reason == "LeaderElection" {
					return nil
				}
			}
			return fmt.Errorf("no LeaderElection Event about Lease %s among %d Events", servicecert.LeaderElectionID, len(events.Items))
		})).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed(), "log:\n%s", p.LogTail(40))

		By("reissuing when the CA changes: updating the certificate Secret")
		ca, err := certs.NewCA(certs.CACommonName, time.Now(), certs.CAValidity)
		Expect(err).NotTo(HaveOccurred())
		caSecret.Data = map[string][]byte{signer.CertKey: ca.CertPEM, signer.KeyKey: ca.KeyPEM}
		Expect(c.Update(ctx, caSecret)).To(Succeed())
		Eventually(allowed(p, issued)).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed(), "log:\n%s", p.LogTail(40))
		Expect(get(ctx, proxyv1alpha1.ServiceProxyCertSecretName, cert)).To(Succeed())
		Expect(string(cert.Data[proxyv1alpha1.CASecretKey])).To(Equal(string(ca.CertPEM)))

		Expect(p.Stop()).To(Succeed())
		Expect(p.ExitError()).NotTo(HaveOccurred(), "log:\n%s", p.LogTail(40))
		Expect(strings.ToLower(logOf(p))).NotTo(ContainSubstring("forbidden"), "the chart's Role grants all the command does")
	})

	It("cannot keep the certificate without the chart's RoleBinding: the same binary is forbidden and writes no Secret", func(ctx SpecContext) {
		Expect(c.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{
			Namespace: releaseNamespace, Name: "open-cluster-management:cluster-proxy:addon-user",
		}})).To(Succeed())
		Expect(c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: releaseNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName,
		}})).To(Succeed())
		Eventually(userCan).WithContext(ctx).WithArguments("create", "", "secrets").WithTimeout(timeout).WithPolling(interval).Should(BeFalse(),
			"the RoleBinding's deletion takes effect")

		p := start(ctx, "controllers-unbound")
		// klog quotes the error, escaping its quotes.
		forbidden := `is forbidden: User \\?"` + regexp.QuoteMeta("system:serviceaccount:"+releaseNamespace+":"+userName) + `\\?" cannot`
		Eventually(func() string { return logOf(p) }).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).
			Should(MatchRegexp(forbidden))
		Consistently(func() error {
			return get(ctx, proxyv1alpha1.ServiceProxyCertSecretName, &corev1.Secret{})
		}).WithContext(ctx).WithTimeout(negativeWait).WithPolling(interval).Should(Satisfy(apierrors.IsNotFound))
		Expect(logOf(p)).NotTo(ContainSubstring("Successfully acquired lease"))
		Expect(p.Stop()).To(Succeed())
	})

	It("removes the addon-user objects when switched off", func(ctx SpecContext) {
		_, err := helmAt(ctx, "upgrade", releaseName, chartDir, "--reuse-values", "--set", "enableServiceProxy=false")
		Expect(err).NotTo(HaveOccurred())
		for _, o := range []struct {
			name string
			obj  client.Object
		}{
			{userName, &appsv1.Deployment{}},
			{userName, &corev1.ServiceAccount{}},
			{"open-cluster-management:cluster-proxy:addon-user", &rbacv1.Role{}},
		} {
			Eventually(func() error { return get(ctx, o.name, o.obj) }).WithContext(ctx).WithTimeout(timeout).
				Should(Satisfy(apierrors.IsNotFound), "%T %s", o.obj, o.name)
		}
		manager := &appsv1.Deployment{}
		Expect(get(ctx, "cluster-proxy-addon-manager", manager)).To(Succeed())
		Expect(containerNamed(manager, "manager").Args).To(ContainElement("--enable-service-proxy=false"))
	})
})
