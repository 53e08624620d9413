package serviceproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// The streaming specs use client-go as kubectl does, with the service-proxy
// as the server: a rest.Config whose Host is the service-proxy, with the
// proxy-client certificate and the Cluster-Proxy-* headers the user-server
// adds. The managed kube-apiserver answers; for exec, logs and port-forward
// it calls the node's kubelet, here framework.Kubelet.
const (
	// appPod runs on the stand-in kubelet's node, in teamNamespace.
	appPod = "app"
	// appContainer is appPod's container.
	appContainer = "main"
	// streamTimeout bounds one streaming spec.
	streamTimeout = 60 * time.Second
	// payloadSize is how many random bytes go through exec and
	// port-forward: more than one SPDY or WebSocket frame.
	payloadSize = 256 << 10
)

// headerTransport adds headers to every request, as the user-server does.
type headerTransport struct {
	headers http.Header
	next    http.RoundTripper
}

func (t *headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for name, values := range t.headers {
		req.Header[name] = values
	}
	return t.next.RoundTrip(req)
}

// proxiedConfig reaches the managed kube-apiserver through the suite's
// service-proxy with token.
func proxiedConfig(token string) *rest.Config {
	return &rest.Config{
		Host:        "https://" + address,
		BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{
			ServerName: "localhost", CAData: caPEM, CertData: proxyClientPEM, KeyData: proxyClientKeyPEM,
		},
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper {
			return &headerTransport{headers: kubeHeaders(), next: rt}
		},
	}
}

// streamingIdentity is a caller of the streaming specs.
type streamingIdentity struct {
	// name says who it is; config reaches the service-proxy with its token.
	name   string
	config *rest.Config
}

func (id streamingIdentity) client() kubernetes.Interface {
	GinkgoHelper()
	c, err := kubernetes.NewForConfig(id.config)
	Expect(err).NotTo(HaveOccurred())
	return c
}

// randomPayload returns payloadSize random bytes.
func randomPayload() []byte {
	GinkgoHelper()
	b := make([]byte, payloadSize)
	_, err := rand.Read(b)
	Expect(err).NotTo(HaveOccurred())
	return b
}

// expectForbidden checks that err is the managed kube-apiserver's 403 for
// the reader service account (whose token passes authentication but whose
// RBAC lacks the permission), naming the resource and verb.
func expectForbidden(err error, verb, resource string) {
	GinkgoHelper()
	Expect(err).To(HaveOccurred())
	Expect(err.Error()).To(ContainSubstring(`User "system:serviceaccount:%s:reader" cannot %s resource "%s"`, teamNamespace, verb, resource))
}

// startPodPort starts what listens on a port of appPod (the stand-in
// kubelet forwards to 127.0.0.1:<port>): it greets each connection with a
// line, then echoes every byte back.
func startPodPort() int {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Close)
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				if _, err := io.WriteString(conn, podGreeting); err != nil {
					return
				}
				_, _ = io.Copy(conn, conn)
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// podGreeting is the first line appPod's port sends.
const podGreeting = "hello from " + appPod + "\n"

