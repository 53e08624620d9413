package kubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

func validOptions() Options {
	return Options{
		NodeName: "cluster1-node", NodeIP: "198.18.200.1", Client: fake.NewClientset(), Namespaces: []string{"a"},
		Images:   map[string]string{"quay.io/x/y": "/images/y"},
		Network:  &BridgeNetwork{NodeNetns: "cpx-t-node", Bridge: "pods", Prefix: "198.18.200", Gateway: "198.18.200.1", NetnsPrefix: "cpx-t-p-"},
		StateDir: "/state", PodExec: []string{"/bin/localenv", "pod-exec"}, APIServerHost: "198.18.200.1", APIServerPort: "6443",
	}
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{name: "valid", mutate: func(*Options) {}},
		{name: "node name", mutate: func(o *Options) { o.NodeName = "Node_1" }, wantErr: "NodeName"},
		{name: "node IP", mutate: func(o *Options) { o.NodeIP = "" }, wantErr: "NodeIP"},
		{name: "client", mutate: func(o *Options) { o.Client = nil }, wantErr: "Client is required"},
		{name: "no namespaces", mutate: func(o *Options) { o.Namespaces = nil }, wantErr: "Namespaces"},
		{name: "tagged image", mutate: func(o *Options) { o.Images = map[string]string{"quay.io/x/y:v1": "/i"} }, wantErr: "no tag or digest"},
		{name: "relative image root", mutate: func(o *Options) { o.Images = map[string]string{"quay.io/x/y": "i"} }, wantErr: "absolute"},
		{name: "network", mutate: func(o *Options) { o.Network = nil }, wantErr: "Network is required"},
		{name: "bridge network", mutate: func(o *Options) { o.Network = &BridgeNetwork{Prefix: "198.18"} }, wantErr: "prefix"},
		{name: "state dir", mutate: func(o *Options) { o.StateDir = "state" }, wantErr: "StateDir"},
		{name: "pod exec", mutate: func(o *Options) { o.PodExec = nil }, wantErr: "PodExec"},
		{name: "API server port", mutate: func(o *Options) { o.APIServerPort = "https" }, wantErr: "APIServerPort"},
		{name: "kubelet API without TLS", mutate: func(o *Options) { o.API = &APIOptions{Listener: udsListener(t), ClientCommonName: "x"} },
			wantErr: "API.TLS must hold the serving certificate"},
		{name: "kubelet API on a socket", mutate: func(o *Options) { o.API = &APIOptions{Listener: udsListener(t), ClientCommonName: "x"} },
			wantErr: "API.Listener must listen on TCP"},
		{name: "kubelet API without client verification", mutate: func(o *Options) {
			o.API = &APIOptions{TLS: &tls.Config{Certificates: []tls.Certificate{{}}}}
		}, wantErr: "must require and verify client certificates"},
		{name: "kubelet API client name", mutate: func(o *Options) { o.API = &APIOptions{} }, wantErr: "API.ClientCommonName is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := validOptions()
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestImageRepository(t *testing.T) {
	for image, want := range map[string]string{
		"quay.io/ocm/cluster-proxy":                  "quay.io/ocm/cluster-proxy",
		"quay.io/ocm/cluster-proxy:latest":           "quay.io/ocm/cluster-proxy",
		"quay.io/ocm/cluster-proxy@sha256:abc":       "quay.io/ocm/cluster-proxy",
		"quay.io/ocm/cluster-proxy:v1@sha256:abc":    "quay.io/ocm/cluster-proxy",
		"localhost:5000/cluster-proxy":               "localhost:5000/cluster-proxy",
		"localhost:5000/cluster-proxy:v0.1.0-alpha1": "localhost:5000/cluster-proxy",
	} {
		t.Run(image, func(t *testing.T) { NewWithT(t).Expect(imageRepository(image)).To(Equal(want)) })
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "a", "B": "$(A)"}
	for in, want := range map[string]string{
		"$(A)":         "a",
		"x$(A)y$(A)":   "xaya",
		"$(B)":         "$(A)",
		"$$(A)":        "$(A)",
		"$(MISSING)":   "$(MISSING)",
		"$(A":          "$(A",
		"cost: $5":     "cost: $5",
		"end$":         "end$",
		"$(SVC)":       "svc",
		"$$$(A)":       "$a",
		"--port=$(A))": "--port=a)",
	} {
		t.Run(in, func(t *testing.T) {
			NewWithT(t).Expect(expand(in, vars, [][2]string{{"SVC", "svc"}})).To(Equal(want))
		})
	}
}

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1",
			Labels: map[string]string{"app": "x", "tier": "web"}, Annotations: map[string]string{"a/b": `q"uote`}},
		Spec: corev1.PodSpec{NodeName: "node", ServiceAccountName: "sa"},
	}
	tests := map[string]string{
		"metadata.name": "p", "metadata.namespace": "ns", "metadata.uid": "uid-1",
		"metadata.labels['app']": "x", "metadata.labels['missing']": "", "metadata.annotations['a/b']": `q"uote`,
		"metadata.labels": "app=\"x\"\ntier=\"web\"", "metadata.annotations": `a/b="q\"uote"`,
		"spec.nodeName": "node", "spec.serviceAccountName": "sa",
		"status.podIP": "198.18.200.10", "status.podIPs": "198.18.200.10", "status.hostIP": "198.18.200.1",
	}
	for path, want := range tests {
		t.Run(path, func(t *testing.T) {
			g := NewWithT(t)
			got, err := fieldValue(pod, path, "198.18.200.10", "198.18.200.1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(want))
		})
	}
	_, err := fieldValue(pod, "spec.containers", "", "")
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("unsupported fieldPath")))
}

