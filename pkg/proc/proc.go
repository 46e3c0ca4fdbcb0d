// Package proc reads the facts about a process that gonetscope keys and
// labels its targets with, from /proc.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Root is where procfs is mounted; tests and containers may move it.
var Root = "/proc"

// ErrNoProcess means there is no process with that PID.
var ErrNoProcess = errors.New("no such process")

// Process identifies one process across PID reuse: a PID and its start time.
type Process struct {
	PID int
	// StartTicks is field 22 of /proc/PID/stat: the start time in clock
	// ticks since boot. The BPF side compares it with the task's
	// start_boottime, so a new process that reuses the PID is not traced.
	StartTicks uint64
	Comm       string
	// State is field 3 of /proc/PID/stat: R, S, D, Z (zombie), X (dead), ...
	State byte
}

// Open reads pid's identity.
func Open(pid int) (Process, error) {
	if pid <= 0 {
		return Process{}, fmt.Errorf("PID %d: %w", pid, ErrNoProcess)
	}
	raw, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", Root, pid))
	if errors.Is(err, os.ErrNotExist) {
		return Process{}, fmt.Errorf("PID %d: %w", pid, ErrNoProcess)
	}
	if err != nil {
		return Process{}, err
	}
	return parseStat(pid, raw)
}

// statFields splits /proc/PID/stat into comm and the fields after it,
// fields[0] being field 3 (state). comm is in parentheses and may itself
// hold spaces and parentheses, so fields are counted from the last ')'.
func statFields(pid int, raw []byte) (comm string, fields []string, err error) {
	open, close := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
	if open < 0 || close < open {
		return "", nil, fmt.Errorf("PID %d: malformed stat", pid)
	}
	return string(raw[open+1 : close]), strings.Fields(string(raw[close+1:])), nil
}

// parseStat parses /proc/PID/stat.
func parseStat(pid int, raw []byte) (Process, error) {
	comm, fields, err := statFields(pid, raw)
	if err != nil {
		return Process{}, err
	}
	p := Process{PID: pid, Comm: comm}
	// starttime is field 22.
	const starttime = 22 - 3
	if len(fields) <= starttime {
		return Process{}, fmt.Errorf("PID %d: stat has %d fields, want at least 22", pid, len(fields)+2)
	}
	v, err := strconv.ParseUint(fields[starttime], 10, 64)
	if err != nil {
		return Process{}, fmt.Errorf("PID %d: stat starttime: %w", pid, err)
	}
	p.StartTicks = v
	if st := fields[0]; len(st) != 1 || st[0] < 'A' || st[0] > 'z' {
		return Process{}, fmt.Errorf("PID %d: stat state %q is not a letter", pid, st)
	}
	p.State = fields[0][0]
	return p, nil
}

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// architecture Linux exposes it on.
const userHZ = 100

// CPUTime is the CPU time pid's threads have used, user and system, from
// fields 14 and 15 of /proc/PID/stat (10 ms resolution).
func CPUTime(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(Path(pid, "stat"))
	if err != nil {
		return 0, err
	}
	return parseCPUTime(pid, raw)
}

func parseCPUTime(pid int, raw []byte) (time.Duration, error) {
	_, fields, err := statFields(pid, raw)
	if err != nil {
		return 0, err
	}
	// utime and stime are fields 14 and 15.
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("PID %d: stat has %d fields, want at least 15", pid, len(fields)+2)
	}
	var ticks uint64
	for _, i := range []int{utime, stime} {
		v, err := strconv.ParseUint(fields[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("PID %d: stat field %d: %w", pid, i+3, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// Alive reports whether p is still running: same PID, same start time, and
// not a zombie (an exited process its parent has not reaped yet).
func (p Process) Alive() bool {
	q, err := Open(p.PID)
	return err == nil && q.StartTicks == p.StartTicks && q.State != 'Z' && q.State != 'X'
}

// ExePath is where the process's executable can be opened, even when it was
// deleted or lives in another mount namespace.
func (p Process) ExePath() string {
	return fmt.Sprintf("%s/%d/exe", Root, p.PID)
}

// OpenFDs counts the process's open file descriptors.
func OpenFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("%s/%d/fd", Root, pid))
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// FDLimit returns the soft RLIMIT_NOFILE of the process.
func FDLimit(pid int) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("%s/%d/limits", Root, pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "Max open files") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
		if len(f) < 1 {
			break
		}
		if f[0] == "unlimited" {
			return ^uint64(0), nil
		}
		return strconv.ParseUint(f[0], 10, 64)
	}
	return 0, fmt.Errorf("PID %d: no open-files limit in limits", pid)
}
