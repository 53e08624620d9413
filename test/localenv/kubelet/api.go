package kubelet

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"

	"open-cluster-management.io/cluster-proxy/test/framework"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

const (
	// streamIdleTimeout is how long an exec or port-forward session may
	// stay idle (the kubelet's --streaming-connection-idle-timeout is 4h;
	// the environment's sessions are short).
	streamIdleTimeout = 30 * time.Minute
	// logPollInterval is how often a followed log is checked for growth.
	logPollInterval = 200 * time.Millisecond
	// execOutputDelay bounds how long an exec waits for its output pipes
	// after the command exited (a child it left may hold them).
	execOutputDelay = 2 * time.Second
	// exitCommandNotFound is a shell's exit code for an unknown command.
	exitCommandNotFound = 127
)

// APIOptions configure the kubelet API: the endpoints the kube-apiserver's
// pod subresources reach (pods/exec at /exec, pods/portforward at
// /portForward, pods/log at /containerLogs).
type APIOptions struct {
	// Listener accepts the kube-apiserver's connections (plain TCP; the
	// Kubelet adds TLS). The Node reports its port as the kubelet
	// endpoint.
	Listener net.Listener
	// TLS is the server configuration: the serving certificate, and
	// client certificates required and verified
	// (tls.RequireAndVerifyClientCert).
	TLS *tls.Config
	// ClientCommonName is the common name the client certificate must
	// carry: the kube-apiserver's --kubelet-client-certificate. A real
	// kubelet authorizes each request with a SubjectAccessReview; the
	// stand-in admits the kube-apiserver and nobody else.
	ClientCommonName string
}

// Validate reports every invalid option.
func (o *APIOptions) Validate() error {
	var errs []error
	if o.Listener == nil {
		errs = append(errs, errors.New("API.Listener is required"))
	} else if _, ok := o.Listener.Addr().(*net.TCPAddr); !ok {
		errs = append(errs, fmt.Errorf("API.Listener must listen on TCP, not %s", o.Listener.Addr().Network()))
	}
	if o.TLS == nil || len(o.TLS.Certificates) == 0 {
		errs = append(errs, errors.New("API.TLS must hold the serving certificate"))
	} else if o.TLS.ClientAuth != tls.RequireAndVerifyClientCert || o.TLS.ClientCAs == nil {
		errs = append(errs, errors.New("API.TLS must require and verify client certificates (ClientCAs, RequireAndVerifyClientCert)"))
	}
	if o.ClientCommonName == "" {
		errs = append(errs, errors.New("API.ClientCommonName is required"))
	}
	return errors.Join(errs...)
}

// port is the API's port, for the Node's kubelet endpoint.
func (o *APIOptions) port() int32 {
	if o == nil {
		return 0
	}
	return int32(o.Listener.Addr().(*net.TCPAddr).Port)
}

// serveAPI serves the kubelet API until ctx ends.
func (k *Kubelet) serveAPI(ctx context.Context) {
	o := k.opts.API
	logger := klog.FromContext(ctx)
	server := &http.Server{
		Handler:           http.HandlerFunc(k.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	listener := tls.NewListener(o.Listener, o.TLS)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "Kubelet API stopped")
		}
	}()
	logger.Info("Kubelet API serving", "address", o.Listener.Addr().String())
	<-ctx.Done()
	_ = server.Close() // also ends hijacked streams' idle waits
	<-done
}

// serveHTTP admits the kube-apiserver and routes the kubelet's paths:
// /exec/<namespace>/<pod>[/<uid>]/<container>,
// /portForward/<namespace>/<pod>[/<uid>] and
// /containerLogs/<namespace>/<pod>/<container>.
func (k *Kubelet) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 || req.TLS.PeerCertificates[0].Subject.CommonName != k.opts.API.ClientCommonName {
		http.Error(w, fmt.Sprintf("Forbidden: the kubelet stand-in serves only %s", k.opts.API.ClientCommonName), http.StatusForbidden)
		return
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case parts[0] == "exec" && (len(parts) == 4 || len(parts) == 5):
		k.serveExec(w, req, parts[1], parts[2], parts[len(parts)-1])
	case parts[0] == "portForward" && (len(parts) == 3 || len(parts) == 4):
		k.servePortForward(w, req, parts[1], parts[2])
	case parts[0] == "containerLogs" && len(parts) == 4:
		k.serveLogs(w, req, parts[1], parts[2], parts[3])
	default:
		http.Error(w, fmt.Sprintf("the kubelet stand-in does not serve %s", req.URL.Path), http.StatusNotFound)
	}
}