func TestResourceValue(t *testing.T) {
	c := &corev1.Container{Resources: corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
	}}
	tests := []struct {
		resource, divisor, want string
	}{
		{"limits.cpu", "", "2"},
		{"limits.cpu", "1m", "1500"},
		{"requests.cpu", "1m", "250"},
		{"limits.memory", "", "67108864"},
		{"limits.memory", "1Mi", "64"},
		{"requests.memory", "", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.resource+"/"+tt.divisor, func(t *testing.T) {
			g := NewWithT(t)
			ref := &corev1.ResourceFieldSelector{Resource: tt.resource}
			if tt.divisor != "" {
				ref.Divisor = resource.MustParse(tt.divisor)
			}
			got, err := resourceValue(c, ref)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestUser(t *testing.T) {
	tests := []struct {
		name       string
		pod, ctr   *corev1.SecurityContext
		podGroups  []int64
		fsGroup    *int64
		uid, gid   int
		groups     []int
		wantErr    bool
		podNonRoot *bool
	}{
		{name: "root by default"},
		{name: "runAsNonRoot without user is nobody", podNonRoot: ptr.To(true), uid: nobody, gid: nobody},
		{name: "container user wins", ctr: &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000)}, pod: &corev1.SecurityContext{RunAsUser: ptr.To[int64](2000), RunAsGroup: ptr.To[int64](3000)}, uid: 1000, gid: 3000},
		{name: "groups", podGroups: []int64{5}, fsGroup: ptr.To[int64](7), groups: []int{5, 7}},
		{name: "non-root with root user", podNonRoot: ptr.To(true), ctr: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			psc := &corev1.PodSecurityContext{RunAsNonRoot: tt.podNonRoot, SupplementalGroups: tt.podGroups, FSGroup: tt.fsGroup}
			if tt.pod != nil {
				psc.RunAsUser, psc.RunAsGroup = tt.pod.RunAsUser, tt.pod.RunAsGroup
			}
			pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: psc}}
			uid, gid, groups, err := user(pod, &corev1.Container{SecurityContext: tt.ctr})
			if tt.wantErr {
				g.Expect(err).To(HaveOccurred())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect([]int{uid, gid}).To(Equal([]int{tt.uid, tt.gid}))
			g.Expect(groups).To(Equal(tt.groups))
		})
	}
}

