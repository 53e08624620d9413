package framework

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

const (
	// streamIdleTimeout is how long an exec or port-forward connection may
	// stay idle (the kubelet's --streaming-connection-idle-timeout is 4h;
	// tests need less).
	streamIdleTimeout = 5 * time.Minute
	// execCommandParam is the query parameter holding the exec command,
	// one per argument.
	execCommandParam = "command"
	// exitCodeCommandNotFound is a shell's exit code for an unknown
	// command.
	exitCodeCommandNotFound = 127
)

// Kubelet stands in for a node's kubelet, for the endpoints the API server's
// pod subresources reach: pods/portforward (/portForward), pods/exec
// (/exec) and pods/log (/containerLogs). It serves port-forward and exec
// with the kubelet's own streaming code (k8s.io/cri-streaming), so SPDY
// (and, through the API server's translation, WebSocket) clients meet the
// real protocol. No containers run here, which is why a stand-in is needed
// at all:
//   - the pods of its node are processes on loopback: forwarding to a pod
//     port dials 127.0.0.1:<port>;
//   - exec runs a few commands built into the stand-in, never a program of
//     the host (see Exec);
//   - a container's log is what AppendLog wrote for it.
type Kubelet struct {
	// NodeName is the Node object registered for this kubelet.
	NodeName string
	// Port is the kubelet's HTTPS port on 127.0.0.1.
	Port int

	server *http.Server

	mu sync.Mutex
	// logs holds each container's log, by namespace/pod/container.
	logs map[string]*containerLog
}

// containerLog is a container's log: what was appended so far, and a
// channel closed (and replaced) at each append, for followers.
type containerLog struct {
	data    []byte
	changed chan struct{}
}

// StartKubelet starts the kubelet stand-in and registers Node nodeName with
// the API server behind client (address 127.0.0.1, kubelet port Port).
func StartKubelet(ctx context.Context, client kubernetes.Interface, nodeName string) (*Kubelet, error) {
	now := time.Now()
	ca, err := certs.NewCA("kubelet-stand-in", now, time.Hour)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: nodeName, SANs: []string{"127.0.0.1", "localhost"}, Usage: certs.UsageServing}, now)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to load the kubelet stand-in certificate: %w", err)
	}
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the kubelet stand-in: %w", err)
	}
	k := &Kubelet{NodeName: nodeName, Port: listener.Addr().(*net.TCPAddr).Port, logs: map[string]*containerLog{}}
	k.server = &http.Server{Handler: http.HandlerFunc(k.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.server.Serve(listener) }()

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	node, err = client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		_ = k.server.Close()
		return nil, fmt.Errorf("failed to register node %s: %w", nodeName, err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(k.Port)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		_ = k.server.Close()
		return nil, fmt.Errorf("failed to set the status of node %s: %w", nodeName, err)
	}
	return k, nil
}

// serve routes the kubelet's paths the API server uses:
// /portForward/<namespace>/<pod>[/<uid>],
// /exec/<namespace>/<pod>[/<uid>]/<container> and
// /containerLogs/<namespace>/<pod>/<container>.
func (k *Kubelet) serve(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && len(parts) <= 4 && parts[0] == "portForward":
		k.servePortForward(w, req, parts[2])
	case (len(parts) == 4 || len(parts) == 5) && parts[0] == "exec":
		k.serveExec(w, req, parts[2], parts[len(parts)-1])
	case len(parts) == 4 && parts[0] == "containerLogs":
		k.serveLogs(w, req, parts[1], parts[2], parts[3])
	default:
		http.NotFound(w, req)
	}
}

// servePortForward serves /portForward as the kubelet does.
func (k *Kubelet) servePortForward(w http.ResponseWriter, req *http.Request, pod string) {
	opts, err := portforward.NewV4Options(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, req, loopbackForwarder{}, pod, "", opts,
		streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, portforward.SupportedProtocols)
}