var _ = Describe("kubectl's streaming requests through the service-proxy", Label("serviceproxy", "streaming"), Ordered, ContinueOnFailure, func() {
	var (
		kubelet    *framework.Kubelet
		podPort    int
		identities []streamingIdentity
		// reader may get pods in teamNamespace but none of the
		// subresources, nor ConfigMaps.
		reader streamingIdentity
	)

	BeforeAll(func(ctx SpecContext) {
		var err error
		kubelet, err = framework.StartKubelet(ctx, managedClient, "node-1")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(kubelet.Stop)
		Expect(kubelet.RunPod(ctx, managedClient, teamNamespace, appPod, nil)).To(Succeed())
		podPort = startPodPort()

		By("letting a managed and a hub service account exec, port-forward, read logs and watch ConfigMaps in " + teamNamespace)
		_, err = managedClient.RbacV1().Roles(teamNamespace).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "operator"},
			Rules: []rbacv1.PolicyRule{
				// As the "edit" role grants them: WebSocket upgrades are GETs,
				// which the kube-apiserver authorises as get and create.
				{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/portforward"}, Verbs: []string{"get", "create"}},
				{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"list", "watch"}},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = managedClient.RbacV1().RoleBindings(teamNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "operators"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "operator"},
			Subjects: []rbacv1.Subject{
				{Kind: rbacv1.ServiceAccountKind, Name: "operator", Namespace: teamNamespace},
				{Kind: rbacv1.UserKind, Name: "cluster:hub:system:serviceaccount:" + hubNamespace + ":hub-operator"},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		identities = []streamingIdentity{
			{name: "a managed service account (token forwarded)", config: proxiedConfig(serviceAccountToken(ctx, managedClient, teamNamespace, "operator"))},
			{name: "a hub service account (impersonated)", config: proxiedConfig(serviceAccountToken(ctx, hubClient, hubNamespace, "hub-operator"))},
		}
		reader = streamingIdentity{name: "reader", config: proxiedConfig(managedToken)}
	})

	execRequest := func(id streamingIdentity, cmd ...string) *rest.Request {
		return id.client().CoreV1().RESTClient().Post().
			Resource("pods").Namespace(teamNamespace).Name(appPod).SubResource("exec").
			VersionedParams(&corev1.PodExecOptions{Container: appContainer, Command: cmd, Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	}
	spdyExecutor := func(id streamingIdentity, cmd ...string) remotecommand.Executor {
		GinkgoHelper()
		e, err := remotecommand.NewSPDYExecutor(id.config, http.MethodPost, execRequest(id, cmd...).URL())
		Expect(err).NotTo(HaveOccurred())
		return e
	}
	webSocketExecutor := func(id streamingIdentity, cmd ...string) remotecommand.Executor {
		GinkgoHelper()
		e, err := remotecommand.NewWebSocketExecutor(id.config, http.MethodGet, execRequest(id, cmd...).URL().String())
		Expect(err).NotTo(HaveOccurred())
		return e
	}

	// deniedVerb is the verb the kube-apiserver names when it refuses the
	// upgrade request: create for SPDY's POST, get for WebSocket's GET.
	for _, protocol := range []struct {
		name, deniedVerb string
		executor         func(streamingIdentity, ...string) remotecommand.Executor
	}{{"SPDY", "create", spdyExecutor}, {"WebSocket (v5.channel.k8s.io)", "get", webSocketExecutor}} {
		It("runs exec over "+protocol.name+": stdin reaches the command, its stdout, stderr and exit code come back", func(ctx SpecContext) {
			for _, id := range identities {
				By(id.name)
				payload := randomPayload()
				var stdout, stderr bytes.Buffer
				err := protocol.executor(id, "cat").StreamWithContext(ctx, remotecommand.StreamOptions{
					Stdin: bytes.NewReader(payload), Stdout: &stdout, Stderr: &stderr,
				})
				Expect(err).NotTo(HaveOccurred(), "stderr: %s", stderr.String())
				Expect(bytes.Equal(stdout.Bytes(), payload)).To(BeTrue(), "stdout is stdin: %d bytes came back of %d", stdout.Len(), len(payload))

				stdout.Reset()
				err = protocol.executor(id, "exit", "3", "failed", "on", "purpose").StreamWithContext(ctx, remotecommand.StreamOptions{
					Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
				})
				var exitErr exec.CodeExitError
				Expect(errors.As(err, &exitErr)).To(BeTrue(), "an exit code, not %v", err)
				Expect(exitErr.Code).To(Equal(3))
				Expect(stderr.String()).To(Equal("failed on purpose\n"))
				Expect(stdout.String()).To(BeEmpty())
			}

			By("a caller whose RBAC lacks pods/exec")
			err := protocol.executor(reader, "echo", "never").StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(""), Stdout: io.Discard})
			expectForbidden(err, protocol.deniedVerb, "pods/exec")
		}, NodeTimeout(streamTimeout))
	}

	It("reads a container's log, and follows it: a line written later arrives on the open stream", func(ctx SpecContext) {
		for i, id := range identities {
			By(id.name)
			first, later := fmt.Sprintf("first line %d\n", i), fmt.Sprintf("later line %d\n", i)
			kubelet.AppendLog(teamNamespace, appPod, appContainer, first)
			logs := id.client().CoreV1().Pods(teamNamespace)
			data, err := logs.GetLogs(appPod, &corev1.PodLogOptions{Container: appContainer}).DoRaw(ctx)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(data)).To(HaveSuffix(first))

			followCtx, cancel := context.WithCancel(ctx)
			stream, err := logs.GetLogs(appPod, &corev1.PodLogOptions{Container: appContainer, Follow: true}).Stream(followCtx)
			Expect(err).NotTo(HaveOccurred())
			lines := bufio.NewReader(stream)
			var line string
			for line != first {
				line, err = lines.ReadString('\n')
				Expect(err).NotTo(HaveOccurred())
			}
			kubelet.AppendLog(teamNamespace, appPod, appContainer, later)
			Expect(lines.ReadString('\n')).To(Equal(later))
			cancel()
			_ = stream.Close()
		}

		By("a caller whose RBAC lacks pods/log")
		// Stream, as kubectl logs does: its error carries the server's
		// message.
		_, err := reader.client().CoreV1().Pods(teamNamespace).GetLogs(appPod, &corev1.PodLogOptions{Container: appContainer}).Stream(ctx)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "forbidden, not %v", err)
		expectForbidden(err, "get", "pods/log")
	}, NodeTimeout(streamTimeout))

	It("watches ConfigMaps: changes made after the watch started arrive as ADDED and MODIFIED", func(ctx SpecContext) {
		for i, id := range identities {
			By(id.name)
			configMaps := id.client().CoreV1().ConfigMaps(teamNamespace)
			// As kubectl get --watch does: list, then watch from there.
			list, err := configMaps.List(ctx, metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred())
			w, err := configMaps.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
			Expect(err).NotTo(HaveOccurred())
			name := "watched-" + strconv.Itoa(i)
			cm, err := managedClient.CoreV1().ConfigMaps(teamNamespace).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"step": "created"},
			}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			expectEvent(ctx, w, watch.Added, name, "created")
			cm.Data["step"] = "modified"
			_, err = managedClient.CoreV1().ConfigMaps(teamNamespace).Update(ctx, cm, metav1.UpdateOptions{})
			Expect(err).NotTo(HaveOccurred())
			expectEvent(ctx, w, watch.Modified, name, "modified")
			w.Stop()
		}

		By("a caller whose RBAC lacks watch on ConfigMaps")
		_, err := reader.client().CoreV1().ConfigMaps(teamNamespace).Watch(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "forbidden, not %v", err)
		expectForbidden(err, "watch", "configmaps")
	}, NodeTimeout(streamTimeout))

	portForwardRequest := func(id streamingIdentity) *rest.Request {
		return id.client().CoreV1().RESTClient().Post().Resource("pods").Namespace(teamNamespace).Name(appPod).SubResource("portforward")
	}
	spdyDialer := func(id streamingIdentity) httpstream.Dialer {
		GinkgoHelper()
		transport, upgrader, err := spdy.RoundTripperFor(id.config)
		Expect(err).NotTo(HaveOccurred())
		return spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, portForwardRequest(id).URL())
	}
	webSocketDialer := func(id streamingIdentity) httpstream.Dialer {
		GinkgoHelper()
		d, err := portforward.NewSPDYOverWebsocketDialerForStreaming(portForwardRequest(id).URL(), id.config)
		Expect(err).NotTo(HaveOccurred())
		return d
	}

	for _, protocol := range []struct {
		name, deniedVerb string
		dialer           func(streamingIdentity) httpstream.Dialer
	}{{"SPDY", "create", spdyDialer}, {"SPDY over WebSocket (kubectl's default)", "get", webSocketDialer}} {
		It("port-forwards over "+protocol.name+": bytes flow both ways between a local port and the pod's", func(ctx SpecContext) {
			for _, id := range identities {
				By(id.name)
				local, stop := forwardPort(protocol.dialer(id), podPort)
				conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", local)
				Expect(err).NotTo(HaveOccurred())
				Expect(conn.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
				greeting := make([]byte, len(podGreeting))
				_, err = io.ReadFull(conn, greeting)
				Expect(err).NotTo(HaveOccurred())
				Expect(string(greeting)).To(Equal(podGreeting))
				payload := randomPayload()
				go func() { _, _ = conn.Write(payload) }()
				echoed := make([]byte, len(payload))
				_, err = io.ReadFull(conn, echoed)
				Expect(err).NotTo(HaveOccurred())
				Expect(bytes.Equal(echoed, payload)).To(BeTrue(), "the pod echoed what was sent")
				Expect(conn.Close()).To(Succeed())
				stop()
			}

			By("a caller whose RBAC lacks pods/portforward")
			pf, err := portforward.NewOnAddressesForStreaming(protocol.dialer(reader), []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(podPort)},
				make(chan struct{}), make(chan struct{}), GinkgoWriter, GinkgoWriter)
			Expect(err).NotTo(HaveOccurred())
			expectForbidden(pf.ForwardPorts(), protocol.deniedVerb, "pods/portforward")
		}, NodeTimeout(streamTimeout))
	}
})

