// Package proc identifies processes the local environment started by PID
// and start time, so that a recycled PID, or a process whose binary was
// rebuilt since, is told apart correctly.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StartTime is the start time of pid, in clock ticks since boot (field 22
// of /proc/<pid>/stat).
func StartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// Alive reports whether the process pid that started at start still runs.
func Alive(pid int, start uint64) bool {
	now, err := StartTime(pid)
	return err == nil && now == start
}
