package kubelet

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// execSpec is what PodExecMain does to start one container.
type execSpec struct {
	// Mounts are bind mounts, parents before children.
	Mounts []bindMount `json:"mounts"`
	// Hostname is set in a new UTS namespace when not empty.
	Hostname string `json:"hostname,omitempty"`
	// UID, GID and Groups are the user the program runs as.
	UID    int   `json:"uid"`
	GID    int   `json:"gid"`
	Groups []int `json:"groups,omitempty"`
	// ReadOnlyRoot makes the root mount read-only (readOnlyRootFilesystem).
	ReadOnlyRoot bool `json:"readOnlyRoot,omitempty"`
	// Dir is the working directory.
	Dir string `json:"dir"`
	// Binary is executed with argv Args and environment Env.
	Binary string   `json:"binary"`
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	// ErrorFD, when set, is an inherited descriptor that receives the
	// reason PodExecMain failed; it is closed on exec.
	ErrorFD int `json:"errorFD,omitempty"`
}

// bindMount is one bind mount of an execSpec.
type bindMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// PodExecMain starts one container; the program named by Options.PodExec
// calls it with the arguments that follow, and should exit with status 127
// when it returns an error. The Kubelet runs it as
// `ip netns exec <pod netns> <PodExec...> --spec=<file>`, so it starts in
// the pod's network namespace and a private mount namespace. It reads the
// spec, makes the mount tree a slave of the host's (so nothing mounted here
// reaches the host), bind-mounts the volumes and the hosts file (read-only
// where asked), makes the root mount read-only for readOnlyRootFilesystem,
// sets the hostname, switches to the container's user and
// working directory and executes the container's binary in place, keeping
// the PID the Kubelet knows. Mount points must exist: the Kubelet creates
// them.
func PodExecMain(args []string) (err error) {
	fs := flag.NewFlagSet("pod-exec", flag.ContinueOnError)
	specPath := fs.String("spec", "", "the container spec (JSON) the kubelet stand-in wrote")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *specPath == "" {
		return errors.New("--spec is required")
	}
	data, err := os.ReadFile(*specPath)
	if err != nil {
		return fmt.Errorf("failed to read the container spec: %w", err)
	}
	var spec execSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("failed to decode the container spec %s: %w", *specPath, err)
	}
	if spec.ErrorFD > 0 {
		unix.CloseOnExec(spec.ErrorFD)
		errPipe := os.NewFile(uintptr(spec.ErrorFD), "pod-exec-errors")
		defer func() {
			if err != nil {
				_, _ = errPipe.WriteString(err.Error())
			}
			_ = errPipe.Close()
		}()
	}
	// The UTS namespace belongs to this thread, which must also exec.
	runtime.LockOSThread()
	if spec.Hostname != "" {
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			return fmt.Errorf("failed to create a UTS namespace: %w", err)
		}
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("failed to set the hostname: %w", err)
		}
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("failed to make the mount tree a slave of the host's: %w", err)
	}
	for _, m := range spec.Mounts {
		if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("failed to bind-mount %s on %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				return fmt.Errorf("failed to make %s read-only: %w", m.Target, err)
			}
		}
	}
	if spec.ReadOnlyRoot {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("failed to make the root mount read-only: %w", err)
		}
	}
	groups := append([]int{spec.GID}, spec.Groups...)
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("failed to set groups %v: %w", groups, err)
	}
	if err := syscall.Setgid(spec.GID); err != nil {
		return fmt.Errorf("failed to set gid %d: %w", spec.GID, err)
	}
	if err := syscall.Setuid(spec.UID); err != nil {
		return fmt.Errorf("failed to set uid %d: %w", spec.UID, err)
	}
	if err := os.Chdir(spec.Dir); err != nil {
		return fmt.Errorf("failed to change to working directory %s as uid %d: %w", spec.Dir, spec.UID, err)
	}
	err = syscall.Exec(spec.Binary, spec.Args, spec.Env)
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("failed to execute %s as uid %d gid %d: %w (it must be executable by that user)", spec.Binary, spec.UID, spec.GID, err)
	}
	return fmt.Errorf("failed to execute %s: %w", spec.Binary, err)
}