// findContainer returns the worker of pod namespace/name and its
// container, or the status and message of why there is none.
func (k *Kubelet) findContainer(namespace, name, containerName string) (*podWorker, *container, int, string) {
	k.mu.Lock()
	w := k.workers[namespace+"/"+name]
	k.mu.Unlock()
	if w == nil {
		return nil, nil, http.StatusNotFound, fmt.Sprintf("pod %s/%s does not run on node %s", namespace, name, k.opts.NodeName)
	}
	if containerName == "" {
		return w, nil, 0, ""
	}
	for _, c := range append(append([]*container(nil), w.inits...), w.ctrs...) {
		if c.spec.Name == containerName {
			return w, c, 0, ""
		}
	}
	return nil, nil, http.StatusNotFound, fmt.Sprintf("pod %s/%s has no container %q", namespace, name, containerName)
}

// serveExec runs a command in a container with the kubelet's own
// streaming code (SPDY; WebSocket clients arrive translated by the
// kube-apiserver).
func (k *Kubelet) serveExec(w http.ResponseWriter, req *http.Request, namespace, name, container string) {
	pw, c, status, msg := k.findContainer(namespace, name, container)
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	opts, err := remotecommand.NewOptions(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := req.URL.Query()["command"]
	if len(cmd) == 0 || cmd[0] == "" {
		http.Error(w, "no command given", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, req, &executor{k: k, w: pw, c: c}, name, string(pw.uid), container, cmd, opts,
		streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// execCount numbers exec specs.
var execCount atomic.Uint64

// executor runs exec commands in one container.
type executor struct {
	k *Kubelet
	w *podWorker
	c *container
}

// ExecInContainer runs cmd as the container runs: a binary of its image
// (cmd[0] resolved in the image root, never a program of the host), in the
// pod's network namespace with its volumes, user and environment. A
// terminal is not supported. A non-zero exit is a CodeExitError, which the
// streaming code reports to the client as the exit code.
func (e *executor) ExecInContainer(ctx context.Context, _, _, _ string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	if tty {
		return errors.New("the kubelet stand-in has no terminals: run kubectl exec without -t")
	}
	e.c.mu.Lock()
	running := e.c.pid != 0
	e.c.mu.Unlock()
	if !running {
		return fmt.Errorf("container %s is not running", e.c.spec.Name)
	}
	spec, _, err := e.w.execSpec(ctx, e.c)
	if err != nil {
		return err
	}
	root := e.k.opts.Images[imageRepository(e.c.spec.Image)]
	spec.Binary = filepath.Join(root, filepath.Clean("/"+cmd[0]))
	spec.Args = cmd
	if err := canExecute(spec.Binary, spec.UID, spec.GID, spec.Groups); err != nil {
		var programs []string
		if entries, err := os.ReadDir(root); err == nil {
			for _, e := range entries {
				programs = append(programs, e.Name())
			}
		}
		_, _ = fmt.Fprintf(nonNil(errOut), "%s: command not found: image %s has %s\n", cmd[0], e.c.spec.Image, strings.Join(programs, ", "))
		return utilexec.CodeExitError{Err: fmt.Errorf("%s: command not found", cmd[0]), Code: exitCommandNotFound}
	}
	_, podNetns, _ := e.w.snapshot()
	specPath := filepath.Join(e.w.dir, fmt.Sprintf("exec-%d.json", execCount.Add(1)))
	proc, err := e.w.command(podNetns, specPath, spec)
	defer func() { _ = os.Remove(specPath) }()
	if err != nil {
		return err
	}
	proc.Stdout, proc.Stderr, proc.WaitDelay = nonNil(out), nonNil(errOut), execOutputDelay
	var stdin io.WriteCloser
	if in != nil {
		if stdin, err = proc.StdinPipe(); err != nil {
			return err
		}
	}
	if err := proc.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", cmd[0], err)
	}
	e.k.recordPID(proc.Process.Pid)
	defer e.k.forgetPID(proc.Process.Pid)
	if stdin != nil {
		// Not waited for: the client may never end its stdin; Wait closes
		// the pipe once the command exits.
		go func() { _, _ = io.Copy(stdin, in); _ = stdin.Close() }()
	}
	exited := make(chan error, 1)
	go func() { exited <- proc.Wait() }()
	select {
	case err = <-exited:
	case <-ctx.Done():
		_ = syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
		return errors.Join(ctx.Err(), <-exited)
	}
	// What the command left behind dies with it.
	_ = syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		return nil
	}
	return err
}

// nonNil returns w, or a writer that discards when w is nil (the client
// did not ask for that stream).
func nonNil(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// servePortForward forwards to the pod's ports as the kubelet does: each
// stream connects to localhost:<port> inside the pod's network namespace.
func (k *Kubelet) servePortForward(w http.ResponseWriter, req *http.Request, namespace, name string) {
	pw, _, status, msg := k.findContainer(namespace, name, "")
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	opts, err := portforward.NewV4Options(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, req, podForwarder{w: pw}, name, string(pw.uid), opts,
		streamIdleTimeout, remotecommand.DefaultStreamCreationTimeout, portforward.SupportedProtocols)
}

// podForwarder connects port-forward streams to one pod.
type podForwarder struct{ w *podWorker }

// PortForward copies between stream and localhost:port in the pod's
// network namespace until either side ends.
func (f podForwarder) PortForward(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
	defer func() { _ = stream.Close() }()
	_, podNetns, _ := f.w.snapshot()
	if podNetns == "" {
		return errors.New("the pod has no network yet")
	}
	conn, err := netns.DialContext(ctx, podNetns, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("failed to connect to port %d of the pod: %w", port, err)
	}
	defer func() { _ = conn.Close() }()
	framework.Splice(conn, stream)
	return nil
}

// serveLogs serves a container's log file: all of it, or its last
// tailLines lines, at most limitBytes bytes; with follow=true it then
// sends what the container writes until the client goes away. Options it
// cannot honour (previous, sinceSeconds, sinceTime, timestamps) are
// refused rather than ignored.
func (k *Kubelet) serveLogs(w http.ResponseWriter, req *http.Request, namespace, name, container string) {
	_, c, status, msg := k.findContainer(namespace, name, container)
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	q := req.URL.Query()
	for _, unsupported := range []string{"previous", "sinceSeconds", "sinceTime", "timestamps"} {
		if v := q.Get(unsupported); v != "" && v != "false" {
			http.Error(w, fmt.Sprintf("the kubelet stand-in does not support the log option %s", unsupported), http.StatusBadRequest)
			return
		}
	}
	follow, _ := strconv.ParseBool(q.Get("follow"))
	tail, limit := int64(-1), int64(-1)
	for param, dst := range map[string]*int64{"tailLines": &tail, "limitBytes": &limit} {
		if v := q.Get(param); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				http.Error(w, fmt.Sprintf("invalid %s %q", param, v), http.StatusBadRequest)
				return
			}
			*dst = n
		}
	}
	f, err := os.Open(c.logPath)
	if errors.Is(err, os.ErrNotExist) {
		http.Error(w, fmt.Sprintf("container %s of pod %s/%s has not started yet", container, namespace, name), http.StatusBadRequest)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer func() { _ = f.Close() }()
	offset, err := tailOffset(f, tail)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	var dst io.Writer = w
	if limit >= 0 {
		dst = &limitedWriter{w: w, n: limit}
	}
	flusher, _ := w.(http.Flusher)
	for {
		if _, err := io.Copy(dst, f); err != nil {
			return
		}
		if !follow {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-req.Context().Done():
			return
		case <-time.After(logPollInterval):
		}
	}
}

// tailOffset is the offset of the last n lines of f (0 for n < 0).
func tailOffset(f *os.File, n int64) (int64, error) {
	if n < 0 {
		return 0, nil
	}
	var ends []int64 // offsets just after each newline
	r := bufio.NewReader(f)
	var pos int64
	for {
		line, err := r.ReadSlice('\n')
		pos += int64(len(line))
		if len(line) > 0 && line[len(line)-1] == '\n' {
			ends = append(ends, pos)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if pos > 0 && (len(ends) == 0 || ends[len(ends)-1] != pos) {
		ends = append(ends, pos) // an unterminated last line counts
	}
	if int64(len(ends)) <= n {
		return 0, nil
	}
	return ends[int64(len(ends))-n-1], nil
}

// limitedWriter writes at most n bytes, then fails.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.w.Write(p)
	l.n -= int64(n)
	if err == nil && l.n == 0 {
		err = io.EOF
	}
	return n, err
}
