package goruntime

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// InspectPID checks that pid can be traced, without touching it: it exists
// and runs a Go program this package understands. The errors are written
// for the user who gave the PID.
func InspectPID(pid int) (proc.Process, *Binary, error) {
	var bin *Binary
	p, err := withExecutable(pid, func(path string, f *os.File) (err error) {
		bin, err = InspectReader(path, f)
		return err
	})
	return p, bin, err
}

// CheckPID is InspectPID without reading the runtime's layouts (the
// DWARF, the slow part): it refuses what InspectPID refuses, but a
// binary whose DWARF cannot be read.
func CheckPID(pid int) error {
	_, err := withExecutable(pid, func(path string, f *os.File) error {
		elfFile, err := elf.NewFile(f)
		if err != nil {
			return fmt.Errorf("%s: %w (not an ELF executable: %v)", path, ErrNotGo, err)
		}
		_, err = identify(path, f, elfFile, runtime.GOARCH)
		return err
	})
	return err
}

// withExecutable opens pid and its executable for read, with the errors
// written for the user who gave the PID.
func withExecutable(pid int, read func(path string, f *os.File) error) (proc.Process, error) {
	p, err := proc.Open(pid)
	if errors.Is(err, proc.ErrNoProcess) {
		return p, fmt.Errorf("no process with PID %d: check the PID (pgrep NAME)", pid)
	}
	if err != nil {
		return p, fmt.Errorf("reading process %d: %w", pid, err)
	}
	f, err := os.Open(p.ExePath())
	if err != nil {
		return p, fmt.Errorf("opening the executable of PID %d: %w", pid, err)
	}
	defer f.Close()
	err = read(p.ExePath(), f)
	if errors.Is(err, ErrNotGo) {
		return p, fmt.Errorf("PID %d (%s) is not a Go program: gonetscope traces Go programs only", pid, p.Comm)
	}
	if err != nil {
		return p, fmt.Errorf("PID %d (%s): %w", pid, p.Comm, err)
	}
	return p, nil
}
