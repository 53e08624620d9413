package helm_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/userserver"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// parseUserServerArgs parses the arguments of a /cluster-proxy container
// running `user-server` with that command's own flags (none of them
// deprecated), and validates them with POD_NAMESPACE set to the release
// namespace.
func parseUserServerArgs(args []string) *userserver.Options {
	opts := userserver.NewOptions()
	fs := parseSubcommandArgs(args, "user-server", opts.AddFlags)
	fs.Visit(func(f *pflag.Flag) {
		Expect(f.Deprecated).To(BeEmpty(), "the chart passes the deprecated --%s", f.Name)
	})
	opts.PodNamespace = releaseNamespace
	Expect(opts.Validate()).To(Succeed())
	return opts
}

// userServerFileFlags are the flags of `cluster-proxy user-server` that
// name files, with their values in opts.
func userServerFileFlags(opts *userserver.Options) map[string]string {
	return map[string]string{
		"proxy-ca-cert": opts.ProxyCACert, "proxy-cert": opts.ProxyCert, "proxy-key": opts.ProxyKey,
		"server-cert": opts.ServerCert, "server-key": opts.ServerKey, "service-proxy-ca-cert": opts.ServiceProxyCACert,
	}
}

// mountedSecretFile tells which key of which Secret the file path of
// container c of pod is: the Secret volume mounted (read-only, whole) at a
// directory holding it.
func mountedSecretFile(pod corev1.PodSpec, c corev1.Container, path string) (secret, key string) {
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		if !strings.HasPrefix(path, dir) {
			continue
		}
		Expect(m.ReadOnly).To(BeTrue(), "mount %s of container %s", m.Name, c.Name)
		Expect(m.SubPath).To(BeEmpty(), "mount %s of container %s", m.Name, c.Name)
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			Expect(v.Secret).NotTo(BeNil(), "volume %s is a Secret", v.Name)
			Expect(v.Secret.Items).To(BeEmpty(), "volume %s: every key is a file of its name", v.Name)
			key := strings.TrimPrefix(path, dir)
			Expect(key).NotTo(ContainSubstring("/"), path)
			return v.Secret.SecretName, key
		}
		Fail(fmt.Sprintf("container %s mounts volume %s, which the pod does not have", c.Name, m.Name))
	}
	Fail(fmt.Sprintf("%s is on no volume of container %s", path, c.Name))
	return "", ""
}

// containerEnv resolves the environment of container c of Deployment d as
// the kubelet would: plain values and the pod's namespace.
func containerEnv(d *appsv1.Deployment, c corev1.Container) []string {
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"="+d.Namespace)
		default:
			Fail("the test cannot resolve environment variable " + e.Name)
		}
	}
	return env
}

// writeMounts writes under root what the kubelet would mount into container
// c of Deployment d: for each mount of a Secret volume, the Secret's keys
// as files in root+mountPath. It fails when a Secret is missing.
func writeMounts(ctx context.Context, cl client.Client, d *appsv1.Deployment, c corev1.Container, root string) {
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		Expect(i).NotTo(Equal(-1), "volume %s", m.Name)
		v := d.Spec.Template.Spec.Volumes[i]
		Expect(v.Secret).NotTo(BeNil(), "volume %s is a Secret", v.Name)
		s := &corev1.Secret{}
		Expect(cl.Get(ctx, types.NamespacedName{Namespace: d.Namespace, Name: v.Secret.SecretName}, s)).To(Succeed(),
			"the Secret of volume %s", v.Name)
		dir := filepath.Join(root, m.MountPath)
		Expect(os.MkdirAll(dir, 0o700)).To(Succeed())
		for k, data := range s.Data {
			Expect(os.WriteFile(filepath.Join(dir, k), data, 0o600)).To(Succeed())
		}
	}
}

