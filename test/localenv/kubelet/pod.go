package kubelet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// statusResync is how often a pod's status is compared with the API.
	statusResync = 10 * time.Second
	// volumeResync is how often volumes are refreshed from their sources.
	volumeResync = 10 * time.Second
	// shutdownGrace caps the grace period of containers stopped because the
	// Kubelet stops.
	shutdownGrace = 10 * time.Second
	// orphanGrace is the grace period of pods that vanished from the API.
	orphanGrace = time.Second
	// initialBackoff and maxBackoff bound the delay before a container
	// restarts; the delay doubles with each restart and resets after
	// resetBackoffAfter of running.
	initialBackoff    = time.Second
	maxBackoff        = 30 * time.Second
	resetBackoffAfter = time.Minute
)

// podWorker runs one pod: its network, volumes and containers, and reports
// its status.
type podWorker struct {
	k      *Kubelet
	uid    types.UID
	key    string // namespace/name
	dir    string // volumes and container specs
	logDir string
	ctx    context.Context
	cancel context.CancelFunc
	dirty  chan struct{}
	inits  []*container
	ctrs   []*container

	// Only the run goroutine uses tokens and written; only the status loop
	// lastWritten.
	tokens      map[string]token
	written     map[string]string // volume -> payloadSum of its content
	lastWritten *corev1.PodStatus
	lastWrite   time.Time

	mu        sync.Mutex
	pod       *corev1.Pod
	netns, ip string
	startTime metav1.Time
	stopping  bool
	grace     time.Duration
	deleteObj bool
}

func newPodWorker(ctx context.Context, k *Kubelet, pod *corev1.Pod) *podWorker {
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("pod", klog.KObj(pod), "podUID", pod.UID))
	ctx, cancel := context.WithCancel(ctx)
	w := &podWorker{
		k: k, uid: pod.UID, key: podKey(pod), ctx: ctx, cancel: cancel, dirty: make(chan struct{}, 1),
		dir:    filepath.Join(k.opts.StateDir, "pods", string(pod.UID)),
		logDir: filepath.Join(k.opts.StateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		tokens: map[string]token{}, written: map[string]string{}, pod: pod, startTime: now(),
	}
	for _, c := range pod.Spec.InitContainers {
		w.inits = append(w.inits, k.newContainer(c, true, w.logDir, "PodInitializing"))
	}
	waiting := "ContainerCreating"
	if len(w.inits) > 0 {
		waiting = "PodInitializing"
	}
	for _, c := range pod.Spec.Containers {
		w.ctrs = append(w.ctrs, k.newContainer(c, false, w.logDir, waiting))
	}
	return w
}

// update hands the worker the pod's latest version.
func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	if pod.DeletionTimestamp != nil {
		grace := time.Duration(ptr.Deref(pod.DeletionGracePeriodSeconds, ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 30))) * time.Second
		w.terminate(grace, true)
	}
	w.notify()
}

// terminate stops the pod's containers with grace period grace and, when
// deleteObject is set, deletes the Pod afterwards. The first call wins.
func (w *podWorker) terminate(grace time.Duration, deleteObject bool) {
	w.mu.Lock()
	if !w.stopping {
		w.stopping, w.grace, w.deleteObj = true, grace, deleteObject
	}
	w.mu.Unlock()
	w.cancel()
}

// graceFor is the grace period of containers stopped now.
func (w *podWorker) graceFor() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return w.grace
	}
	return min(time.Duration(ptr.Deref(w.pod.Spec.TerminationGracePeriodSeconds, 30))*time.Second, shutdownGrace)
}

func (w *podWorker) snapshot() (pod *corev1.Pod, netns, ip string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.netns, w.ip
}

func (w *podWorker) notify() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

func (w *podWorker) event(eventType, reason, format string, args ...any) {
	pod, _, _ := w.snapshot()
	w.k.recorder.Eventf(pod, eventType, reason, format, args...)
}

// run runs the pod until it is stopped (ctx is w.ctx), then cleans up after
// it.
func (w *podWorker) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	logger.V(2).Info("Starting pod")
	var wg sync.WaitGroup
	wg.Go(func() { w.statusLoop(ctx) })
	if w.prepare(ctx) && w.runInits(ctx) {
		var ctrs sync.WaitGroup
		for _, c := range w.ctrs {
			ctrs.Go(func() { w.runContainer(ctx, c) })
		}
		done := make(chan struct{})
		go func() { ctrs.Wait(); close(done) }()
		ticker := time.NewTicker(volumeResync)
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-done:
				// Terminal: no container will run again.
				w.teardownNetwork(ctx)
				break loop
			case <-ticker.C:
				if err := w.syncVolumes(ctx); err != nil && ctx.Err() == nil {
					w.event(corev1.EventTypeWarning, "FailedMount", "Failed to refresh volumes: %v", err)
				}
			}
		}
		ticker.Stop()
		<-done
	}
	<-ctx.Done()
	wg.Wait()
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	w.teardownNetwork(cleanupCtx)
	if err := os.RemoveAll(w.dir); err != nil {
		logger.Error(err, "Failed to remove the pod directory", "dir", w.dir)
	}
	w.mu.Lock()
	pod, deleteObj := w.pod, w.deleteObj
	w.mu.Unlock()
	if deleteObj {
		if err := w.k.deletePod(cleanupCtx, pod); err != nil {
			logger.Error(err, "Failed to delete pod")
		}
	}
	logger.V(2).Info("Stopped pod", "deleted", deleteObj)
}

