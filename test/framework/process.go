package framework

import (
	"bytes"
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
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// processStopTimeout is how long Stop waits after SIGTERM before it
	// sends SIGKILL.
	processStopTimeout = 10 * time.Second
	// httpPollInterval is how often WaitHTTPOK asks again.
	httpPollInterval = 200 * time.Millisecond
	// httpRequestTimeout bounds one request of WaitHTTPOK.
	httpRequestTimeout = 2 * time.Second
)

// Process is a program the tests started; it is stopped by PID, never by
// name.
type Process struct {
	// Name identifies the process in messages and names its log file.
	Name string
	// PID is the process ID; Stop signals the process through it.
	PID int
	// LogPath is the file that receives the process's standard output and
	// error. It lives in the directory given to StartProcess, which the
	// caller owns: Stop leaves it in place.
	LogPath string

	cmd *exec.Cmd
	// done is closed once the process has exited and its log file is
	// closed; waitErr is cmd.Wait's result and may only be read after done
	// is closed.
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts binary with args, in an environment made of
// os.Environ() followed by env (a later entry wins over an earlier one with
// the same key). Standard output and error go to <dir>/<name>.log; dir must
// exist and belongs to the caller, who removes it (after Stop) when it is a
// temporary directory. StartProcess refuses to overwrite an existing log
// file, so processes sharing a directory need distinct names. It returns as
// soon as the process has started; use WaitHTTPOK or Done to learn more.
func StartProcess(name, binary string, args, env []string, dir string) (*Process, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("failed to start %s: the name %q is not a plain file name", binary, name)
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("failed to start %s: the log directory %q is not an existing directory", name, dir)
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to create the log file of %s: %w", name, err)
	}

	// Not exec.CommandContext: the process outlives this call and Stop ends
	// it by PID.
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("failed to start %s (%s): %w", name, binary, err)
	}

	p := &Process{
		Name:    name,
		PID:     cmd.Process.Pid,
		LogPath: logPath,
		cmd:     cmd,
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Done returns a channel that is closed once the process has exited (and
// has been reaped).
func (p *Process) Done() <-chan struct{} {
	return p.done
}

// ExitError describes how the process ended: nil for exit status 0, an
// *exec.ExitError otherwise. While the process is still running it returns
// an error saying so.
func (p *Process) ExitError() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
		return fmt.Errorf("%s (pid %d) is still running", p.Name, p.PID)
	}
}

// exitDescription is ExitError for messages about a process that has
// exited: it never returns nil.
func (p *Process) exitDescription() error {
	if err := p.ExitError(); err != nil {
		return err
	}
	return errors.New("exit status 0")
}

// Stop sends SIGTERM to the process, sends SIGKILL if it has not exited
// after 10 seconds, and returns once the process has been reaped. A process
// that had already exited is not an error: ExitError tells how it ended
// (after a SIGKILL it reports "signal: killed"). Stop leaves LogPath in
// place. Calling Stop again, or concurrently, returns the first call's
// result.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		p.stopErr = p.terminate()
	})
	return p.stopErr
}

// terminate ends the process by its PID: SIGTERM, then SIGKILL after
// processStopTimeout.
func (p *Process) terminate() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to send SIGTERM to %s (pid %d): %w", p.Name, p.PID, err)
	}
	timer := time.NewTimer(processStopTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("failed to send SIGKILL to %s (pid %d): %w", p.Name, p.PID, err)
	}
	<-p.done
	return nil
}

// LogTail returns the last n lines of the process's log, or a note saying
// why it cannot be read (for instance after its directory was removed).
func (p *Process) LogTail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(failed to read %s: %v)", p.LogPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// FreeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment
// ago. Another process can take it before the caller binds it, so callers
// should be ready to try again with a new port.
func FreeLoopbackPort() (int, error) {
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

// WaitHTTPOK polls url with GET until it answers 200 OK, and returns nil
// then. It fails when ctx ends (the error wraps ctx.Err() and the last
// attempt's error) or, when p is not nil, as soon as p exits (the error
// wraps p's exit error). insecureTLS skips verification of the server's
// certificate, for self-signed loopback endpoints.
func WaitHTTPOK(ctx context.Context, url string, insecureTLS bool, p *Process) error {
	transport := &http.Transport{}
	if insecureTLS {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: httpRequestTimeout}

	var exited <-chan struct{}
	if p != nil {
		exited = p.Done()
	}
	ticker := time.NewTicker(httpPollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		err := getOK(ctx, client, url)
		if err == nil {
			return nil
		}
		// An attempt cut short by ctx says less than the one before it.
		if lastErr == nil || ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-exited:
			return fmt.Errorf("failed to get 200 from %s: %s (pid %d) exited: %w", url, p.Name, p.PID, p.exitDescription())
		case <-ctx.Done():
			return fmt.Errorf("failed to get 200 from %s: %w; last attempt: %w", url, ctx.Err(), lastErr)
		case <-ticker.C:
		}
	}
}

// getOK makes one GET of url and returns nil when it answers 200.
func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("failed to build the request for %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("failed to reach %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("failed health check: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
