package helm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
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
	"open-cluster-management.io/cluster-proxy/internal/userserver"
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

// parseSubcommandArgs parses the arguments of a /cluster-proxy container
// running subcommand with that command's own flags (bound by addFlags) and
// returns the flag set.
func parseSubcommandArgs(args []string, subcommand string, addFlags func(*pflag.FlagSet)) *pflag.FlagSet {
	Expect(args).NotTo(BeEmpty())
	Expect(args[0]).To(Equal(subcommand))
	fs := pflag.NewFlagSet(subcommand, pflag.ContinueOnError)
	addFlags(fs)
	Expect(fs.Parse(args[1:])).To(Succeed())
	Expect(fs.Args()).To(BeEmpty(), "the command takes no positional arguments")
	return fs
}

// parseControllersArgs parses the arguments of a /cluster-proxy container
// running `controllers` with that command's own flags, and validates them
// with POD_NAMESPACE set to the release namespace.
func parseControllersArgs(args []string) *servicecert.Options {
	opts := servicecert.NewOptions()
	parseSubcommandArgs(args, "controllers", opts.AddFlags)
	opts.PodNamespace = releaseNamespace
	Expect(opts.Validate()).To(Succeed())
	return opts
}

var _ = Describe("Installing the chart with enableServiceProxy=true and userServer.enabled=true", Ordered, Label("helm", "install", "service-proxy", "user-server"), func() {
	const (
		// negativeWait is how long the unbound binary is watched not writing
		// the certificate, and the user-server without its ConfigMaps rule
		// not becoming ready.
		negativeWait = 3 * time.Second
		// userServerWait bounds the user-server's start and each of its
		// reactions.
		userServerWait = 20 * time.Second
		// exposedServicesName is the exposedServicesConfigMapName installed
		// (not the default, which the command would read without the flag).
		exposedServicesName = "allowed-services"
		// notListed is a Service path of cluster1 the installed list does
		// not name, listed one it names (past the list, a request needs a
		// proxy-server, which does not run here).
		notListed = "/cluster1/api/v1/namespaces/default/services/http:not-listed:80/proxy-service/"
		listed    = "/cluster1/api/v1/namespaces/monitoring/services/https:prometheus-k8s:9091/proxy-service/metrics"
		// otherPort is the listed Service on a port the list does not name.
		otherPort = "/cluster1/api/v1/namespaces/monitoring/services/https:prometheus-k8s:9090/proxy-service/metrics"
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
		env := containerEnv(deployment, container)
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

	// userServerRun is a user-server the test started: its process, the
	// loopback ports it serves on (HTTPS and health) and the unused port its
	// --port names.
	type userServerRun struct {
		p                                *framework.Process
		serverPort, healthPort, noServer int
	}
	// startUserServer runs the built binary as the chart's user-server
	// container does: its arguments and environment, the files of its
	// Secret volumes written under a directory of its own (the Secrets read
	// from the API, as the kubelet mounts them), the ServiceAccount's
	// kubeconfig. The test changes only the addresses: --host and --port
	// name an unused loopback port (the user-server dials the proxy-server
	// on a request's first need), --server-port and --health-bind-address
	// free loopback ports; and the drain is short.
	startUserServer := func(ctx context.Context, name string) userServerRun {
		container := containerNamed(deployment, "user-server")
		Expect(container.Command).To(Equal([]string{"/cluster-proxy"}))
		opts := parseUserServerArgs(container.Args)
		root := filepath.Join(logDir, name+"-files")
		writeMounts(ctx, c, deployment, container, root)
		with := map[string]string{}
		for flag, path := range userServerFileFlags(opts) {
			_, err := os.Stat(filepath.Join(root, path))
			Expect(err).NotTo(HaveOccurred(), "--%s names a key of its Secret", flag)
			with[flag] = filepath.Join(root, path)
		}
		var run userServerRun
		for _, port := range []*int{&run.serverPort, &run.healthPort, &run.noServer} {
			var err error
			*port, err = framework.FreeLoopbackPort()
			Expect(err).NotTo(HaveOccurred())
		}
		with["host"] = "127.0.0.1"
		with["port"] = strconv.Itoa(run.noServer)
		with["server-port"] = strconv.Itoa(run.serverPort)
		args := append(overrideFlags(container.Args, with),
			"--kubeconfig="+userKubeconfig,
			fmt.Sprintf("--health-bind-address=127.0.0.1:%d", run.healthPort),
			"--min-drain-duration=0s", "--drain-timeout=5s",
		)
		env := containerEnv(deployment, container)
		Expect(env).To(ContainElement("POD_NAMESPACE=" + releaseNamespace))
		var err error
		run.p, err = framework.StartProcess(name, binary, args, env, logDir)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(run.p.Stop)
		return run
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
		Expect(proxyv1alpha1.AddToScheme(scheme)).To(Succeed())
		c, err = client.New(hub.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		clientset, err = kubernetes.NewForConfig(hub.Config)
		Expect(err).NotTo(HaveOccurred())
	})

	It("installs Deployment cluster-proxy-addon-user (controllers and user-server) with its ServiceAccount, Role, RoleBinding, Service and exposed-services ConfigMap", func(ctx SpecContext) {
		_, err := helmAt(ctx, append([]string{"install", releaseName, chartDir, "--create-namespace",
			"--set", "exposedServicesConfigMapName=" + exposedServicesName}, userServerValues()...)...)
		Expect(err).NotTo(HaveOccurred())

		Expect(get(ctx, userName, &corev1.ServiceAccount{})).To(Succeed())
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", &rbacv1.Role{})).To(Succeed())
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", &rbacv1.RoleBinding{})).To(Succeed())
		Expect(get(ctx, userName, &corev1.Service{})).To(Succeed())
		cm := &corev1.ConfigMap{}
		Expect(get(ctx, exposedServicesName, cm)).To(Succeed())
		list, err := userserver.ParseAllowlist(cm.Data)
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Len()).To(Equal(len(exposedServices)))
		deployment = &appsv1.Deployment{}
		Expect(get(ctx, userName, deployment)).To(Succeed())
		Expect(deployment.Spec.Template.Spec.ServiceAccountName).To(Equal(userName))
		Expect(deployment.Spec.Template.Spec.Containers).To(HaveLen(2))
		Expect(parseUserServerArgs(containerNamed(deployment, "user-server").Args).ExposedServicesConfigMap).To(Equal(exposedServicesName))
		manager := &appsv1.Deployment{}
		Expect(get(ctx, "cluster-proxy-addon-manager", manager)).To(Succeed())
		Expect(containerNamed(manager, "manager").Args).To(ContainElement("--enable-service-proxy=true"))
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(c.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
		Expect(mpc.Spec.UserServer).To(Equal(&proxyv1alpha1.UserServerConfiguration{AdditionalSANs: userServerSANs}))

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
		Expect(userCan(ctx, "watch", "", "configmaps")).To(BeTrue(), "the user-server's rule")
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

	It("runs the real cluster-proxy user-server under the chart's RBAC: ready, the chart's exposed services loaded, Services not listed denied, a broken edit reported, nothing forbidden", func(ctx SpecContext) {
		By("the Secrets the addon-manager would write for the configuration, issued by the CA the controllers created")
		caSecret := &corev1.Secret{}
		Expect(get(ctx, signerSecretName, caSecret)).To(Succeed())
		ca, err := certs.ParseCA(caSecret.Data[signer.CertKey], caSecret.Data[signer.KeyKey])
		Expect(err).NotTo(HaveOccurred())
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(c.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
		writeAddonManagerSecrets(ctx, c, ca, mpc)

		run := startUserServer(ctx, "user-server")
		p := run.p
		container := containerNamed(deployment, "user-server")
		waitCtx, cancel := context.WithTimeout(ctx, userServerWait)
		defer cancel()
		for _, probe := range []*corev1.Probe{container.ReadinessProbe, container.LivenessProbe} {
			Expect(framework.WaitHTTPOK(waitCtx, fmt.Sprintf("http://127.0.0.1:%d%s", run.healthPort, probe.HTTPGet.Path), false, p)).To(Succeed(),
				"log:\n%s", p.LogTail(40))
		}

		By("reading the chart's exposed-services ConfigMap: logged and recorded as a Normal Event on it")
		entries := len(exposedServices)
		Eventually(func() string { return logOf(p) }).WithContext(ctx).WithTimeout(userServerWait).WithPolling(interval).Should(MatchRegexp(
			`"Exposed-services list loaded".*configMap="%s/%s".*entries=%d`, releaseNamespace, exposedServicesName, entries))
		Eventually(allowed(p, func(ctx context.Context) error {
			events, err := eventsAbout(ctx, c, "ConfigMap", exposedServicesName)
			if err != nil {
				return err
			}
			for _, e := range events {
				if e.Type == corev1.EventTypeNormal && e.Reason == userserver.ReasonAllowlistLoaded &&
					e.Message == fmt.Sprintf("Exposed-services list loaded: %d entries", entries) {
					return nil
				}
			}
			return fmt.Errorf("no Normal %s Event about ConfigMap %s among %s", userserver.ReasonAllowlistLoaded, exposedServicesName, describeEvents(events))
		})).WithContext(ctx).WithTimeout(userServerWait).WithPolling(interval).Should(Succeed(), "log:\n%s", p.LogTail(40))

		By("answering over HTTPS with the serving certificate of its Secret")
		base := fmt.Sprintf("https://127.0.0.1:%d", run.serverPort)
		code, msg, err := httpsGet(ctx, ca.CertPEM, base+notListed)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden), msg)
		Expect(msg).To(ContainSubstring("service default/not-listed (http, port 80) is not exposed by the user-server"))
		code, msg, err = httpsGet(ctx, ca.CertPEM, base+otherPort)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden), "the list names the port: %s", msg)
		Expect(msg).To(ContainSubstring("service monitoring/prometheus-k8s (https, port 9090) is not exposed"))
		code, msg, err = httpsGet(ctx, ca.CertPEM, base+"/Cluster_1/x")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusBadRequest), msg)
		Expect(msg).To(ContainSubstring(`invalid cluster "Cluster_1"`))
		By("a listed Service passes the list: the user-server then dials the proxy-server at --host:--port, which is not there")
		tunnelFailed := And(
			ContainSubstring(`failed to reach cluster "cluster1" through the tunnel`),
			ContainSubstring(fmt.Sprintf("127.0.0.1:%d", run.noServer)),
		)
		code, msg, err = httpsGet(ctx, ca.CertPEM, base+listed)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusBadGateway), msg)
		Expect(msg).To(tunnelFailed)

		By("a broken edit of the ConfigMap: a Warning Event naming the bad field, and the last good list stays")
		cm := &corev1.ConfigMap{}
		Expect(get(ctx, exposedServicesName, cm)).To(Succeed())
		cm.Data = map[string]string{"services": "- namespace: default\n  servcie: hello\n"}
		Expect(c.Update(ctx, cm)).To(Succeed())
		Eventually(allowed(p, func(ctx context.Context) error {
			events, err := eventsAbout(ctx, c, "ConfigMap", exposedServicesName)
			if err != nil {
				return err
			}
			for _, e := range events {
				if e.Type == corev1.EventTypeWarning && e.Reason == userserver.ReasonInvalidAllowlist {
					if !strings.Contains(e.Message, `unknown field "servcie"`) ||
						!strings.Contains(e.Message, fmt.Sprintf("the last good list (%d entries) stays in force", entries)) {
						return StopTrying("the Warning Event does not name the field and the list kept: " + e.Message)
					}
					return nil
				}
			}
			return fmt.Errorf("no Warning %s Event about ConfigMap %s among %s", userserver.ReasonInvalidAllowlist, exposedServicesName, describeEvents(events))
		})).WithContext(ctx).WithTimeout(userServerWait).WithPolling(interval).Should(Succeed(), "log:\n%s", p.LogTail(40))
		Expect(logOf(p)).To(ContainSubstring("The exposed-services ConfigMap is invalid; keeping the last good list"))
		code, msg, err = httpsGet(ctx, ca.CertPEM, base+listed)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusBadGateway), "the last good list still lists it: %s", msg)
		Expect(msg).To(tunnelFailed)
		code, _, err = httpsGet(ctx, ca.CertPEM, base+notListed)
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusForbidden))

		Expect(p.Stop()).To(Succeed())
		Expect(p.ExitError()).NotTo(HaveOccurred(), "log:\n%s", p.LogTail(40))
		Expect(strings.ToLower(logOf(p))).NotTo(ContainSubstring("forbidden"), "the chart's Role grants all the command does")
	})

	It("cannot serve without the Role's ConfigMaps rule: the same user-server is forbidden to read the exposed services and never becomes ready", func(ctx SpecContext) {
		role := &rbacv1.Role{}
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", role)).To(Succeed())
		kept := slices.DeleteFunc(slices.Clone(role.Rules), func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "configmaps") })
		Expect(kept).To(HaveLen(len(role.Rules)-1), "one rule grants the ConfigMaps")
		role.Rules = kept
		Expect(c.Update(ctx, role)).To(Succeed())
		Eventually(userCan).WithContext(ctx).WithArguments("list", "", "configmaps").WithTimeout(timeout).WithPolling(interval).Should(BeFalse(),
			"the Role's change takes effect")
		Expect(userCan(ctx, "create", "", "events")).To(BeTrue(), "the rest of the Role stands")

		run := startUserServer(ctx, "user-server-no-configmaps")
		p := run.p
		// klog quotes the error, escaping its quotes; the list names the
		// one ConfigMap it selects.
		forbidden := `configmaps \\?"` + exposedServicesName + `\\?" is forbidden: User \\?"` +
			regexp.QuoteMeta("system:serviceaccount:"+releaseNamespace+":"+userName) + `\\?" cannot list resource \\?"configmaps\\?"`
		Eventually(func() string { return logOf(p) }).WithContext(ctx).WithTimeout(userServerWait).WithPolling(interval).
			Should(MatchRegexp(forbidden))
		readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", run.healthPort)
		Consistently(func() int { return httpCode(ctx, readyz) }).WithContext(ctx).WithTimeout(negativeWait).WithPolling(interval).
			ShouldNot(Equal(http.StatusOK), "log:\n%s", p.LogTail(40))
		Expect(p.ExitError()).To(MatchError(ContainSubstring("still running")), "it waits for the ConfigMap, not ready")
		Expect(logOf(p)).NotTo(ContainSubstring("Exposed-services list loaded"))
		// Stop takes its 10 s: waiting for the ConfigMap, the user-server
		// does not end on SIGTERM (userserver.Run waits for the first list
		// on a context the signal does not cancel), so SIGKILL ends it.
		Expect(p.Stop()).To(Succeed())
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

	It("refuses to switch the service-proxy off under the user-server, naming the value, then removes the user-server's objects, then the addon-user's", func(ctx SpecContext) {
		revision := func() int {
			out, err := helmAt(ctx, "status", releaseName, "--output", "json")
			Expect(err).NotTo(HaveOccurred())
			var s releaseStatus
			Expect(json.Unmarshal([]byte(out), &s)).To(Succeed())
			Expect(s.Info.Status).To(Equal("deployed"))
			return s.Version
		}
		Expect(revision()).To(Equal(1))
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--set", "enableServiceProxy=false"}, userServerNeedsServiceProxy},
			{[]string{"--set", "userServer.enabled=false"}, sansNeedUserServer},
			{[]string{"--set", "userServer.enabled=false", "--set-json", "userServer.additionalSANs=[]"}, exposedServicesNeedUserServer},
		} {
			_, err := helmAt(ctx, append([]string{"upgrade", releaseName, chartDir, "--reuse-values"}, c.args...)...)
			Expect(err).To(MatchError(ContainSubstring(c.want)), "%v", c.args)
			Expect(revision()).To(Equal(1), "a refused upgrade leaves the release as it was")
		}

		By("the user-server off: its Service and ConfigMap go, the Deployment keeps the controllers")
		_, err := helmAt(ctx, "upgrade", releaseName, chartDir, "--reuse-values",
			"--set", "userServer.enabled=false", "--set-json", "userServer.additionalSANs=[]", "--set-json", "exposedServices=[]")
		Expect(err).NotTo(HaveOccurred())
		Expect(revision()).To(Equal(2))
		for _, o := range []struct {
			name string
			obj  client.Object
		}{
			{userName, &corev1.Service{}},
			{exposedServicesName, &corev1.ConfigMap{}},
		} {
			Eventually(func() error { return get(ctx, o.name, o.obj) }).WithContext(ctx).WithTimeout(timeout).
				Should(Satisfy(apierrors.IsNotFound), "%T %s", o.obj, o.name)
		}
		d := &appsv1.Deployment{}
		Expect(get(ctx, userName, d)).To(Succeed())
		Expect(d.Spec.Template.Spec.Containers).To(ConsistOf(HaveField("Name", "controllers")))
		Expect(d.Spec.Template.Spec.Volumes).To(BeEmpty())
		role := &rbacv1.Role{}
		Expect(get(ctx, "open-cluster-management:cluster-proxy:addon-user", role)).To(Succeed())
		for _, g := range grants(role.Rules) {
			Expect(g.resource).NotTo(Equal("configmaps"), "the Role keeps no ConfigMaps rule without the user-server")
		}
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(c.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
		Expect(mpc.Spec.UserServer).To(BeNil())

		By("the service-proxy off: the addon-user objects go")
		_, err = helmAt(ctx, "upgrade", releaseName, chartDir, "--reuse-values", "--set", "enableServiceProxy=false")
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
