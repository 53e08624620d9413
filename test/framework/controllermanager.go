package framework

import (
	"bytes"
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
)

// DefaultControllers are the kube-controller-manager controllers
// StartControllerManager runs when none are named: garbage collection and
// namespace finalisation, the two things envtest's bare API server lacks.
var DefaultControllers = []string{"garbagecollector", "namespace"}

const (
	// controllerManagerHealthyTimeout bounds how long StartControllerManager
	// waits for /healthz to answer 200.
	controllerManagerHealthyTimeout = 60 * time.Second
	// controllerManagerStopTimeout is how long Stop waits after SIGTERM
	// before it sends SIGKILL.
	controllerManagerStopTimeout = 10 * time.Second
	// controllerManagerStartAttempts is how many times StartControllerManager
	// tries again with a new port when the one it picked was taken in the
	// meantime.
	controllerManagerStartAttempts = 3
	// logTailLines is how many log lines errors quote.
	logTailLines = 40
)

// ControllerManager is a running kube-controller-manager process.
type ControllerManager struct {
	// LogPath is the file that receives the process's standard output and
	// error. It lives in the temporary directory Stop removes, so read it
	// (or call LogTail) before stopping when a test fails.
	LogPath string
	// PID is the process ID; Stop signals the process through it.
	PID int
	// Port is the loopback port of the process's secure (HTTPS) endpoint.
	Port int
	// Controllers are the controllers the process runs.
	Controllers []string

	dir     string
	cmd     *exec.Cmd
	logFile *os.File
	// done is closed once the process has exited; waitErr is cmd.Wait's
	// result and may only be read after done is closed.
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// errPortInUse marks a start that failed because another process took the
// port between picking it and the controller-manager binding it.
var errPortInUse = errors.New("the secure port is already in use")

// StartControllerManager starts kube-controller-manager from the
// control-plane build against the API server s, running only the named
// controllers (DefaultControllers when none are given). It serves HTTPS on a
// free loopback port, without leader election and with the administrator
// identity of s for every controller, writes its output to LogPath, and
// returns once /healthz answers 200. It fails (never skips) when the binary
// is missing, and quotes the end of the log when the process exits or does
// not become healthy within 60 seconds.
func StartControllerManager(s *APIServer, controllers ...string) (*ControllerManager, error) {
	if s == nil || len(s.KubeConfig) == 0 {
		return nil, errors.New("failed to start kube-controller-manager: the API server has no kubeconfig")
	}
	assets, err := ControlPlaneAssets(KubeControllerManager)
	if err != nil {
		return nil, err
	}
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	controllers = append([]string(nil), controllers...)

	for attempt := 1; ; attempt++ {
		m, err := startControllerManager(filepath.Join(assets, KubeControllerManager), s.KubeConfig, controllers)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, errPortInUse) || attempt == controllerManagerStartAttempts {
			return nil, err
		}
	}
}

