package main

// gonetscope profile --kind mutex|block: the runtime's own contention
// records, read from the target's memory (goruntime.Process.
// ContentionProfile), no probe. They exist only when the program turned
// them on (runtime.SetMutexProfileFraction, SetBlockProfileRate).

import (
	"errors"
	"fmt"
	"os"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/pprof"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// contentionProfile writes the runtime's mutex or block profile of p to f,
// as /debug/pprof/mutex or /debug/pprof/block writes it: cumulative since
// the program started.
func contentionProfile(p proc.Process, sym *goruntime.Process, kind string, f *os.File) error {
	c, err := sym.ContentionProfile(kind)
	if errors.Is(err, goruntime.ErrContentionOff) {
		return fmt.Errorf("PID %d (%s): no %s profile: %w", p.PID, p.Comm, kind, err)
	}
	if err != nil {
		return fmt.Errorf("PID %d (%s): reading the %s profile: %w", p.PID, p.Comm, kind, err)
	}
	prof, err := pprof.Contention(sym, c)
	if err != nil {
		return err
	}
	if err := prof.Write(f); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	fmt.Fprintf(os.Stderr, "gonetscope: wrote %s profile of PID %d (%s), %d stacks, to %s: open it with go tool pprof -http=: %s\n",
		kind, p.PID, p.Comm, len(prof.Sample), f.Name(), f.Name())
	return nil
}
