package kubelet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"open-cluster-management.io/cluster-proxy/test/framework"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// The test's names and addresses: namespaces start with cpx-t-, addresses
// come from 198.18.200.0/24.
const (
	testNamespace  = "cpx-t-app"
	nodeName       = "cpx-t-node"
	nodeNetns      = "cpx-t-node"
	podNetnsPrefix = "cpx-t-p-"
	bridgeName     = "pods"
	subnet         = "198.18.200"
	gateway        = subnet + ".1"
	testImage      = "example.com/cpx-t/testserver"
	secretDir      = "/etc/cpx-t-kubelet/secret"
	scratchDir     = "/etc/cpx-t-kubelet/scratch"
	tokenPath      = "/var/run/secrets/kubernetes.io/serviceaccount/token"
)

// TestMain lets the test binary serve as the Kubelet's pod-exec program,
// and registers klog's flags (go test ... -args -v=4).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "pod-exec" {
		if err := PodExecMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pod-exec:", err)
			os.Exit(127)
		}
		return
	}
	klog.InitFlags(nil)
	os.Exit(m.Run())
}

// env is what TestKubelet runs against.
type env struct {
	client  kubernetes.Interface
	config  *rest.Config
	opts    Options
	kubelet *Kubelet
	stop    func() // stops kubelet
	http    *http.Client
}

// setup starts a control plane, a node network namespace with a bridge, and
// a Kubelet whose one image is the testserver binary.
func setup(t *testing.T) *env {
	g := NewWithT(t)
	ctx := t.Context()
	if err := netns.Check(ctx); err != nil {
		t.Fatalf("the kubelet stand-in tests need network namespaces: %v", err)
	}

	api, err := framework.StartAPIServerWithOptions(framework.APIServerOptions{ServiceAccountAdmission: true})
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { g.Expect(api.Stop()).To(Succeed()) })
	kcm, err := framework.StartControllerManager(api, "deployment", "replicaset", "garbagecollector",
		"serviceaccount", "root-ca-cert-publisher", "endpointslice")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-controller-manager log:\n%s", kcm.LogTail(40))
		}
		g.Expect(kcm.Stop()).To(Succeed())
	})
	client, err := kubernetes.NewForConfig(api.Config)
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(netns.Delete(ctx, nodeNetns)).To(Succeed())
	g.Expect(netns.Add(ctx, nodeNetns)).To(Succeed())
	t.Cleanup(func() { g.Expect(netns.Delete(context.WithoutCancel(t.Context()), nodeNetns)).To(Succeed()) })
	g.Expect(netns.AddBridge(ctx, nodeNetns, bridgeName, gateway+"/24")).To(Succeed())

	// The image root must be searchable by the pods' non-root user.
	server, err := framework.BuildBinary("./test/localenv/kubelet/internal/testserver", "testserver")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(server)) })
	imageRoot, err := os.MkdirTemp("", "cpx-t-image-")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = os.RemoveAll(imageRoot) })
	g.Expect(os.Chmod(imageRoot, 0o755)).To(Succeed())
	binary, err := os.ReadFile(server)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(imageRoot, "testserver"), binary, 0o755)).To(Succeed())
	g.Expect(os.WriteFile(filepath.Join(imageRoot, "private"), binary, 0o700)).To(Succeed())

	stateDir := t.TempDir()
	hosts := filepath.Join(t.TempDir(), "hosts")
	g.Expect(os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"+gateway+" cpx-t-gateway\n"), 0o644)).To(Succeed())
	self, err := os.Executable()
	g.Expect(err).NotTo(HaveOccurred())
	network := &BridgeNetwork{NodeNetns: nodeNetns, Bridge: bridgeName, Prefix: subnet, Gateway: gateway, NetnsPrefix: podNetnsPrefix}
	transport := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return netns.DialContext(ctx, nodeNetns, addr)
	}}
	t.Cleanup(transport.CloseIdleConnections)
	e := &env{
		client: client, config: api.Config, http: &http.Client{Transport: transport, Timeout: 5 * time.Second},
		opts: Options{
			NodeName: nodeName, NodeIP: gateway, Client: client, Namespaces: []string{testNamespace},
			Images: map[string]string{testImage: imageRoot}, Network: network, StateDir: stateDir,
			PodExec: []string{self, "pod-exec"}, HostsFile: func(*corev1.Pod) string { return hosts },
			APIServerHost: gateway, APIServerPort: "6443",
		},
	}
	t.Cleanup(func() {
		if t.Failed() {
			pods, err := client.CoreV1().Pods(testNamespace).List(context.WithoutCancel(t.Context()), metav1.ListOptions{})
			if err == nil {
				for _, p := range pods.Items {
					t.Logf("pod %s: phase %s, conditions %+v\ninit containers %+v\ncontainers %+v",
						p.Name, p.Status.Phase, p.Status.Conditions, p.Status.InitContainerStatuses, p.Status.ContainerStatuses)
				}
			}
		}
		if e.stop != nil {
			e.stop()
		}
		// Whatever happened, leave no process, namespace or mount point.
		g.Expect(KillRecorded(stateDir)).To(Succeed())
		g.Expect(network.Cleanup(context.WithoutCancel(t.Context()))).To(Succeed())
		g.Expect(CleanupCreatedDirs(stateDir)).To(Succeed())
		g.Expect(podNetnses()).To(BeEmpty())
	})
	e.startKubelet(t)
	return e
}

