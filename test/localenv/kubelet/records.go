package kubelet

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"open-cluster-management.io/cluster-proxy/test/localenv/proc"
)

// Records in the state directory, for cleaning up after a Kubelet that
// could not do it itself.
const (
	// pidsFile lists "<pid> <start time>" of every running container.
	pidsFile = "pids"
	// createdDirsFile lists the mount points the Kubelet created outside
	// its state directory, one path a line.
	createdDirsFile = "created-dirs"
)

func (k *Kubelet) recordPID(pid int) {
	start, err := proc.StartTime(pid)
	if err != nil {
		return // already gone
	}
	k.recMu.Lock()
	defer k.recMu.Unlock()
	k.pids[pid] = start
	k.writePIDs()
}

func (k *Kubelet) forgetPID(pid int) {
	k.recMu.Lock()
	defer k.recMu.Unlock()
	delete(k.pids, pid)
	k.writePIDs()
}

// writePIDs replaces the PID record; k.recMu is held.
func (k *Kubelet) writePIDs() {
	var b strings.Builder
	for _, pid := range slices.Sorted(maps.Keys(k.pids)) {
		fmt.Fprintf(&b, "%d %d\n", pid, k.pids[pid])
	}
	path := filepath.Join(k.opts.StateDir, pidsFile)
	if err := os.WriteFile(path+".tmp", []byte(b.String()), 0o644); err == nil {
		_ = os.Rename(path+".tmp", path)
	}
}

// KillRecorded kills (SIGKILL, with their process groups) the container
// processes that a Kubelet with state directory stateDir recorded and that
// still run, for a Kubelet that ended without stopping them. A recorded PID
// now used by another process is left alone.
func KillRecorded(stateDir string) error {
	path := filepath.Join(stateDir, pidsFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read the recorded container PIDs: %w", err)
	}
	defer func() { _ = f.Close() }()
	var errs []error
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		var pid int
		var start uint64
		if _, err := fmt.Sscanf(scanner.Text(), "%d %d", &pid, &start); err != nil || pid <= 1 {
			continue
		}
		if now, err := proc.StartTime(pid); err != nil || now != start {
			continue
		}
		for _, target := range []int{-pid, pid} {
			if err := syscall.Kill(target, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("failed to kill container process %d: %w", pid, err))
			}
		}
	}
	errs = append(errs, scanner.Err())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.Remove(path)
}

// ensureMountPoint creates a missing mount point, a directory or (for a
// file) an empty file, with any missing parent directory, recording each
// before creating it.
func (k *Kubelet) ensureMountPoint(path string, isFile bool) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("mount path %q must be absolute", path)
	}
	path = filepath.Clean(path)
	k.recMu.Lock()
	defer k.recMu.Unlock()
	info, statErr := os.Stat(path)
	if statErr == nil {
		if info.IsDir() == isFile {
			return fmt.Errorf("mount point %s exists but is not a %s", path, map[bool]string{true: "file", false: "directory"}[isFile])
		}
		return nil
	}
	var missing []string
	for p := path; p != "/"; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
	}
	if len(missing) == 0 {
		return fmt.Errorf("mount point %s: %w", path, statErr)
	}
	slices.Reverse(missing)
	f, err := os.OpenFile(filepath.Join(k.opts.StateDir, createdDirsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("failed to record mount points: %w", err)
	}
	_, err = f.WriteString(strings.Join(missing, "\n") + "\n")
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("failed to record mount points: %w", err)
	}
	for i, p := range missing {
		if i == len(missing)-1 && isFile {
			err = os.WriteFile(p, nil, 0o644)
		} else {
			err = os.Mkdir(p, 0o755)
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("failed to create mount point %s: %w", p, err)
		}
	}
	return nil
}

// CleanupCreatedDirs removes the mount points a Kubelet with state
// directory stateDir created, deepest first, each only when it is an empty
// directory or an empty file that no mount namespace on the host mounts
// something on (removing it would detach that mount from the processes
// using it). What it leaves stays recorded for the next call.
func CleanupCreatedDirs(stateDir string) error {
	path := filepath.Join(stateDir, createdDirsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read the recorded mount points: %w", err)
	}
	paths := slices.Compact(slices.Sorted(slices.Values(strings.Fields(string(data)))))
	slices.SortStableFunc(paths, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	inUse := mountPoints()
	var kept []string
	for _, p := range paths {
		info, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		real, _ := filepath.EvalSymlinks(p)
		removable := err == nil && !inUse[real] && (info.IsDir() || (info.Mode().IsRegular() && info.Size() == 0))
		if !removable || os.Remove(p) != nil {
			kept = append(kept, p) // in use: left in place
		}
	}
	if len(kept) == 0 {
		return os.Remove(path)
	}
	return os.WriteFile(path, []byte(strings.Join(kept, "\n")+"\n"), 0o644)
}

// mountPoints returns the mount points of every mount namespace on the
// host (all of them share the host's root here).
func mountPoints() map[string]bool {
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	out, seen := map[string]bool{}, map[string]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		ns, err := os.Readlink(filepath.Join("/proc", p.Name(), "ns", "mnt"))
		if err != nil || seen[ns] {
			continue
		}
		seen[ns] = true
		data, err := os.ReadFile(filepath.Join("/proc", p.Name(), "mountinfo"))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			// Field 5 is the mount point.
			if f := strings.Fields(line); len(f) > 4 {
				out[unescape.Replace(f[4])] = true
			}
		}
	}
	return out
}