// expectEvent waits for the next event of w about ConfigMap name and
// checks its type and data key "step".
func expectEvent(ctx context.Context, w watch.Interface, eventType watch.EventType, name, step string) {
	GinkgoHelper()
	for {
		var event watch.Event
		select {
		case <-ctx.Done():
			Fail(fmt.Sprintf("no %s event for ConfigMap %s: %v", eventType, name, ctx.Err()))
		case event = <-w.ResultChan():
		}
		Expect(event.Type).NotTo(BeEmpty(), "the watch ended")
		cm, ok := event.Object.(*corev1.ConfigMap)
		Expect(ok).To(BeTrue(), "a ConfigMap, not %#v", event.Object)
		if cm.Name != name {
			continue
		}
		Expect(event.Type).To(Equal(eventType))
		Expect(cm.Data).To(HaveKeyWithValue("step", step))
		return
	}
}

// forwardPort forwards a random local port on 127.0.0.1 to podPort of the
// pod dialer reaches, and returns the local address and a function that
// stops forwarding and waits until it has.
func forwardPort(dialer httpstream.Dialer, podPort int) (local string, stop func()) {
	GinkgoHelper()
	stopCh, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddressesForStreaming(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(podPort)}, stopCh, ready, GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		Fail(fmt.Sprintf("port-forward ended before it was ready: %v", err))
	case <-time.After(streamTimeout / 2):
		Fail("port-forward was not ready in time")
	}
	ports, err := pf.GetPorts()
	Expect(err).NotTo(HaveOccurred())
	Expect(ports).To(HaveLen(1))
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		close(stopCh)
		Eventually(done).WithTimeout(10 * time.Second).Should(Receive(Succeed()))
	}
	DeferCleanup(stop)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))), stop
}
