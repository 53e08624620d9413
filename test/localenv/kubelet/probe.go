package kubelet

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// probe runs c's probes for one run of its process: the startup probe
// until it succeeds, then the liveness and readiness probes. kill stops the
// process (with a grace period) when a startup or liveness probe fails.
func (w *podWorker) probe(ctx context.Context, c *container, kill func(time.Duration)) {
	if p := c.spec.StartupProbe; p != nil {
		if !w.probeLoop(ctx, c, "Startup", p, func(bool) bool { return true }) {
			if ctx.Err() == nil {
				w.event(corev1.EventTypeNormal, "Killing", "Container %s failed startup probe, will be restarted", c.spec.Name)
				kill(w.probeGrace(p))
			}
			return
		}
		c.mu.Lock()
		c.started, c.ready = true, c.spec.ReadinessProbe == nil
		c.mu.Unlock()
		w.notify()
	}
	var wg sync.WaitGroup
	if p := c.spec.ReadinessProbe; p != nil {
		wg.Go(func() {
			w.probeLoop(ctx, c, "Readiness", p, func(ok bool) bool {
				c.mu.Lock()
				changed := c.ready != ok
				c.ready = ok
				c.mu.Unlock()
				if changed {
					w.notify()
				}
				return false
			})
		})
	}
	if p := c.spec.LivenessProbe; p != nil {
		wg.Go(func() {
			if !w.probeLoop(ctx, c, "Liveness", p, func(ok bool) bool { return !ok }) && ctx.Err() == nil {
				w.event(corev1.EventTypeNormal, "Killing", "Container %s failed liveness probe, will be restarted", c.spec.Name)
				kill(w.probeGrace(p))
			}
		})
	}
	wg.Wait()
}

func (w *podWorker) probeGrace(p *corev1.Probe) time.Duration {
	if p.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	pod, _, _ := w.snapshot()
	return time.Duration(ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 30)) * time.Second
}

// probeLoop runs p after its initial delay and then every period. When the
// consecutive successes or failures reach their threshold it calls report
// with the result; it returns that result once report returns true, and
// false when ctx ends.
func (w *podWorker) probeLoop(ctx context.Context, c *container, kind string, p *corev1.Probe, report func(ok bool) (stop bool)) bool {
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	successThreshold, failureThreshold := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	timer := time.NewTimer(time.Duration(p.InitialDelaySeconds) * time.Second)
	defer timer.Stop()
	var successes, failures int32
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
		err := w.probeOnce(ctx, c, p)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
			klog.FromContext(ctx).V(4).Info("Probe failed", "container", c.spec.Name, "probe", kind, "err", err)
			w.event(corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
		}
		if (err == nil && successes >= successThreshold) || (err != nil && failures >= failureThreshold) {
			if report(err == nil) {
				return err == nil
			}
		}
		timer.Reset(period)
	}
}

// probeOnce runs p once inside the pod's network namespace.
func (w *podWorker) probeOnce(ctx context.Context, c *container, p *corev1.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(max(p.TimeoutSeconds, 1))*time.Second)
	defer cancel()
	_, ns, _ := w.snapshot()
	switch {
	case p.HTTPGet != nil:
		return httpProbe(ctx, ns, c, p.HTTPGet)
	case p.TCPSocket != nil:
		port, err := probePort(p.TCPSocket.Port, c)
		if err != nil {
			return err
		}
		conn, err := netns.DialContext(ctx, ns, net.JoinHostPort(cmp.Or(p.TCPSocket.Host, "127.0.0.1"), port))
		if err != nil {
			return err
		}
		return conn.Close()
	case p.Exec != nil:
		return w.execProbe(ctx, ns, c, p.Exec.Command)
	default:
		return errors.New("only httpGet, tcpSocket and exec probes are supported by the local kubelet stand-in")
	}
}

func httpProbe(ctx context.Context, ns string, c *container, g *corev1.HTTPGetAction) error {
	port, err := probePort(g.Port, c)
	if err != nil {
		return err
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return netns.DialContext(ctx, ns, addr)
		},
		// As the kubelet's, HTTPS probes do not verify certificates.
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // probes skip verification
		DisableKeepAlives: true,
	}
	defer transport.CloseIdleConnections()
	scheme := strings.ToLower(cmp.Or(string(g.Scheme), "http"))
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	url := scheme + "://" + net.JoinHostPort(cmp.Or(g.Host, "127.0.0.1"), port) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.36")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// probePort resolves a probe's port, by number or by the name of one of
// the container's ports.
func probePort(port intstr.IntOrString, c *container) (string, error) {
	if port.Type == intstr.Int {
		return strconv.Itoa(port.IntValue()), nil
	}
	for _, p := range c.spec.Ports {
		if p.Name == port.StrVal {
			return strconv.Itoa(int(p.ContainerPort)), nil
		}
	}
	if _, err := strconv.Atoi(port.StrVal); err == nil {
		return port.StrVal, nil
	}
	return "", fmt.Errorf("container %s has no port named %q", c.spec.Name, port.StrVal)
}

// execProbe runs command in the container's environment (namespace,
// mounts, user, env) through PodExecMain. command[0] is looked up in the
// image root first, then in the runner's PATH.
func (w *podWorker) execProbe(ctx context.Context, ns string, c *container, command []string) error {
	if len(command) == 0 {
		return errors.New("exec probe has no command")
	}
	spec, _, err := w.execSpec(ctx, c)
	if err != nil {
		return err
	}
	spec.Binary = filepath.Join(filepath.Dir(c.binary), filepath.Clean("/"+command[0]))
	if _, err := os.Stat(spec.Binary); err != nil {
		if spec.Binary, err = exec.LookPath(command[0]); err != nil {
			return fmt.Errorf("exec probe: %w", err)
		}
	}
	spec.Args = command
	f, err := os.CreateTemp(w.dir, c.spec.Name+".probe-*.json")
	if err != nil {
		return err
	}
	_ = f.Close()
	defer func() { _ = os.Remove(f.Name()) }()
	cmd, err := w.command(ns, f.Name(), spec)
	if err != nil {
		return err
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	w.k.recordPID(cmd.Process.Pid)
	defer w.k.forgetPID(cmd.Process.Pid)
	stop := context.AfterFunc(ctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("command %q: %w: %s", command, err, strings.TrimSpace(out.String()))
	}
	return nil
}
