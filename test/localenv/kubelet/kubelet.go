// Package kubelet is the local environment's kubelet stand-in. The
// environment has no container engine: the stand-in binds the pods of
// chosen namespaces to its Node and runs their containers as local
// processes, each pod in its own network namespace on the node's bridge,
// and reports their status to the kube-apiserver as a kubelet does, so the
// real controllers (deployments, replica sets, endpoint slices, garbage
// collection) see Running, Ready pods with IPs.
//
// An image is a directory of binaries ("image root"); a container's
// command[0] names a binary in it. The stand-in honours command, args and
// environment (literal values, the downward API, resource fields, Secret and
// ConfigMap references), mounts Secret, ConfigMap, downward API, projected
// (including bound service-account tokens from the TokenRequest API) and
// emptyDir volumes, runs the process as the pod's user, runs init
// containers, restarts containers with back-off, runs startup, liveness and
// readiness probes, keeps mounted Secrets and ConfigMaps up to date and
// honours graceful deletion. With Options.API it also serves the kubelet
// API the kube-apiserver's pod subresources reach, with the kubelet's own
// streaming code: exec (a binary of the container's image, in the pod's
// namespaces, as its user), port-forward (localhost in the pod's network
// namespace) and logs (follow, tailLines, limitBytes). Linux only; it must
// run as root.
//
// Not supported (the pod reports why, or the field is ignored): hostNetwork
// and volume types other than those above, sidecar init containers, gRPC
// probes, lifecycle hooks, required pod (anti-)affinity, termination message
// files, ephemeral containers, attach, exec with a terminal, the previous,
// since and timestamps log options; resource limits, capabilities and
// seccomp profiles are not enforced.
package kubelet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// syncWorkers is how many pod events are handled concurrently.
const syncWorkers = 4

// PodNetwork gives pods their network: a network namespace and an address.
type PodNetwork interface {
	// Setup creates the network of pod podUID, replacing any leftover of an
	// earlier run, and returns the namespace's name and the pod's IP.
	Setup(ctx context.Context, podUID string) (netnsName, ip string, err error)
	// Teardown removes what Setup created; a missing network is no error.
	Teardown(ctx context.Context, podUID string) error
}

// Options configure a Kubelet.
type Options struct {
	// NodeName is the Node the stand-in registers, heartbeats and runs
	// pods for, e.g. "cluster1-node".
	NodeName string
	// NodeIP is the Node's InternalIP and the pods' status.hostIP.
	NodeIP string
	// Client is an administrator client of the cluster.
	Client kubernetes.Interface
	// Namespaces are the only namespaces whose pods are bound and run;
	// pods elsewhere are ignored.
	Namespaces []string
	// Images maps an image repository without tag or digest (e.g.
	// "quay.io/open-cluster-management/cluster-proxy") to its image root: a
	// container whose command[0] is "/proxy-agent" runs
	// <root>/proxy-agent.
	Images map[string]string
	// Network gives each pod a network namespace and an IP.
	Network PodNetwork
	// StateDir holds pod directories (volumes, logs) and the records that
	// KillRecorded and CleanupCreatedDirs read; the Kubelet owns it.
	StateDir string
	// PodExec is the argv prefix of a program that calls PodExecMain, e.g.
	// {"/path/localenv", "pod-exec"}.
	PodExec []string
	// HostsFile returns the hosts file bind-mounted on /etc/hosts in a
	// pod: its namespace's names plus the pod's spec.hostAliases, as the
	// kubelet writes them. The caller maintains it, updating it in place.
	// Nil or "" leaves /etc/hosts alone.
	HostsFile func(pod *corev1.Pod) string
	// APIServerHost and APIServerPort are the pods' KUBERNETES_SERVICE_HOST
	// and KUBERNETES_SERVICE_PORT.
	APIServerHost, APIServerPort string
	// API, when set, serves the kubelet API (exec, port-forward, logs) and
	// the Node reports it; without it those pod subresources fail.
	API *APIOptions
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if msgs := validation.IsDNS1123Subdomain(o.NodeName); len(msgs) > 0 {
		add("NodeName %q is invalid: %s", o.NodeName, strings.Join(msgs, "; "))
	}
	if net.ParseIP(o.NodeIP) == nil {
		add("NodeIP %q is not an IP address", o.NodeIP)
	}
	if o.Client == nil {
		add("Client is required")
	}
	if len(o.Namespaces) == 0 {
		add("Namespaces must name at least one namespace")
	}
	for _, ns := range o.Namespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			add("namespace %q is invalid: %s", ns, strings.Join(msgs, "; "))
		}
	}
	for repo, root := range o.Images {
		if repo != imageRepository(repo) || repo == "" {
			add("image repository %q must have no tag or digest", repo)
		}
		if !filepath.IsAbs(root) {
			add("image root %q of %s must be an absolute path", root, repo)
		}
	}
	if o.Network == nil {
		add("Network is required")
	} else if v, ok := o.Network.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			add("Network: %w", err)
		}
	}
	if !filepath.IsAbs(o.StateDir) {
		add("StateDir %q must be an absolute path", o.StateDir)
	}
	if len(o.PodExec) == 0 || !filepath.IsAbs(o.PodExec[0]) {
		add("PodExec must start with an absolute program path, got %q", o.PodExec)
	}
	if o.API != nil {
		if err := o.API.Validate(); err != nil {
			add("%w", err)
		}
	}
	if o.APIServerHost == "" {
		add("APIServerHost is required")
	}
	if p, err := strconv.Atoi(o.APIServerPort); err != nil || p < 1 || p > 65535 {
		add("APIServerPort %q is not a port number", o.APIServerPort)
	}
	return errors.Join(errs...)
}

