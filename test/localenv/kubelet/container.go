package kubelet

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// nobody is the user of runAsNonRoot containers that name no user.
	nobody = 65534
	// errorFD is the descriptor on which PodExecMain reports why it failed.
	errorFD = 3
)

// container is one container of a pod.
type container struct {
	spec     corev1.Container
	init     bool
	binary   string                        // <image root>/<command[0]>
	imageErr *corev1.ContainerStateWaiting // why the container can never start
	logPath  string

	mu       sync.Mutex
	pid      int
	state    corev1.ContainerState
	last     *corev1.ContainerStateTerminated // the latest termination
	prev     *corev1.ContainerStateTerminated // the one before it
	restarts int32
	started  bool
	ready    bool
}

func (k *Kubelet) newContainer(spec corev1.Container, init bool, logDir, waiting string) *container {
	c := &container{
		spec: spec, init: init, logPath: filepath.Join(logDir, spec.Name+".log"),
		state: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}},
	}
	root, ok := k.opts.Images[imageRepository(spec.Image)]
	switch {
	case !ok:
		c.imageErr = &corev1.ContainerStateWaiting{Reason: "ErrImagePull",
			Message: fmt.Sprintf("image %q is not available on this node: no image root for repository %q", spec.Image, imageRepository(spec.Image))}
	case len(spec.Command) == 0:
		c.imageErr = &corev1.ContainerStateWaiting{Reason: "CreateContainerError",
			Message: "the container has no command: images of the local kubelet stand-in have no entrypoint"}
	default:
		c.binary = filepath.Join(root, filepath.Clean("/"+spec.Command[0]))
	}
	if c.imageErr != nil {
		c.state = corev1.ContainerState{Waiting: c.imageErr}
	}
	return c
}

func (c *container) status() corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := corev1.ContainerStatus{
		Name: c.spec.Name, Image: c.spec.Image, ImageID: c.binary, RestartCount: c.restarts,
		Ready: c.ready, Started: ptr.To(c.started), State: c.state,
	}
	s.LastTerminationState.Terminated = c.last
	if c.state.Terminated != nil {
		s.LastTerminationState.Terminated = c.prev
		s.ContainerID = c.state.Terminated.ContainerID
	}
	if c.pid != 0 {
		s.ContainerID = containerID(c.pid)
	}
	return s
}

func (c *container) info() ContainerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ContainerInfo{Name: c.spec.Name, PID: c.pid, Restarts: c.restarts, Ready: c.ready, LogPath: c.logPath}
}

func (c *container) setWaiting(reason, message string) {
	c.mu.Lock()
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
	c.mu.Unlock()
}

func containerID(pid int) string { return fmt.Sprintf("local://%d", pid) }

