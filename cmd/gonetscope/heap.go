package main

// gonetscope profile --kind heap: the runtime's own heap profile, read from
// the target's memory (goruntime.Process.HeapProfile), no probe.

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/pprof"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// heapProfile writes the heap profile of p to f: the runtime's cumulative
// records now (as /debug/pprof/heap), or with a duration what was
// allocated over it (as /debug/pprof/heap?seconds=D).
func heapProfile(p proc.Process, sym *goruntime.Process, delta bool, d time.Duration, ready string, f *os.File) error {
	fail := func(err error) error {
		if errors.Is(err, goruntime.ErrMemProfileOff) {
			return fmt.Errorf("PID %d (%s): no heap profile: %w", p.PID, p.Comm, err)
		}
		return fmt.Errorf("PID %d (%s): reading the heap profile: %w", p.PID, p.Comm, err)
	}
	start := time.Now()
	h, err := sym.HeapProfile()
	if err != nil {
		return fail(err)
	}
	if ready != "" {
		if err := os.WriteFile(ready, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing --ready-file: %w", err)
		}
	}
	defaultType := ""
	if delta {
		if !watchFor(d, p) {
			return fmt.Errorf("PID %d (%s) exited during --duration: no heap profile", p.PID, p.Comm)
		}
		end, err := sym.HeapProfile()
		if err != nil {
			return fail(err)
		}
		h = end.Sub(h)
		defaultType = "alloc_space"
	}
	prof, err := pprof.Heap(sym, h, defaultType)
	if err != nil {
		return err
	}
	if delta {
		prof.DurationNanos = time.Since(start).Nanoseconds()
	}
	if err := prof.Write(f); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	what := "a snapshot"
	if delta {
		what = "allocations over " + time.Since(start).Round(time.Millisecond).String()
	}
	fmt.Fprintf(os.Stderr, "gonetscope: wrote heap profile of PID %d (%s), %s, %d stacks, MemProfileRate %d, to %s: open it with go tool pprof -http=: %s\n",
		p.PID, p.Comm, what, len(prof.Sample), h.Rate, f.Name(), f.Name())
	return nil
}

// flagGiven reports whether flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