func TestCanExecute(t *testing.T) {
	g := NewWithT(t)
	// Not t.TempDir(): its parent is not searchable by others.
	dir, err := os.MkdirTemp("", "cpx-t-exec-")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	g.Expect(os.Chmod(dir, 0o755)).To(Succeed())
	for name, mode := range map[string]os.FileMode{"all": 0o755, "owner": 0o700, "none": 0o644} {
		g.Expect(os.WriteFile(filepath.Join(dir, name), nil, mode)).To(Succeed())
	}
	g.Expect(canExecute(filepath.Join(dir, "all"), 1000, 1000, nil)).To(Succeed())
	g.Expect(canExecute(filepath.Join(dir, "owner"), 0, 0, nil)).To(Succeed())
	g.Expect(canExecute(filepath.Join(dir, "owner"), 1000, 1000, nil)).To(MatchError(ContainSubstring("is not executable by uid 1000")))
	g.Expect(canExecute(filepath.Join(dir, "none"), 0, 0, nil)).To(MatchError(ContainSubstring("is not executable")))
	g.Expect(canExecute(filepath.Join(dir, "missing"), 0, 0, nil)).To(MatchError(ContainSubstring("has no binary")))
	g.Expect(os.Chmod(dir, 0o700)).To(Succeed())
	g.Expect(canExecute(filepath.Join(dir, "all"), 1000, 1000, nil)).To(MatchError(ContainSubstring("is not searchable")))
}

func TestWriteAtomic(t *testing.T) {
	g := NewWithT(t)
	dir := filepath.Join(t.TempDir(), "vol")
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(dir, name))
		g.Expect(err).NotTo(HaveOccurred())
		return string(data)
	}
	g.Expect(writeAtomic(dir, map[string]file{"a": {data: []byte("1"), mode: 0o600}, "sub/b": {data: []byte("2"), mode: 0o644}}, nil)).To(Succeed())
	g.Expect(read("a")).To(Equal("1"))
	g.Expect(read("sub/b")).To(Equal("2"))
	g.Expect(os.Readlink(filepath.Join(dir, "a"))).To(Equal("..data/a"))
	g.Expect(os.Readlink(filepath.Join(dir, "sub"))).To(Equal("..data/sub"))
	info, err := os.Stat(filepath.Join(dir, "a"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o600)))
	first, err := os.Readlink(filepath.Join(dir, "..data"))
	g.Expect(err).NotTo(HaveOccurred())

	// payloadSum tells when a volume needs no rewrite.
	sum := payloadSum(map[string]file{"a": {data: []byte("1"), mode: 0o600}}, nil)
	g.Expect(payloadSum(map[string]file{"a": {data: []byte("1"), mode: 0o600}}, nil)).To(Equal(sum))
	g.Expect(payloadSum(map[string]file{"a": {data: []byte("1"), mode: 0o644}}, nil)).NotTo(Equal(sum))
	g.Expect(payloadSum(map[string]file{"a": {data: []byte("2"), mode: 0o600}}, nil)).NotTo(Equal(sum))
	g.Expect(payloadSum(map[string]file{"a": {data: []byte("1"), mode: 0o600}}, ptr.To[int64](1))).NotTo(Equal(sum))

	// An update swaps ..data, drops removed keys and the old directory.
	g.Expect(writeAtomic(dir, map[string]file{"a": {data: []byte("3"), mode: 0o644}}, ptr.To[int64](4242))).To(Succeed())
	g.Expect(read("a")).To(Equal("3"))
	g.Expect(filepath.Join(dir, "sub")).NotTo(BeAnExistingFile())
	g.Expect(filepath.Join(dir, first)).NotTo(BeADirectory())
	info, err = os.Stat(filepath.Join(dir, "a"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(info.Mode().Perm()).To(Equal(os.FileMode(0o644)))
	g.Expect(info.Sys().(*syscall.Stat_t).Gid).To(Equal(uint32(4242)))
	entries, err := os.ReadDir(dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(entries).To(HaveLen(3)) // ..data, the timestamped directory, a

	g.Expect(writeAtomic(dir, map[string]file{"../escape": {}}, nil)).To(MatchError(ContainSubstring("invalid file path")))
}

func TestUnschedulable(t *testing.T) {
	k := &Kubelet{opts: Options{NodeName: "n1"}}
	affinity := func(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
	}
	tests := []struct {
		name string
		spec corev1.PodSpec
		fits bool
	}{
		{"no constraints", corev1.PodSpec{}, true},
		{"matching selector", corev1.PodSpec{NodeSelector: map[string]string{corev1.LabelOSStable: "linux"}}, true},
		{"other selector", corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}}, false},
		{"affinity In", corev1.PodSpec{Affinity: affinity(expr(corev1.LabelHostname, corev1.NodeSelectorOpIn, "n1"))}, true},
		{"affinity NotIn", corev1.PodSpec{Affinity: affinity(expr(corev1.LabelHostname, corev1.NodeSelectorOpNotIn, "n1"))}, false},
		{"affinity terms are ORed", corev1.PodSpec{Affinity: affinity(expr("disk", corev1.NodeSelectorOpExists), expr(corev1.LabelOSStable, corev1.NodeSelectorOpExists))}, true},
		{"affinity fields", corev1.PodSpec{Affinity: affinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}})}, false},
		{"required pod anti-affinity", corev1.PodSpec{Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: corev1.LabelHostname}}}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason := NewWithT(t).Expect(k.unschedulable(&corev1.Pod{Spec: tt.spec}))
			if tt.fits {
				reason.To(BeEmpty())
			} else {
				reason.NotTo(BeEmpty())
			}
		})
	}
}