// startControllerManager makes one attempt at starting the binary on a
// freshly picked port. On failure it has stopped the process and removed its
// temporary directory.
func startControllerManager(binary string, kubeConfig []byte, controllers []string) (_ *ControllerManager, err error) {
	dir, err := os.MkdirTemp("", "kube-controller-manager-")
	if err != nil {
		return nil, fmt.Errorf("failed to create a temporary directory for kube-controller-manager: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()

	kubeConfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeConfigPath, kubeConfig, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write the kube-controller-manager kubeconfig: %w", err)
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the kube-controller-manager cert directory: %w", err)
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "kube-controller-manager.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("failed to create the kube-controller-manager log file: %w", err)
	}

	// Not exec.CommandContext: the process outlives this call and Stop ends
	// it by PID.
	cmd := exec.Command(binary,
		"--kubeconfig="+kubeConfigPath,
		"--authentication-kubeconfig="+kubeConfigPath,
		"--authorization-kubeconfig="+kubeConfigPath,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--controllers="+strings.Join(controllers, ","),
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("failed to start %s: %w", binary, err)
	}

	m := &ControllerManager{
		LogPath:     logPath,
		PID:         cmd.Process.Pid,
		Port:        port,
		Controllers: controllers,
		dir:         dir,
		cmd:         cmd,
		logFile:     logFile,
		done:        make(chan struct{}),
	}
	go func() {
		m.waitErr = cmd.Wait()
		_ = m.logFile.Close()
		close(m.done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), controllerManagerHealthyTimeout)
	defer cancel()
	if err := m.waitHealthy(ctx); err != nil {
		// The process may still be running (never healthy); end it and quote
		// the log in the error, since the deferred cleanup removes the file.
		_ = m.terminate()
		tail := m.LogTail(logTailLines)
		if strings.Contains(tail, "address already in use") {
			return nil, fmt.Errorf("failed to start kube-controller-manager on port %d: %w", port, errPortInUse)
		}
		return nil, fmt.Errorf("failed to start kube-controller-manager: %w; last log lines:\n%s", err, tail)
	}
	return m, nil
}

// waitHealthy polls /healthz until it answers 200, the process exits or ctx
// ends.
func (m *ControllerManager) waitHealthy(ctx context.Context) error {
	transport := &http.Transport{
		// The serving certificate is self-signed and only served on loopback.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: 2 * time.Second}
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", m.Port)

	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	var lastErr error
	for {
		lastErr = healthz(ctx, client, url)
		if lastErr == nil {
			return nil
		}
		select {
		case <-m.done:
			return fmt.Errorf("failed to become healthy: the process exited: %w", m.exitError())
		case <-ctx.Done():
			return fmt.Errorf("failed to become healthy within %s: %w", controllerManagerHealthyTimeout, lastErr)
		case <-ticker.C:
		}
	}
}

// healthz makes one GET of url and returns nil when it answers 200.
func healthz(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("failed to build the healthz request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("failed to reach %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("failed health check: %s answered %s", url, resp.Status)
	}
	return nil
}

// exitError describes how the process ended; call it only after done is
// closed.
func (m *ControllerManager) exitError() error {
	if m.waitErr != nil {
		return m.waitErr
	}
	return errors.New("exit status 0")
}

// Stop sends SIGTERM to the process, sends SIGKILL if it has not exited
// after 10 seconds, waits for it and removes its temporary directory
// (including LogPath). It reports an error when the process had already
// exited on its own, since its controllers stopped working at that point.
// Calling Stop again returns the first call's result.
func (m *ControllerManager) Stop() error {
	m.stopOnce.Do(func() {
		var errs []error
		select {
		case <-m.done:
			errs = append(errs, fmt.Errorf("kube-controller-manager exited before Stop: %w; last log lines:\n%s",
				m.exitError(), m.LogTail(logTailLines)))
		default:
			if err := m.terminate(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove the kube-controller-manager directory %s: %w", m.dir, err))
		}
		m.stopErr = errors.Join(errs...)
	})
	return m.stopErr
}

// terminate ends the process by its PID: SIGTERM, then SIGKILL after
// controllerManagerStopTimeout. It returns once the process has been reaped.
func (m *ControllerManager) terminate() error {
	select {
	case <-m.done:
		return nil
	default:
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to send SIGTERM to kube-controller-manager (pid %d): %w", m.cmd.Process.Pid, err)
	}
	select {
	case <-m.done:
		return nil
	case <-time.After(controllerManagerStopTimeout):
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to send SIGKILL to kube-controller-manager (pid %d): %w", m.cmd.Process.Pid, err)
	}
	<-m.done
	return nil
}

// LogTail returns the last n lines of the process's log, or a note saying
// why it cannot be read (for instance after Stop removed it).
func (m *ControllerManager) LogTail(n int) string {
	data, err := os.ReadFile(m.LogPath)
	if err != nil {
		return fmt.Sprintf("(failed to read %s: %v)", m.LogPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago. Another process can take it before the caller binds it;
// StartControllerManager retries in that case.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("failed to find a free loopback port: %w", err)
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("failed to find a free loopback port: unexpected address %s", l.Addr())
	}
	return addr.Port, nil
}