// writeAddonManagerSecrets creates, in the proxy-server namespace of mpc,
// the Secrets the addon-manager keeps there for clients of the
// proxy-servers and, with spec.userServer, for the user-server, issued by
// ca: their names, types, keys and the certificates' names and usages as
// internal/proxyconfig writes them.
func writeAddonManagerSecrets(ctx context.Context, cl client.Client, ca *certs.CA, mpc *proxyv1alpha1.ManagedProxyConfiguration) {
	mpc = mpc.DeepCopy()
	mpc.Default()
	Expect(mpc.Spec.UserServer).NotTo(BeNil(), "the configuration asks for the user-server's certificate")
	ns := mpc.Spec.ProxyServer.Namespace
	svc := proxyconfig.UserServerServiceName
	now := time.Now()
	tlsSecret := func(name string, spec certs.LeafSpec) *corev1.Secret {
		certPEM, keyPEM, err := ca.Issue(spec, now)
		Expect(err).NotTo(HaveOccurred())
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, "ca.crt": ca.CertPEM},
		}
	}
	for _, s := range []*corev1.Secret{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: proxyv1alpha1.CASecretName},
			Type:       corev1.SecretTypeOpaque,
			Data:       map[string][]byte{proxyv1alpha1.CASecretKey: ca.CertPEM},
		},
		tlsSecret(mpc.Spec.Authentication.Dump.Secrets.SigningProxyClientSecretName, certs.LeafSpec{
			CommonName: "cluster-proxy-proxy-client", Usage: certs.UsageClient,
		}),
		tlsSecret(proxyconfig.UserServerSecretName, certs.LeafSpec{
			CommonName: "cluster-proxy-user-server", Usage: certs.UsageServing,
			SANs: append(slices.Clone(mpc.Spec.UserServer.AdditionalSANs),
				"127.0.0.1", "localhost", svc, svc+"."+ns, svc+"."+ns+".svc", svc+"."+ns+".svc.cluster.local"),
		}),
	} {
		Expect(cl.Create(ctx, s)).To(Succeed(), "Secret %s", s.Name)
	}
}

// overrideFlags returns args with the value of each --<flag>=<value> of
// with replaced; each must be there exactly once.
func overrideFlags(args []string, with map[string]string) []string {
	out := slices.Clone(args)
	for flag, value := range with {
		n := 0
		for i, a := range out {
			if strings.HasPrefix(a, "--"+flag+"=") {
				out[i] = "--" + flag + "=" + value
				n++
			}
		}
		Expect(n).To(Equal(1), "the chart passes --%s once", flag)
	}
	return out
}

// httpsGet sends GET url, trusting only caPEM, and returns the status code
// and the message of the Kubernetes Status it answers with (or the body).
func httpsGet(ctx context.Context, caPEM []byte, url string) (int, string, error) {
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(caPEM)).To(BeTrue())
	transport := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}}
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return 0, "", err
	}
	var status metav1.Status
	if err := json.Unmarshal(body, &status); err == nil && status.Kind == "Status" {
		return resp.StatusCode, status.Message, nil
	}
	return resp.StatusCode, string(body), nil
}

// eventsAbout lists the core/v1 Events of the release namespace about the
// object of kind and name.
func eventsAbout(ctx context.Context, cl client.Client, kind, name string) ([]corev1.Event, error) {
	events := &corev1.EventList{}
	if err := cl.List(ctx, events, client.InNamespace(releaseNamespace)); err != nil {
		return nil, err
	}
	var out []corev1.Event
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.InvolvedObject.Namespace == releaseNamespace {
			out = append(out, e)
		}
	}
	return out, nil
}

// httpCode sends GET url (plain HTTP, a health endpoint) and returns the
// status code, 0 when there is no answer.
func httpCode(ctx context.Context, url string) int {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	Expect(err).NotTo(HaveOccurred())
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// describeEvents lists Events as "<type> <reason>: <message>", for failure
// messages.
func describeEvents(events []corev1.Event) string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		out = append(out, fmt.Sprintf("%s %s: %s", e.Type, e.Reason, e.Message))
	}
	return fmt.Sprintf("%q", out)
}