// prepare checks the pod, sets up its network and writes its volumes,
// retrying with back-off; it returns false when ctx ends first.
func (w *podWorker) prepare(ctx context.Context) bool {
	pod, _, _ := w.snapshot()
	if err := checkPod(pod); err != nil {
		// The spec never changes: report and wait to be stopped.
		w.setWaiting("CreateContainerConfigError", err.Error())
		w.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", "%v", err)
		return false
	}
	if err := os.MkdirAll(w.logDir, 0o755); err != nil {
		klog.FromContext(ctx).Error(err, "Failed to create the pod log directory")
	}
	backoff := initialBackoff
	for {
		err := w.setupNetwork(ctx)
		if err == nil {
			if err = w.syncVolumes(ctx); err != nil {
				w.event(corev1.EventTypeWarning, "FailedMount", "MountVolume failed: %v", err)
			}
		} else {
			w.event(corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to set up the pod network: %v", err)
		}
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		w.setWaiting("ContainerCreating", err.Error())
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (w *podWorker) setupNetwork(ctx context.Context) error {
	if _, ns, _ := w.snapshot(); ns != "" {
		return nil
	}
	ns, ip, err := w.k.opts.Network.Setup(ctx, string(w.uid))
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.netns, w.ip = ns, ip
	w.mu.Unlock()
	w.notify()
	return nil
}

// teardownNetwork removes the pod's network; status keeps reporting its IP.
func (w *podWorker) teardownNetwork(ctx context.Context) {
	w.mu.Lock()
	ns := w.netns
	w.netns = ""
	w.mu.Unlock()
	if ns == "" {
		return
	}
	if err := w.k.opts.Network.Teardown(ctx, string(w.uid)); err != nil {
		klog.FromContext(ctx).Error(err, "Failed to remove the pod network", "netns", ns)
	}
}

// setWaiting sets the waiting state of every container that has not run.
func (w *podWorker) setWaiting(reason, message string) {
	for _, c := range append(append([]*container(nil), w.inits...), w.ctrs...) {
		c.mu.Lock()
		if c.pid == 0 && c.last == nil && c.imageErr == nil {
			c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
		}
		c.mu.Unlock()
	}
	w.notify()
}

// runInits runs the init containers to completion, in order; it returns
// false when the pod cannot go on.
func (w *podWorker) runInits(ctx context.Context) bool {
	for _, c := range w.inits {
		if !w.runContainer(ctx, c) {
			return false
		}
	}
	return true
}

// checkPod rejects what the stand-in cannot run.
func checkPod(pod *corev1.Pod) error {
	var errs []error
	if pod.Spec.HostNetwork {
		errs = append(errs, errors.New("hostNetwork pods are not supported by the local kubelet stand-in"))
	}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.EmptyDir != nil, v.Secret != nil, v.ConfigMap != nil, v.DownwardAPI != nil:
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret == nil && s.ConfigMap == nil && s.DownwardAPI == nil && s.ServiceAccountToken == nil {
					errs = append(errs, fmt.Errorf("volume %q: projected sources other than secret, configMap, downwardAPI and serviceAccountToken are not supported by the local kubelet stand-in", v.Name))
				}
			}
		default:
			errs = append(errs, fmt.Errorf("volume %q: %s volumes are not supported by the local kubelet stand-in (only secret, configMap, downwardAPI, projected and emptyDir)", v.Name, volumeType(v)))
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			errs = append(errs, fmt.Errorf("init container %q: sidecar (restartable) init containers are not supported by the local kubelet stand-in", c.Name))
		}
	}
	return errors.Join(errs...)
}

// volumeType names the type of a volume, e.g. "hostPath".
func volumeType(v corev1.Volume) string {
	data, _ := json.Marshal(v.VolumeSource)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(data, &m)
	for t := range m {
		return t
	}
	return "unknown"
}

