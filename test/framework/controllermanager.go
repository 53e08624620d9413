package framework

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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

	dir  string
	proc *Process

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
	port, err := FreeLoopbackPort()
	if err != nil {
		return nil, err
	}

	proc, err := StartProcess(KubeControllerManager, binary, []string{
		"--kubeconfig=" + kubeConfigPath,
		"--authentication-kubeconfig=" + kubeConfigPath,
		"--authorization-kubeconfig=" + kubeConfigPath,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certDir,
		"--leader-elect=false",
		"--use-service-account-credentials=false",
		"--controllers=" + strings.Join(controllers, ","),
	}, nil, dir)
	if err != nil {
		return nil, err
	}
	m := &ControllerManager{
		LogPath:     proc.LogPath,
		PID:         proc.PID,
		Port:        port,
		Controllers: controllers,
		dir:         dir,
		proc:        proc,
	}

	ctx, cancel := context.WithTimeout(context.Background(), controllerManagerHealthyTimeout)
	defer cancel()
	// The serving certificate is self-signed and only served on loopback.
	if err := WaitHTTPOK(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", port), true, proc); err != nil {
		// The process may still be running (never healthy); end it and quote
		// the log in the error, since the deferred cleanup removes the file.
		_ = proc.Stop()
		tail := m.LogTail(logTailLines)
		if strings.Contains(tail, "address already in use") {
			return nil, fmt.Errorf("failed to start kube-controller-manager on port %d: %w", port, errPortInUse)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("failed to become healthy within %s: %w", controllerManagerHealthyTimeout, err)
		}
		return nil, fmt.Errorf("failed to start kube-controller-manager: %w; last log lines:\n%s", err, tail)
	}
	return m, nil
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
		case <-m.proc.Done():
			errs = append(errs, fmt.Errorf("kube-controller-manager exited before Stop: %w; last log lines:\n%s",
				m.proc.exitDescription(), m.LogTail(logTailLines)))
		default:
		}
		if err := m.proc.Stop(); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove the kube-controller-manager directory %s: %w", m.dir, err))
		}
		m.stopErr = errors.Join(errs...)
	})
	return m.stopErr
}

// LogTail returns the last n lines of the process's log, or a note saying
// why it cannot be read (for instance after Stop removed it).
func (m *ControllerManager) LogTail(n int) string {
	return m.proc.LogTail(n)
}