// runContainer runs c, restarting it as the pod's restart policy says,
// until it is done or ctx ends. It returns true when c completed
// successfully and will not run again.
func (w *podWorker) runContainer(ctx context.Context, c *container) bool {
	if c.imageErr != nil {
		// It will never start; the pod waits until it is deleted.
		w.event(corev1.EventTypeWarning, "Failed", "Error: %s: %s", c.imageErr.Reason, c.imageErr.Message)
		w.notify()
		<-ctx.Done()
		return false
	}
	pod, _, _ := w.snapshot()
	policy := pod.Spec.RestartPolicy
	backoff := initialBackoff
	for {
		started := time.Now()
		code, err := w.runOnce(ctx, c)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			restart := policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && code != 0)
			if c.init {
				restart = code != 0 && policy != corev1.RestartPolicyNever
			}
			if !restart {
				return code == 0
			}
			if time.Since(started) >= resetBackoffAfter {
				backoff = initialBackoff
			}
			c.mu.Lock()
			c.restarts++
			c.mu.Unlock()
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", backoff, c.spec.Name, w.key)
			c.setWaiting("CrashLoopBackOff", msg)
			w.event(corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s", c.spec.Name)
			w.notify()
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// runOnce starts c's process and waits for it to exit, or stops it when
// ctx ends. An error means it could not start (the waiting state says why).
func (w *podWorker) runOnce(ctx context.Context, c *container) (int, error) {
	logger := klog.FromContext(ctx).WithValues("container", c.spec.Name)
	_, netns, _ := w.snapshot()
	spec, reason, err := w.execSpec(ctx, c)
	var cmd *exec.Cmd
	var logFile, errRead, errWrite *os.File
	if err == nil {
		reason, spec.ErrorFD = "CreateContainerError", errorFD
		cmd, err = w.command(netns, filepath.Join(w.dir, c.spec.Name+".json"), spec)
	}
	if err == nil {
		logFile, err = os.OpenFile(c.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	}
	if err == nil {
		errRead, errWrite, err = os.Pipe()
	}
	if err == nil {
		cmd.Stdout, cmd.Stderr, cmd.ExtraFiles = logFile, logFile, []*os.File{errWrite}
		err = cmd.Start()
	}
	for _, f := range []*os.File{logFile, errWrite} {
		if f != nil {
			_ = f.Close()
		}
	}
	if err != nil {
		if errRead != nil {
			_ = errRead.Close()
		}
		c.setWaiting(reason, err.Error())
		w.event(corev1.EventTypeWarning, "Failed", "Error: %s: %v", reason, err)
		w.notify()
		return 0, err
	}
	// PodExecMain reports why it failed on the pipe; exec closes it.
	startErr := make(chan string, 1)
	go func() {
		msg, _ := io.ReadAll(errRead)
		_ = errRead.Close()
		startErr <- string(msg)
	}()
	pid := cmd.Process.Pid
	w.k.recordPID(pid)
	startedAt := now()
	c.mu.Lock()
	c.pid = pid
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	c.started = c.spec.StartupProbe == nil
	c.ready = c.started && c.spec.ReadinessProbe == nil
	c.mu.Unlock()
	w.notify()
	logger.V(2).Info("Started container", "pid", pid)
	w.event(corev1.EventTypeNormal, "Started", "Started container %s", c.spec.Name)

	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	probeCtx, stopProbes := context.WithCancel(ctx)
	var probes sync.WaitGroup
	probes.Go(func() {
		w.probe(probeCtx, c, func(grace time.Duration) { stopProcess(cmd.Process, grace, exited) })
	})
	select {
	case <-exited:
	case <-ctx.Done():
		w.event(corev1.EventTypeNormal, "Killing", "Stopping container %s", c.spec.Name)
		stopProcess(cmd.Process, w.graceFor(), exited)
	}
	stopProbes()
	probes.Wait()
	// Leftovers of the process group die with the container.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	w.k.forgetPID(pid)

	term := &corev1.ContainerStateTerminated{StartedAt: startedAt, FinishedAt: now(), ContainerID: containerID(pid), Reason: "Completed"}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		term.ExitCode, term.Signal = 128+int32(ws.Signal()), int32(ws.Signal())
	} else {
		term.ExitCode = int32(cmd.ProcessState.ExitCode())
	}
	if term.ExitCode != 0 {
		term.Reason = "Error"
	}
	var msg string
	select {
	case msg = <-startErr:
	case <-time.After(time.Second): // the pipe leaked into another process
	}
	if msg != "" {
		term.Reason, term.Message = "StartError", msg
	} else if c.spec.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError && term.ExitCode != 0 {
		term.Message = logTail(c.logPath, 2048)
	}
	logger.V(2).Info("Container exited", "pid", pid, "exitCode", term.ExitCode, "reason", term.Reason, "message", term.Message)
	c.mu.Lock()
	c.pid, c.started, c.ready = 0, false, false
	c.prev, c.last = c.last, term
	c.state = corev1.ContainerState{Terminated: term}
	c.mu.Unlock()
	w.notify()
	return int(term.ExitCode), nil
}

// command writes spec to specPath and returns the command that runs it in
// the pod's network namespace through PodExecMain.
func (w *podWorker) command(netns, specPath string, spec *execSpec) (*exec.Cmd, error) {
	if netns == "" {
		return nil, errors.New("the pod has no network namespace")
	}
	data, err := json.Marshal(spec)
	if err == nil {
		err = os.WriteFile(specPath, data, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to write the container spec: %w", err)
	}
	args := append(append([]string{"netns", "exec", netns}, w.k.opts.PodExec...), "--spec="+specPath)
	// Not CommandContext: the process is stopped gracefully, by PID.
	cmd := exec.Command("ip", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// stopProcess sends SIGTERM to p, and SIGKILL to its process group when it
// has not exited after grace; it returns once p has exited.
func stopProcess(p *os.Process, grace time.Duration, exited <-chan struct{}) {
	_ = p.Signal(syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exited:
		return
	case <-timer.C:
	}
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	_ = p.Kill()
	<-exited
}

// execSpec is what PodExecMain needs to start c. On error it also returns
// the waiting reason to report.
func (w *podWorker) execSpec(ctx context.Context, c *container) (*execSpec, string, error) {
	pod, _, ip := w.snapshot()
	env, err := w.k.env(ctx, pod, &c.spec, ip)
	if err != nil {
		return nil, "CreateContainerConfigError", err
	}
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var argv []string
	for _, a := range append(slices.Clone(c.spec.Command), c.spec.Args...) {
		argv = append(argv, expand(a, vars))
	}
	uid, gid, groups, err := user(pod, &c.spec)
	if err != nil {
		return nil, "CreateContainerConfigError", err
	}
	if err := canExecute(c.binary, uid, gid, groups); err != nil {
		return nil, "CreateContainerError", err
	}
	mounts, err := w.mounts(pod, &c.spec, vars)
	if err != nil {
		return nil, "CreateContainerError", err
	}
	hostname := pod.Name
	if pod.Spec.Hostname != "" {
		hostname = pod.Spec.Hostname
	}
	dir := c.spec.WorkingDir
	if dir == "" {
		dir = "/"
	}
	return &execSpec{
		Mounts: mounts, Hostname: hostname[:min(len(hostname), 63)], UID: uid, GID: gid, Groups: groups,
		Dir: dir, Binary: c.binary, Args: argv, Env: env,
		ReadOnlyRoot: c.spec.SecurityContext != nil && ptr.Deref(c.spec.SecurityContext.ReadOnlyRootFilesystem, false),
	}, "", nil
}

// mounts are c's bind mounts, parents before children; missing mount
// points are created (and recorded).
func (w *podWorker) mounts(pod *corev1.Pod, c *corev1.Container, vars map[string]string) ([]bindMount, error) {
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	var mounts []bindMount
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("volume mount %s: the pod has no volume %q", m.MountPath, m.Name)
		}
		root := filepath.Join(w.dir, "volumes", m.Name)
		src := root
		sub := m.SubPath
		if m.SubPathExpr != "" {
			sub = expand(m.SubPathExpr, vars)
		}
		if sub != "" {
			if !filepath.IsLocal(sub) {
				return nil, fmt.Errorf("volume mount %s: subPath %q must be a relative path within the volume", m.MountPath, sub)
			}
			if v.EmptyDir != nil {
				if err := os.MkdirAll(filepath.Join(root, sub), 0o777); err != nil {
					return nil, fmt.Errorf("failed to create subPath %s: %w", sub, err)
				}
			}
			realRoot, err1 := filepath.EvalSymlinks(root)
			real, err2 := filepath.EvalSymlinks(filepath.Join(root, sub))
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("volume mount %s: subPath %q: %w", m.MountPath, sub, err)
			}
			if !strings.HasPrefix(real, realRoot+string(filepath.Separator)) {
				return nil, fmt.Errorf("volume mount %s: subPath %q leaves the volume", m.MountPath, sub)
			}
			src = real
		}
		info, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("volume mount %s: %w", m.MountPath, err)
		}
		if err := w.k.ensureMountPoint(m.MountPath, !info.IsDir()); err != nil {
			return nil, err
		}
		// As the kubelet does, API data volumes are always read-only.
		ro := m.ReadOnly || v.Secret != nil || v.ConfigMap != nil || v.DownwardAPI != nil || v.Projected != nil
		mounts = append(mounts, bindMount{Source: src, Target: m.MountPath, ReadOnly: ro})
	}
	if w.k.opts.HostsFile != nil {
		if hosts := w.k.opts.HostsFile(pod); hosts != "" {
			mounts = append(mounts, bindMount{Source: hosts, Target: "/etc/hosts", ReadOnly: true})
			// Names resolve from that file only: an unknown name fails at
			// once as not found, and no lookup leaves the environment.
			for _, f := range resolverFiles {
				mounts = append(mounts, bindMount{Source: filepath.Join(w.k.opts.StateDir, f.name), Target: f.target, ReadOnly: true})
			}
		}
	}
	slices.SortStableFunc(mounts, func(a, b bindMount) int {
		return strings.Count(filepath.Clean(a.Target), "/") - strings.Count(filepath.Clean(b.Target), "/")
	})
	return mounts, nil
}

// user is the uid, gid and supplementary groups c runs with.
func user(pod *corev1.Pod, c *corev1.Container) (uid, gid int, groups []int, err error) {
	var runAsUser, runAsGroup *int64
	nonRoot := false
	if s := pod.Spec.SecurityContext; s != nil {
		runAsUser, runAsGroup, nonRoot = s.RunAsUser, s.RunAsGroup, ptr.Deref(s.RunAsNonRoot, false)
		for _, g := range s.SupplementalGroups {
			groups = append(groups, int(g))
		}
		if s.FSGroup != nil {
			groups = append(groups, int(*s.FSGroup))
		}
	}
	if s := c.SecurityContext; s != nil {
		runAsUser = cmp.Or(s.RunAsUser, runAsUser)
		runAsGroup = cmp.Or(s.RunAsGroup, runAsGroup)
		nonRoot = ptr.Deref(s.RunAsNonRoot, nonRoot)
	}
	switch {
	case runAsUser != nil:
		uid = int(*runAsUser)
	case nonRoot:
		uid, gid = nobody, nobody
	}
	if runAsGroup != nil {
		gid = int(*runAsGroup)
	}
	if nonRoot && uid == 0 {
		return 0, 0, nil, errors.New("container has runAsNonRoot and runAsUser 0 (root)")
	}
	return uid, gid, groups, nil
}

// canExecute explains why uid cannot execute path, if it cannot.
func canExecute(path string, uid, gid int, groups []int) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("the image has no binary %s: %w", path, err)
	}
	if info.IsDir() {
		return fmt.Errorf("the image's %s is a directory, not a binary", path)
	}
	if uid == 0 {
		if info.Mode()&0o111 == 0 {
			return fmt.Errorf("binary %s (mode %s) is not executable", path, info.Mode())
		}
		return nil
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		if di, err := os.Stat(dir); err == nil && !permitted(di, uid, gid, groups) {
			return fmt.Errorf("binary %s is not executable by uid %d gid %d: directory %s (mode %s) is not searchable by it", path, uid, gid, dir, di.Mode())
		}
		if dir == "/" {
			break
		}
	}
	if !permitted(info, uid, gid, groups) {
		st, _ := info.Sys().(*syscall.Stat_t)
		return fmt.Errorf("binary %s (mode %s, owner %d:%d) is not executable by uid %d gid %d", path, info.Mode(), st.Uid, st.Gid, uid, gid)
	}
	return nil
}

// permitted reports whether uid, gid or groups may execute (or search) f.
func permitted(f os.FileInfo, uid, gid int, groups []int) bool {
	st, ok := f.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := f.Mode().Perm()
	switch {
	case int(st.Uid) == uid:
		return perm&0o100 != 0
	case int(st.Gid) == gid || slices.Contains(groups, int(st.Gid)):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// logTail returns at most n bytes from the end of the file at path.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return ""
	}
	buf := make([]byte, min(n, info.Size()))
	read, _ := f.ReadAt(buf, info.Size()-int64(len(buf)))
	return strings.TrimSpace(string(buf[:read]))
}