// serveExec serves /exec as the kubelet does, with the commands of Exec.
func (k *Kubelet) serveExec(w http.ResponseWriter, req *http.Request, pod, container string) {
	opts, err := remotecommand.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := req.URL.Query()[execCommandParam]
	if len(cmd) == 0 {
		http.Error(w, "no command given", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, req, executor{}, pod, "", container, cmd, opts,
		streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// executor runs exec commands in the stand-in's containers.
type executor struct{}

// ExecInContainer runs cmd with Exec. A terminal is not supported: the
// streams are plain.
func (executor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if tty {
		return errors.New("the kubelet stand-in has no terminals")
	}
	return Exec(ctx, cmd, in, out, errOut)
}

// Exec runs cmd as the stand-in's containers do. They know three commands,
// built into the stand-in (no program of the host ever runs):
//   - echo ARG...: writes the arguments, separated by spaces, and a newline
//     to stdout;
//   - cat: copies stdin to stdout until stdin ends;
//   - exit CODE [MESSAGE...]: reads stdin to its end (as a shell reading
//     its script from stdin would), writes the message and a newline to
//     stderr and exits with CODE.
//
// Reading stdin first keeps exit codes deterministic: when a command ends
// while the client is still sending (its end of stdin), the kube-apiserver's
// upgrade proxy may close the client's connection before the exit status
// has reached it (measured: about 2% of SPDY execs straight to the
// kube-apiserver, more through another proxy hop).
//
// Any other command writes "<command>: command not found" to stderr and
// exits with 127, as a shell does. A non-zero exit is a
// k8s.io/utils/exec.ExitError, which the kubelet's exec code reports to the
// client as the exit code. in, out and errOut may be nil when the client
// did not ask for that stream.
func Exec(ctx context.Context, cmd []string, in io.Reader, out, errOut io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	if errOut == nil {
		errOut = io.Discard
	}
	switch cmd[0] {
	case "echo":
		_, err := io.WriteString(out, strings.Join(cmd[1:], " ")+"\n")
		return err
	case "cat":
		if in == nil {
			return nil
		}
		// Stops when stdin ends, or when the session does.
		done := make(chan error, 1)
		go func() { _, err := io.Copy(out, in); done <- err }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	case "exit":
		if in != nil {
			if _, err := io.Copy(io.Discard, in); err != nil {
				return err
			}
		}
		if len(cmd) < 2 {
			return errors.New("exit: missing exit code")
		}
		code, err := strconv.Atoi(cmd[1])
		if err != nil || code < 0 || code > 255 {
			return fmt.Errorf("exit: invalid exit code %q", cmd[1])
		}
		if len(cmd) > 2 {
			_, _ = io.WriteString(errOut, strings.Join(cmd[2:], " ")+"\n")
		}
		if code == 0 {
			return nil
		}
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: code}
	default:
		_, _ = fmt.Fprintf(errOut, "%s: command not found\n", cmd[0])
		return utilexec.CodeExitError{Err: fmt.Errorf("%s: command not found", cmd[0]), Code: exitCodeCommandNotFound}
	}
}

// AppendLog appends text to the log of container in pod namespace/name, as
// if the container had written it; followers (pods/log?follow=true) get it
// at once.
func (k *Kubelet) AppendLog(namespace, pod, container, text string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.logLocked(namespace, pod, container)
	l.data = append(l.data, text...)
	close(l.changed)
	l.changed = make(chan struct{})
}

// logLocked returns the log of a container, creating it empty; k.mu is
// held.
func (k *Kubelet) logLocked(namespace, pod, container string) *containerLog {
	key := namespace + "/" + pod + "/" + container
	l, ok := k.logs[key]
	if !ok {
		l = &containerLog{changed: make(chan struct{})}
		k.logs[key] = l
	}
	return l
}

// serveLogs serves /containerLogs: the container's log so far and, with
// follow=true, what is appended later until the client goes away. The other
// options of pods/log (tailLines, sinceSeconds, timestamps, ...) are not
// supported.
func (k *Kubelet) serveLogs(w http.ResponseWriter, req *http.Request, namespace, pod, container string) {
	follow, _ := strconv.ParseBool(req.URL.Query().Get("follow"))
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	sent := 0
	for {
		k.mu.Lock()
		l := k.logLocked(namespace, pod, container)
		data, changed := l.data[sent:], l.changed
		k.mu.Unlock()
		if len(data) > 0 {
			if _, err := w.Write(data); err != nil {
				return
			}
			sent += len(data)
		}
		if !follow {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-changed:
		case <-req.Context().Done():
			return
		}
	}
}

// loopbackForwarder forwards to 127.0.0.1:<port>: the pods of the stand-in
// node are local processes.
type loopbackForwarder struct{}

func (loopbackForwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	defer func() { _ = stream.Close() }()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("failed to connect to port %d: %w", port, err)
	}
	defer func() { _ = conn.Close() }()
	Splice(conn, stream)
	return nil
}

// RunPod registers a Running pod bound to the stand-in node.
func (k *Kubelet) RunPod(ctx context.Context, client kubernetes.Interface, namespace, name string, labels map[string]string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   k.NodeName,
			Containers: []corev1.Container{{Name: "main", Image: "local-process"}},
		},
	}
	pod, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("failed to create pod %s/%s: %w", namespace, name, err)
	}
	pod.Status.Phase = corev1.PodRunning
	if _, err := client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to mark pod %s/%s running: %w", namespace, name, err)
	}
	return nil
}

// Stop stops the stand-in.
func (k *Kubelet) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := k.server.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("failed to stop the kubelet stand-in: %w", err)
	}
	return nil
}