func TestPodPhase(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	exited := func(code int32) corev1.ContainerState {
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
	}
	type ctr struct {
		state corev1.ContainerState
		ready bool
		ran   bool
	}
	tests := []struct {
		name        string
		inits, ctrs []ctr
		phase       corev1.PodPhase
		ready       bool
	}{
		{name: "creating", ctrs: []ctr{{state: waiting}}, phase: corev1.PodPending},
		{name: "initializing", inits: []ctr{{state: running}}, ctrs: []ctr{{state: waiting}}, phase: corev1.PodPending},
		{name: "init failed for good", inits: []ctr{{state: exited(1)}}, ctrs: []ctr{{state: waiting}}, phase: corev1.PodFailed},
		{name: "running, not ready", inits: []ctr{{state: exited(0)}}, ctrs: []ctr{{state: running}}, phase: corev1.PodRunning},
		{name: "running and ready", ctrs: []ctr{{state: running, ready: true}}, phase: corev1.PodRunning, ready: true},
		{name: "restarting", ctrs: []ctr{{state: waiting, ran: true}}, phase: corev1.PodRunning},
		{name: "one still starting", ctrs: []ctr{{state: running, ready: true}, {state: waiting}}, phase: corev1.PodPending},
		{name: "succeeded", ctrs: []ctr{{state: exited(0)}, {state: exited(0)}}, phase: corev1.PodSucceeded},
		{name: "failed", ctrs: []ctr{{state: exited(0)}, {state: exited(2)}}, phase: corev1.PodFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			w := &podWorker{k: &Kubelet{opts: Options{NodeIP: "198.18.200.1"}}, ip: "198.18.200.10", netns: "ns"}
			build := func(cs []ctr) []*container {
				var out []*container
				for i, c := range cs {
					ctr := &container{spec: corev1.Container{Name: string(rune('a' + i))}, state: c.state, ready: c.ready}
					if c.ran {
						ctr.last = &corev1.ContainerStateTerminated{ExitCode: 1}
					}
					out = append(out, ctr)
				}
				return out
			}
			w.inits, w.ctrs = build(tt.inits), build(tt.ctrs)
			s := w.status(&corev1.Pod{})
			g.Expect(s.Phase).To(Equal(tt.phase))
			g.Expect(s.PodIP).To(Equal("198.18.200.10"))
			g.Expect(s.Conditions).To(ContainElement(And(HaveField("Type", corev1.PodReady),
				HaveField("Status", map[bool]corev1.ConditionStatus{true: corev1.ConditionTrue, false: corev1.ConditionFalse}[tt.ready]))))
		})
	}
}

