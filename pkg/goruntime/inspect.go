package goruntime

import (
	"errors"
	"fmt"
	"os"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// InspectPID checks that pid can be traced, without touching it: it exists
// and runs a Go program this package understands. The errors are written
// for the user who gave the PID.
func InspectPID(pid int) (proc.Process, *Binary, error) {
	p, err := proc.Open(pid)
	if errors.Is(err, proc.ErrNoProcess) {
		return p, nil, fmt.Errorf("no process with PID %d: check the PID (pgrep NAME)", pid)
	}
	if err != nil {
		return p, nil, fmt.Errorf("reading process %d: %w", pid, err)
	}
	f, err := os.Open(p.ExePath())
	if err != nil {
		return p, nil, fmt.Errorf("opening the executable of PID %d: %w", pid, err)
	}
	defer f.Close()
	bin, err := InspectReader(p.ExePath(), f)
	if errors.Is(err, ErrNotGo) {
		return p, nil, fmt.Errorf("PID %d (%s) is not a Go program: gonetscope traces Go programs only", pid, p.Comm)
	}
	if err != nil {
		return p, nil, fmt.Errorf("PID %d (%s): %w", pid, p.Comm, err)
	}
	return p, bin, nil
}