// Kubelet is the kubelet stand-in of one Node.
type Kubelet struct {
	opts     Options
	queue    workqueue.TypedRateLimitingInterface[string]
	stores   map[string]cache.Store // namespace -> pods
	recorder record.EventRecorder
	nodeUID  types.UID

	mu      sync.Mutex
	workers map[string]*podWorker // "namespace/name" -> pod
	running sync.WaitGroup        // pod workers

	recMu sync.Mutex
	pids  map[int]uint64 // running container PIDs -> start time
}

// New returns a Kubelet for valid options.
func New(o Options) (*Kubelet, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("invalid kubelet options: %w", err)
	}
	o.Namespaces = slices.Compact(slices.Sorted(slices.Values(o.Namespaces)))
	return &Kubelet{
		opts:    o,
		queue:   workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		stores:  map[string]cache.Store{},
		workers: map[string]*podWorker{},
		pids:    map[int]uint64{},
	}, nil
}

// Run registers the Node and runs its pods until ctx ends. Then it stops
// every container (SIGTERM, SIGKILL after the pod's grace period, at most
// shutdownGrace) and removes the pods' networks, but leaves the Pod objects
// alone, as a kubelet going away does. Containers and networks that a
// crashed earlier run left behind are removed first. Run may be called
// once.
func (k *Kubelet) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("node", k.opts.NodeName)
	ctx = klog.NewContext(ctx, logger)
	if err := os.MkdirAll(filepath.Join(k.opts.StateDir, "pods"), 0o755); err != nil {
		return fmt.Errorf("failed to create the kubelet state directory: %w", err)
	}
	if err := writeResolverFiles(k.opts.StateDir); err != nil {
		return err
	}
	if err := KillRecorded(k.opts.StateDir); err != nil {
		logger.Error(err, "Failed to kill containers of an earlier run")
	}
	cleaner, _ := k.opts.Network.(interface{ Cleanup(context.Context) error })
	if cleaner != nil {
		if err := cleaner.Cleanup(ctx); err != nil {
			return fmt.Errorf("failed to remove pod networks of an earlier run: %w", err)
		}
	}
	if err := k.registerNode(ctx); err != nil {
		return err
	}

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.opts.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	k.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: k.opts.NodeName})

	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			k.queue.Add(key)
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}
	var synced []cache.InformerSynced
	for _, ns := range k.opts.Namespaces {
		factory := informers.NewSharedInformerFactoryWithOptions(k.opts.Client, 0, informers.WithNamespace(ns))
		informer := factory.Core().V1().Pods().Informer()
		if _, err := informer.AddEventHandler(handler); err != nil {
			return fmt.Errorf("failed to watch pods in %s: %w", ns, err)
		}
		k.stores[ns] = informer.GetStore()
		synced = append(synced, informer.HasSynced)
		factory.Start(ctx.Done())
		defer factory.Shutdown()
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("failed to list pods: %w", ctx.Err())
	}
	logger.Info("Kubelet stand-in started", "namespaces", k.opts.Namespaces)

	var loops sync.WaitGroup
	loops.Go(func() { k.heartbeat(ctx) })
	if k.opts.API != nil {
		loops.Go(func() { k.serveAPI(ctx) })
	}
	for range syncWorkers {
		loops.Go(func() {
			for k.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	k.queue.ShutDown()
	loops.Wait()
	// Pod workers stop on their own once ctx is done.
	k.running.Wait()
	if cleaner != nil {
		if err := cleaner.Cleanup(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("failed to remove pod networks: %w", err)
		}
	}
	logger.Info("Kubelet stand-in stopped")
	return nil
}

func (k *Kubelet) processNext(ctx context.Context) bool {
	key, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(key)
	if err := k.syncPod(ctx, key); err != nil {
		klog.FromContext(ctx).Error(err, "Failed to sync pod", "pod", key)
		k.queue.AddRateLimited(key)
		return true
	}
	k.queue.Forget(key)
	return true
}

// syncPod binds, starts, updates or stops the pod named by key.
func (k *Kubelet) syncPod(ctx context.Context, key string) error {
	ns, _, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	obj, exists, err := k.stores[ns].GetByKey(key)
	if err != nil {
		return err
	}
	k.mu.Lock()
	w := k.workers[key]
	k.mu.Unlock()
	var pod *corev1.Pod
	if exists {
		pod = obj.(*corev1.Pod)
	}
	if w != nil && (pod == nil || pod.UID != w.uid) {
		// Gone from the API (or replaced by a namesake): nothing to delete.
		w.terminate(orphanGrace, false)
		w = nil
	}
	if pod == nil {
		return nil
	}
	switch pod.Spec.NodeName {
	case "":
		return k.schedule(ctx, pod)
	case k.opts.NodeName:
	default:
		return nil
	}
	if w == nil {
		if pod.DeletionTimestamp != nil {
			return k.deletePod(ctx, pod) // nothing runs here for it
		}
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			return nil
		}
		w = k.startWorker(ctx, pod)
	}
	w.update(pod)
	return nil
}

func (k *Kubelet) startWorker(ctx context.Context, pod *corev1.Pod) *podWorker {
	w := newPodWorker(ctx, k, pod)
	k.mu.Lock()
	k.workers[w.key] = w
	k.mu.Unlock()
	k.running.Go(func() {
		w.run(w.ctx)
		k.mu.Lock()
		if k.workers[w.key] == w {
			delete(k.workers, w.key)
		}
		k.mu.Unlock()
	})
	return w
}

// deletePod removes a pod whose containers are gone, as the kubelet does
// at the end of graceful deletion.
func (k *Kubelet) deletePod(ctx context.Context, pod *corev1.Pod) error {
	err := k.opts.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("failed to delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// PodInfo describes a pod the Kubelet runs.
type PodInfo struct {
	// Namespace, Name and UID identify the pod.
	Namespace, Name string
	UID             types.UID
	// Netns is the pod's network namespace and IP its address (empty until
	// the network is set up).
	Netns, IP string
	// InitContainers and Containers describe the pod's containers.
	InitContainers, Containers []ContainerInfo
}

// ContainerInfo describes a container of a PodInfo.
type ContainerInfo struct {
	// Name is the container's name.
	Name string
	// PID is the container process's PID; 0 when it does not run.
	PID int
	// Restarts is the container's restart count.
	Restarts int32
	// Ready is the container's readiness.
	Ready bool
	// LogPath is the file that receives the container's output.
	LogPath string
}

// Pods returns a snapshot of the pods the Kubelet runs, sorted by
// namespace and name.
func (k *Kubelet) Pods() []PodInfo {
	k.mu.Lock()
	workers := make([]*podWorker, 0, len(k.workers))
	for _, w := range k.workers {
		workers = append(workers, w)
	}
	k.mu.Unlock()
	slices.SortFunc(workers, func(a, b *podWorker) int { return strings.Compare(a.key, b.key) })
	out := make([]PodInfo, 0, len(workers))
	for _, w := range workers {
		out = append(out, w.info())
	}
	return out
}

// imageRepository strips the tag and digest from an image reference.
func imageRepository(image string) string {
	repo, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo
}