func TestMountPointRecords(t *testing.T) {
	g := NewWithT(t)
	state, root := t.TempDir(), t.TempDir()
	k := &Kubelet{opts: Options{StateDir: state}}
	g.Expect(k.ensureMountPoint(filepath.Join(root, "a/b/c"), false)).To(Succeed())
	g.Expect(k.ensureMountPoint(filepath.Join(root, "a/file"), true)).To(Succeed())
	g.Expect(k.ensureMountPoint(filepath.Join(root, "a/b/c"), false)).To(Succeed())
	g.Expect(k.ensureMountPoint(filepath.Join(root, "a/file"), false)).To(MatchError(ContainSubstring("is not a directory")))
	g.Expect(filepath.Join(root, "a/b/c")).To(BeADirectory())
	g.Expect(filepath.Join(root, "a/file")).To(BeARegularFile())
	g.Expect(os.WriteFile(filepath.Join(root, "a/b/keep"), []byte("not ours"), 0o644)).To(Succeed())

	g.Expect(CleanupCreatedDirs(state)).To(Succeed())
	g.Expect(filepath.Join(root, "a/b/c")).NotTo(BeADirectory())
	g.Expect(filepath.Join(root, "a/file")).NotTo(BeAnExistingFile())
	g.Expect(filepath.Join(root, "a/b/keep")).To(BeARegularFile(), "a directory that is not empty stays")
	recorded, err := os.ReadFile(filepath.Join(state, createdDirsFile))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(strings.Fields(string(recorded))).To(ConsistOf(filepath.Join(root, "a"), filepath.Join(root, "a/b")))

	g.Expect(os.Remove(filepath.Join(root, "a/b/keep"))).To(Succeed())
	g.Expect(CleanupCreatedDirs(state)).To(Succeed())
	g.Expect(filepath.Join(root, "a")).NotTo(BeADirectory())
	g.Expect(filepath.Join(state, createdDirsFile)).NotTo(BeAnExistingFile())
}

func TestKillRecorded(t *testing.T) {
	g := NewWithT(t)
	state := t.TempDir()
	k := &Kubelet{opts: Options{StateDir: state}, pids: map[int]uint64{}}
	start := func() (*exec.Cmd, chan error) {
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		g.Expect(cmd.Start()).To(Succeed())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, done
	}
	recorded, recordedDone := start()
	k.recordPID(recorded.Process.Pid)
	other, otherDone := start()
	// A recorded PID whose start time no longer matches is another process.
	k.pids[other.Process.Pid] = 1
	k.writePIDs()

	g.Expect(KillRecorded(state)).To(Succeed())
	g.Eventually(recordedDone).WithTimeout(5 * time.Second).Should(Receive(MatchError(ContainSubstring("killed"))))
	g.Consistently(otherDone).WithTimeout(500 * time.Millisecond).ShouldNot(Receive())
	g.Expect(filepath.Join(state, pidsFile)).NotTo(BeAnExistingFile())
	g.Expect(KillRecorded(state)).To(Succeed())
	g.Expect(errors.Is(syscall.Kill(other.Process.Pid, 0), syscall.ESRCH)).To(BeFalse())
}