// startKubelet runs a Kubelet with e.opts until e.stop is called.
func (e *env) startKubelet(t *testing.T) {
	g := NewWithT(t)
	k, err := New(e.opts)
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(t.Context()), klog.Background()))
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	e.kubelet = k
	e.stop = func() {
		e.stop = nil
		cancel()
		select {
		case err := <-done:
			g.Expect(err).NotTo(HaveOccurred())
		case <-time.After(time.Minute):
			t.Error("the Kubelet did not stop within a minute")
		}
	}
}

// get fetches path from a pod, from inside the node's network namespace.
func (e *env) get(ctx context.Context, ip, path string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(ip, "8080")+path, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return string(body), resp.StatusCode, err
}

func (e *env) podInfo(name string) (PodInfo, bool) {
	for _, p := range e.kubelet.Pods() {
		if p.Name == name {
			return p, true
		}
	}
	return PodInfo{}, false
}

func podNetnses() []string {
	entries, _ := os.ReadDir(netns.Path(""))
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), podNetnsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestKubelet(t *testing.T) {
	e := setup(t)
	g := NewWithT(t)
	ctx := t.Context()
	client := e.client
	const timeout = 90 * time.Second
	t.Setenv("CPX_T_RUNNER_ONLY", "leak")

	g.Eventually(func(g Gomega) {
		node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(node.Labels).To(HaveKeyWithValue(corev1.LabelHostname, nodeName))
		g.Expect(node.Status.Conditions).To(ContainElement(And(
			HaveField("Type", corev1.NodeReady), HaveField("Status", corev1.ConditionTrue))))
		_, err = client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, nodeName, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
	}).WithTimeout(timeout).Should(Succeed())

	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testNamespace}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: testNamespace}, Data: map[string][]byte{"password": []byte("one")}}
	_, err = client.CoreV1().Secrets(testNamespace).Create(ctx, secret, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = client.CoreV1().Services(testNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: testNamespace},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "server"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = client.AppsV1().Deployments(testNamespace).Create(ctx, deployment(), metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	t.Log("the Deployment becomes Available")
	g.Eventually(func(g Gomega) {
		d, err := client.AppsV1().Deployments(testNamespace).Get(ctx, "server", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status.AvailableReplicas).To(Equal(int32(1)))
	}).WithTimeout(timeout).Should(Succeed())
	pods, err := client.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=server"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pods.Items).To(HaveLen(1))
	pod := pods.Items[0]
	g.Expect(pod.Spec.NodeName).To(Equal(nodeName))
	g.Expect(pod.Status.Phase).To(Equal(corev1.PodRunning))
	g.Expect(pod.Status.PodIP).To(HavePrefix(subnet + "."))
	g.Expect(pod.Status.HostIP).To(Equal(gateway))
	g.Expect(pod.Status.InitContainerStatuses).To(ConsistOf(HaveField("State.Terminated.ExitCode", int32(0))))
	g.Expect(pod.Status.ContainerStatuses).To(ConsistOf(And(HaveField("Ready", true), HaveField("ContainerID", HavePrefix("local://")))))
	g.Expect(pod.Spec.Volumes).To(ContainElement(HaveField("Name", HavePrefix("kube-api-access-"))), "the ServiceAccount admission plugin injects the token volume")
	info, ok := e.podInfo(pod.Name)
	g.Expect(ok).To(BeTrue())
	g.Expect(info.IP).To(Equal(pod.Status.PodIP))
	g.Expect(netns.Exists(info.Netns)).To(BeTrue())
	pid := info.Containers[0].PID
	g.Expect(pod.Status.ContainerStatuses[0].ContainerID).To(Equal(containerID(pid)))
	ip := pod.Status.PodIP

	t.Log("the container sees its arguments, environment, user, hostname and mounts")
	get := func(path string) string {
		body, code, err := e.get(ctx, ip, path)
		g.ExpectWithOffset(1, err).NotTo(HaveOccurred())
		g.ExpectWithOffset(1, code).To(Equal(http.StatusOK), body)
		return body
	}
	g.Expect(strings.Split(get("/args"), "\n")).To(Equal([]string{"/testserver", "--listen=:8080", "--print-file=" + secretDir + "/password"}))
	environ := strings.Split(get("/env"), "\n")
	g.Expect(environ).To(ContainElements(
		"POD_NAME="+pod.Name, "POD_IP="+ip, "NODE_NAME="+nodeName, "GREETING=hello "+pod.Name,
		"APP_LABEL=server", "MEMORY_LIMIT_MI=64", "PASSWORD=one", "KUBERNETES_SERVICE_HOST="+gateway,
		"KUBERNETES_SERVICE_PORT=6443", "KUBERNETES_PORT=tcp://"+gateway+":6443", "HOSTNAME="+pod.Name,
	))
	g.Expect(environ).NotTo(ContainElement(HavePrefix("CPX_T_RUNNER_ONLY=")), "the runner's environment leaked")
	g.Expect(get("/whoami")).To(HavePrefix("uid=65534 gid=65534 "))
	g.Expect(get("/whoami")).To(HaveSuffix("hostname=" + pod.Name))
	g.Expect(get("/file?path=" + secretDir + "/password")).To(Equal("one"))
	g.Expect(get("/file?path=" + scratchDir + "/init")).To(Equal("from init"))
	g.Expect(get("/file?path=/etc/hosts")).To(ContainSubstring("cpx-t-gateway"))
	// Names resolve from the hosts file alone.
	g.Expect(get("/file?path=/etc/nsswitch.conf")).To(Equal("hosts: files\n"))
	g.Expect(get("/file?path=/etc/resolv.conf")).To(HavePrefix("nameserver 127.0.0.1\n"))
	g.Expect(get("/file?path=/var/run/secrets/kubernetes.io/serviceaccount/namespace")).To(Equal(testNamespace))
	g.Expect(get("/file?path=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")).To(ContainSubstring("BEGIN CERTIFICATE"))
	_, code, err := e.get(ctx, ip, "/write?path="+secretDir+"/x")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusForbidden), "secret volumes are read-only")
	get("/write?path=" + scratchDir + "/x")
	body, code, err := e.get(ctx, ip, "/write?path=/tmp/cpx-t-rootfs")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(http.StatusForbidden))
	g.Expect(body).To(ContainSubstring("read-only file system"), "readOnlyRootFilesystem")
	g.Expect(os.ReadFile(info.Containers[0].LogPath)).To(ContainSubstring(`password: "one"`))

	t.Log("the EndpointSlice controller sees a ready endpoint")
	g.Eventually(func(g Gomega) {
		slices, err := client.DiscoveryV1().EndpointSlices(testNamespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=server"})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(slices.Items).To(ContainElement(HaveField("Endpoints", ContainElement(And(
			HaveField("Addresses", ConsistOf(ip)), HaveField("Conditions.Ready", HaveValue(BeTrue())))))))
	}).WithTimeout(timeout).Should(Succeed())

	t.Log("the projected service-account token authenticates as the pod")
	cfg := rest.AnonymousClientConfig(e.config)
	cfg.BearerToken = get("/file?path=" + tokenPath)
	podClient, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	review, err := podClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(review.Status.UserInfo.Username).To(Equal("system:serviceaccount:" + testNamespace + ":default"))
	g.Expect(review.Status.UserInfo.Extra).To(HaveKeyWithValue("authentication.kubernetes.io/pod-name", authenticationv1.ExtraValue{pod.Name}))

	t.Log("a Secret update reaches the mounted file")
	secret.Data["password"] = []byte("two")
	_, err = client.CoreV1().Secrets(testNamespace).Update(ctx, secret, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() string { return get("/file?path=" + secretDir + "/password") }).WithTimeout(30 * time.Second).Should(Equal("two"))

	t.Log("a killed container restarts")
	g.Expect(syscall.Kill(pid, syscall.SIGKILL)).To(Succeed())
	g.Eventually(func(g Gomega) {
		p, err := client.CoreV1().Pods(testNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		cs := p.Status.ContainerStatuses[0]
		g.Expect(cs.RestartCount).To(Equal(int32(1)))
		g.Expect(cs.Ready).To(BeTrue())
		g.Expect(cs.LastTerminationState.Terminated).NotTo(BeNil())
		g.Expect(cs.LastTerminationState.Terminated.ExitCode).To(Equal(int32(137)))
		g.Expect(cs.State.Running).NotTo(BeNil())
	}).WithTimeout(timeout).Should(Succeed())
	info, _ = e.podInfo(pod.Name)
	g.Expect(info.Containers[0].PID).NotTo(BeElementOf(0, pid))
	g.Expect(info.Containers[0].Restarts).To(Equal(int32(1)))
	g.Expect(os.ReadFile(info.Containers[0].LogPath)).To(WithTransform(func(b []byte) int {
		return strings.Count(string(b), "testserver starting")
	}, Equal(2)), "the log is kept across restarts")
	newPID := info.Containers[0].PID

	t.Log("probes: a startup exec probe runs in the container, a failing liveness probe restarts it")
	scratch := corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	probed := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probes", Namespace: testNamespace},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Volumes:                       []corev1.Volume{scratch},
			Containers: []corev1.Container{{
				Name: "main", Image: testImage, Command: []string{"/testserver"},
				Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: scratchDir}},
				StartupProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
					Command: []string{"/testserver", "--write=" + scratchDir + "/started=yes"}}}},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}}},
				LivenessProbe: &corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/missing", Port: intstr.FromInt32(8080)}}},
			}},
		},
	}
	probed, err = client.CoreV1().Pods(testNamespace).Create(ctx, probed, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		p, err := client.CoreV1().Pods(testNamespace).Get(ctx, "probes", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p.Status.ContainerStatuses).To(ConsistOf(HaveField("RestartCount", BeNumerically(">=", 1))))
		events, err := client.CoreV1().Events(testNamespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=probes"})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(events.Items).To(ContainElement(And(HaveField("Reason", "Killing"), HaveField("Message", ContainSubstring("failed liveness probe")))))
	}).WithTimeout(timeout).Should(Succeed())
	g.Expect(os.ReadFile(filepath.Join(e.opts.StateDir, "pods", string(probed.UID), "volumes", "scratch", "started"))).To(Equal([]byte("yes")))
	g.Expect(client.CoreV1().Pods(testNamespace).Delete(ctx, "probes", metav1.DeleteOptions{})).To(Succeed())

	t.Log("pods that must not restart end Succeeded or Failed")
	for name, phase := range map[string]corev1.PodPhase{"succeeds": corev1.PodSucceeded, "fails": corev1.PodFailed} {
		target := scratchDir + "/done"
		if phase == corev1.PodFailed {
			target = scratchDir + "/missing/done"
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, Volumes: []corev1.Volume{scratch},
				Containers: []corev1.Container{{Name: "main", Image: testImage, Command: []string{"/testserver", "--write=" + target + "=1"},
					VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: scratchDir}}}},
			},
		}
		_, err := client.CoreV1().Pods(testNamespace).Create(ctx, p, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) {
			p, err := client.CoreV1().Pods(testNamespace).Get(ctx, name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Status.Phase).To(Equal(phase))
			g.Expect(p.Status.ContainerStatuses).To(ConsistOf(HaveField("State.Terminated.Reason", map[corev1.PodPhase]string{
				corev1.PodSucceeded: "Completed", corev1.PodFailed: "Error"}[phase])))
		}).WithTimeout(timeout).Should(Succeed(), name)
		g.Expect(client.CoreV1().Pods(testNamespace).Delete(ctx, name, metav1.DeleteOptions{})).To(Succeed())
	}

	t.Log("a restarted Kubelet runs the pods again")
	e.stop()
	g.Expect(errors.Is(syscall.Kill(newPID, 0), syscall.ESRCH)).To(BeTrue(), "the container outlived the Kubelet")
	g.Expect(podNetnses()).To(BeEmpty())
	_, err = client.CoreV1().Pods(testNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
	g.Expect(err).NotTo(HaveOccurred(), "a stopping Kubelet leaves Pod objects alone")
	e.startKubelet(t)
	g.Eventually(func(g Gomega) {
		info, ok := e.podInfo(pod.Name)
		g.Expect(ok).To(BeTrue())
		g.Expect(info.Containers[0].Ready).To(BeTrue())
		newPID = info.Containers[0].PID
		body, _, err := e.get(ctx, info.IP, "/file?path="+secretDir+"/password")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(body).To(Equal("two"))
	}).WithTimeout(timeout).Should(Succeed())

	t.Log("pods the stand-in cannot run say why")
	for _, tc := range []struct {
		name   string
		mutate func(*corev1.Pod)
		reason string
		msg    string
		state  string // the status field that says why
	}{
		{name: "start-error", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].WorkingDir = "/cpx-t-missing" },
			reason: "StartError", msg: "failed to change to working directory /cpx-t-missing", state: "LastTerminationState.Terminated"},
		{name: "unknown-image", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].Image = "example.com/cpx-t/unknown:v1" },
			reason: "ErrImagePull", msg: "example.com/cpx-t/unknown:v1"},
		{name: "host-path", mutate: func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
		}, reason: "CreateContainerConfigError", msg: "hostPath volumes are not supported"},
		{name: "host-network", mutate: func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			reason: "CreateContainerConfigError", msg: "hostNetwork pods are not supported"},
		{name: "not-executable", mutate: func(p *corev1.Pod) {
			p.Spec.Containers[0].Command = []string{"/private"}
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](12345)}
		}, reason: "CreateContainerError", msg: "is not executable by uid 12345"},
	} {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: tc.name, Namespace: testNamespace},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: testImage + ":v1", Command: []string{"/testserver"}}}},
		}
		tc.mutate(p)
		_, err := client.CoreV1().Pods(testNamespace).Create(ctx, p, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) {
			p, err := client.CoreV1().Pods(testNamespace).Get(ctx, tc.name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p.Status.ContainerStatuses).To(ConsistOf(HaveField(cmp.Or(tc.state, "State.Waiting"), And(
				HaveField("Reason", tc.reason), HaveField("Message", ContainSubstring(tc.msg))))))
		}).WithTimeout(timeout).Should(Succeed(), tc.name)
		g.Expect(client.CoreV1().Pods(testNamespace).Delete(ctx, tc.name, metav1.DeleteOptions{})).To(Succeed())
	}

	t.Log("deleting the Deployment stops the process and removes the network")
	g.Expect(client.AppsV1().Deployments(testNamespace).Delete(ctx, "server", metav1.DeleteOptions{
		PropagationPolicy: ptr.To(metav1.DeletePropagationBackground),
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		list, err := client.CoreV1().Pods(testNamespace).List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(list.Items).To(BeEmpty())
	}).WithTimeout(timeout).Should(Succeed())
	g.Expect(e.kubelet.Pods()).To(BeEmpty())
	g.Expect(errors.Is(syscall.Kill(newPID, 0), syscall.ESRCH)).To(BeTrue(), "the container process still runs")
	g.Expect(podNetnses()).To(BeEmpty())
	_, err = client.CoreV1().Pods(testNamespace).Get(ctx, pod.Name, metav1.GetOptions{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue())
}

// deployment is the Deployment TestKubelet runs: one testserver replica
// with an init container, a Secret and an emptyDir volume, downward API
// and Secret environment, and probes.
func deployment() *appsv1.Deployment {
	labels := map[string]string{"app": "server"}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	mounts := []corev1.VolumeMount{{Name: "creds", MountPath: secretDir, ReadOnly: true}, {Name: "scratch", MountPath: scratchDir}}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Namespace: testNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
					InitContainers: []corev1.Container{{
						Name: "init", Image: testImage + "@sha256:0123", Command: []string{"/testserver"},
						Args: []string{"--write=" + scratchDir + "/init=from init"}, VolumeMounts: mounts,
					}},
					Containers: []corev1.Container{{
						Name: "server", Image: testImage + ":v1",
						Command: []string{"/testserver"},
						Args:    []string{"--listen=:$(PORT)", "--print-file=" + secretDir + "/password"},
						Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						Env: []corev1.EnvVar{
							{Name: "PORT", Value: "8080"},
							fieldEnv("POD_NAME", "metadata.name"),
							fieldEnv("POD_IP", "status.podIP"),
							fieldEnv("NODE_NAME", "spec.nodeName"),
							fieldEnv("APP_LABEL", "metadata.labels['app']"),
							{Name: "GREETING", Value: "hello $(POD_NAME)"},
							{Name: "MEMORY_LIMIT_MI", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
								Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
							{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
								LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
						},
						Resources:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}},
						VolumeMounts:    mounts,
						SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
							PeriodSeconds: 2, InitialDelaySeconds: 1,
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
						{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
				},
			},
		},
	}
}