// statusLoop writes the pod's status when it changes.
func (w *podWorker) statusLoop(ctx context.Context) {
	ticker := time.NewTicker(statusResync)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.dirty:
		case <-ticker.C:
		}
		if err := w.writeStatus(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).V(2).Info("Failed to write pod status; will retry", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
				w.notify()
			}
		}
	}
}

func (w *podWorker) writeStatus(ctx context.Context) error {
	pod, _, _ := w.snapshot()
	status := w.status(pod)
	if equality.Semantic.DeepEqual(&pod.Status, status) {
		return nil
	}
	// Already written, and the informer has not caught up yet.
	if w.lastWritten != nil && equality.Semantic.DeepEqual(w.lastWritten, status) && time.Since(w.lastWrite) < statusResync {
		return nil
	}
	// A merge patch with the UID as precondition: lists are replaced whole.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": pod.UID}, "status": status})
	if err != nil {
		return err
	}
	updated, err := w.k.opts.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("failed to patch the status of pod %s: %w", w.key, err)
	}
	klog.FromContext(ctx).V(4).Info("Wrote pod status", "phase", status.Phase)
	w.lastWritten, w.lastWrite = status, time.Now()
	w.mu.Lock()
	if w.pod.ResourceVersion == pod.ResourceVersion {
		w.pod = updated
	}
	w.mu.Unlock()
	return nil
}

// status is the pod status to report, based on the stored one.
func (w *podWorker) status(pod *corev1.Pod) *corev1.PodStatus {
	w.mu.Lock()
	netns, ip, startTime := w.netns, w.ip, w.startTime
	w.mu.Unlock()
	s := pod.Status.DeepCopy()
	s.HostIP, s.HostIPs = w.k.opts.NodeIP, []corev1.HostIP{{IP: w.k.opts.NodeIP}}
	if ip != "" {
		s.PodIP, s.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	}
	if s.StartTime == nil {
		s.StartTime = &startTime
	}
	s.InitContainerStatuses, s.ContainerStatuses = nil, nil
	initialized, initFailed := true, false
	for _, c := range w.inits {
		cs := c.status()
		s.InitContainerStatuses = append(s.InitContainerStatuses, cs)
		succeeded := cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0
		initialized = initialized && succeeded
		initFailed = initFailed || (cs.State.Terminated != nil && !succeeded)
	}
	var fresh, running, restarting, failed int
	var unready []string
	for _, c := range w.ctrs {
		cs := c.status()
		s.ContainerStatuses = append(s.ContainerStatuses, cs)
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failed++
			}
		case cs.LastTerminationState.Terminated != nil:
			restarting++
		default:
			fresh++
		}
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	switch {
	case initFailed:
		s.Phase = corev1.PodFailed
	case !initialized || fresh > 0:
		s.Phase = corev1.PodPending
	case running > 0 || restarting > 0:
		s.Phase = corev1.PodRunning
	case failed > 0:
		s.Phase = corev1.PodFailed
	default:
		s.Phase = corev1.PodSucceeded
	}
	ready := initialized && len(unready) == 0 && s.Phase == corev1.PodRunning
	notReady := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	prev := s.Conditions
	if w.lastWritten != nil {
		prev = w.lastWritten.Conditions
	}
	conditions := []corev1.PodCondition{
		condition(prev, corev1.PodReadyToStartContainers, netns != "" || ip != "", "", ""),
		condition(prev, corev1.PodInitialized, initialized, "ContainersNotInitialized", "containers with incomplete status: init containers"),
		condition(prev, corev1.ContainersReady, ready, "ContainersNotReady", notReady),
		condition(prev, corev1.PodReady, ready, "ContainersNotReady", notReady),
		condition(prev, corev1.PodScheduled, true, "", ""),
	}
	for _, c := range s.Conditions {
		if !slices.ContainsFunc(conditions, func(o corev1.PodCondition) bool { return o.Type == c.Type }) {
			conditions = append(conditions, c)
		}
	}
	s.Conditions = conditions
	return s
}

// condition builds a pod condition, keeping the transition time of an
// earlier one with the same status.
func condition(prev []corev1.PodCondition, t corev1.PodConditionType, ok bool, reason, message string) corev1.PodCondition {
	c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now()}
	if !ok {
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, reason, message
	}
	for _, p := range prev {
		if p.Type == t && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
	}
	return c
}

func (w *podWorker) info() PodInfo {
	pod, netns, ip := w.snapshot()
	info := PodInfo{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, Netns: netns, IP: ip}
	for _, c := range w.inits {
		info.InitContainers = append(info.InitContainers, c.info())
	}
	for _, c := range w.ctrs {
		info.Containers = append(info.Containers, c.info())
	}
	return info
}

// now is the current time at the API's precision (seconds), so that
// statuses compare equal after a round trip.
func now() metav1.Time { return metav1.NewTime(time.Now().Truncate(time.Second)) }
