package localenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"open-cluster-management.io/cluster-proxy/test/framework"
	"open-cluster-management.io/cluster-proxy/test/localenv/proc"
)

// Files in the state directory.
const (
	// EnvFile describes a ready environment (Env, JSON).
	EnvFile    = "env.json"
	statusFile = "status"
	pidsFile   = "pids"
	// SupervisorPIDFile holds the supervisor's PID.
	SupervisorPIDFile = "supervisor.pid"
	netnsFile         = "netns"
)

// Env is what a ready environment tells its users (env.json).
type Env struct {
	// StateDir is the environment's state directory.
	StateDir string `json:"stateDir"`
	// HubKubeconfig is the hub's admin kubeconfig for the root namespace.
	HubKubeconfig string `json:"hubKubeconfig"`
	// Clusters are the hub and the managed clusters by name.
	Clusters map[string]ClusterAccess `json:"clusters"`
}

// ClusterAccess is how the root namespace reaches one cluster.
type ClusterAccess struct {
	// Kubeconfig is an admin kubeconfig usable from the root namespace
	// (for a managed cluster: through a loopback relay, operator access
	// the hub does not have).
	Kubeconfig string `json:"kubeconfig"`
	// Netns is the cluster's network namespace.
	Netns string `json:"netns"`
	// APIServer is the kube-apiserver's address inside the cluster.
	APIServer string `json:"apiServer"`
	// UplinkIP is the cluster's address on the uplink bridge.
	UplinkIP string `json:"uplinkIP"`
	// Logs is the directory of the processes' logs.
	Logs string `json:"logs"`
	// KubeletState is the kubelet stand-in's state directory (pod logs).
	KubeletState string `json:"kubeletState"`
}

// LoadEnv reads the env.json of a ready environment.
func LoadEnv(stateDir string) (*Env, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, EnvFile))
	if err != nil {
		return nil, fmt.Errorf("the local environment is not up (run `make local-up`): %w", err)
	}
	env := &Env{}
	if err := json.Unmarshal(data, env); err != nil {
		return nil, fmt.Errorf("decode %s: %w", filepath.Join(stateDir, EnvFile), err)
	}
	return env, nil
}

type state struct{ dir string }

func newState(dir string) state { return state{dir: dir} }

func (s state) setStatus(status string) error {
	return writeFile(filepath.Join(s.dir, statusFile), []byte(status+"\n"), 0o644)
}

// Status returns the supervisor's status line: starting, ready, stopped or
// "failed: <reason>".
func Status(stateDir string) string {
	data, err := os.ReadFile(filepath.Join(stateDir, statusFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// recordPID appends a started process (PID and start time) to the pids
// file, so that Down can stop it by PID even if the supervisor died.
func recordPID(stateDir string, pid int) error {
	start, err := proc.StartTime(pid)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(stateDir, pidsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%d %d\n", pid, start)
	return errors.Join(err, f.Close())
}

// ProcessAlive reports whether the process pid that started at start runs.
func ProcessAlive(pid int, start uint64) bool { return proc.Alive(pid, start) }

// killRecorded sends SIGKILL to every recorded process that still runs.
func killRecorded(path string) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		pid, start, ok := parsePIDLine(line)
		if ok && ProcessAlive(pid, start) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

func parsePIDLine(line string) (int, uint64, bool) {
	var pid int
	var start uint64
	_, err := fmt.Sscanf(strings.TrimSpace(line), "%d %d", &pid, &start)
	return pid, start, err == nil && pid > 1
}

// waitGone waits until the process is gone.
func waitGone(pid int, start uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !ProcessAlive(pid, start) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return !ProcessAlive(pid, start)
}

// ocmModuleDir is the ocm module's directory: hack/tools/ocm requires it.
func ocmModuleDir(ctx context.Context) (string, error) {
	root, err := framework.RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", ocmModule)
	cmd.Dir = filepath.Join(root, "hack", "tools", "ocm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate module %s: %w: %s", ocmModule, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}