func TestBridgeNetwork(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	if err := netns.Check(ctx); err != nil {
		t.Fatalf("BridgeNetwork needs network namespaces: %v", err)
	}
	const node = "cpx-t-bridge"
	g.Expect(netns.Delete(ctx, node)).To(Succeed())
	g.Expect(netns.Add(ctx, node)).To(Succeed())
	t.Cleanup(func() { _ = netns.Delete(context.WithoutCancel(t.Context()), node) })
	g.Expect(netns.AddBridge(ctx, node, "pods", "198.18.200.1/24")).To(Succeed())
	n := &BridgeNetwork{NodeNetns: node, Bridge: "pods", Prefix: "198.18.200", Gateway: "198.18.200.1", NetnsPrefix: "cpx-t-b-"}
	g.Expect(n.Validate()).To(Succeed())
	t.Cleanup(func() { _ = n.Cleanup(context.WithoutCancel(t.Context())) })

	// reachable checks that a listener in the pod namespace answers a dial
	// from the node namespace.
	reachable := func(ns, ip string) {
		l, err := netns.Listen(ns, net.JoinHostPort(ip, "9000"))
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = l.Close() }()
		go func() {
			if c, err := l.Accept(); err == nil {
				_ = c.Close()
			}
		}()
		conn, err := netns.DialContext(ctx, node, net.JoinHostPort(ip, "9000"))
		g.Expect(err).NotTo(HaveOccurred())
		_ = conn.Close()
	}
	ns1, ip1, err := n.Setup(ctx, "11111111-aaaa")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect([]string{ns1, ip1}).To(Equal([]string{"cpx-t-b-11111111", "198.18.200.10"}))
	_, ip2, err := n.Setup(ctx, "22222222-bbbb")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ip2).To(Equal("198.18.200.11"))
	reachable(ns1, ip1)

	// A freed address is reused; a leftover namespace is replaced.
	g.Expect(n.Teardown(ctx, "11111111-aaaa")).To(Succeed())
	g.Expect(netns.Exists(ns1)).To(BeFalse())
	_, ip3, err := n.Setup(ctx, "33333333-cccc")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ip3).To(Equal("198.18.200.10"))
	restarted := &BridgeNetwork{NodeNetns: node, Bridge: "pods", Prefix: "198.18.200", Gateway: "198.18.200.1", NetnsPrefix: "cpx-t-b-"}
	g.Expect(restarted.Cleanup(ctx)).To(Succeed())
	g.Expect(n.Cleanup(ctx)).To(Succeed())
	ns2, ip2, err := restarted.Setup(ctx, "22222222-bbbb")
	g.Expect(err).NotTo(HaveOccurred())
	ns2again, _, err := restarted.Setup(ctx, "22222222-bbbb")
	g.Expect(err).NotTo(HaveOccurred(), "Setup replaces an existing namespace")
	g.Expect(ns2again).To(Equal(ns2))
	reachable(ns2, ip2)
	_, _, err = restarted.Setup(ctx, "22222222-other")
	g.Expect(err).To(MatchError(ContainSubstring("would share network namespace")))

	g.Expect(restarted.Cleanup(ctx)).To(Succeed())
	g.Expect(netns.Exists(ns2)).To(BeFalse())
}

// udsListener is a listener on a Unix socket, closed at the end of t.
func udsListener(t *testing.T) net.Listener {
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestTailOffset(t *testing.T) {
	tests := []struct {
		content string
		n       int64
		want    string
	}{
		{"a\nb\nc\n", -1, "a\nb\nc\n"},
		{"a\nb\nc\n", 0, ""},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 10, "a\nb\nc\n"},
		{"a\nb\npartial", 1, "partial"},
		{"a\nb\npartial", 2, "b\npartial"},
		{"", 3, ""},
		{strings.Repeat("x", 10000) + "\nlast\n", 1, "last\n"}, // a line longer than the reader's buffer
	}
	for _, tt := range tests {
		g := NewWithT(t)
		path := filepath.Join(t.TempDir(), "log")
		g.Expect(os.WriteFile(path, []byte(tt.content), 0o600)).To(Succeed())
		f, err := os.Open(path)
		g.Expect(err).NotTo(HaveOccurred())
		off, err := tailOffset(f, tt.n)
		_ = f.Close()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(tt.content[off:]).To(Equal(tt.want), "last %d lines of %.20q", tt.n, tt.content)
	}
}

func TestLimitedWriter(t *testing.T) {
	g := NewWithT(t)
	var b strings.Builder
	w := &limitedWriter{w: &b, n: 5}
	n, err := w.Write([]byte("abc"))
	g.Expect(n, err).To(Equal(3))
	n, err = w.Write([]byte("defg"))
	g.Expect(n).To(Equal(2))
	g.Expect(err).To(MatchError(io.EOF))
	g.Expect(b.String()).To(Equal("abcde"))
	n, err = w.Write([]byte("h"))
	g.Expect(n).To(BeZero())
	g.Expect(err).To(MatchError(io.EOF))
}
