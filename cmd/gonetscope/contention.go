package main

// gonetscope profile --kind mutex|block: the runtime's own contention
// records, read from the target's memory (goruntime.Process.
// ContentionProfile), no probe. They exist only when the program turned
// them on (runtime.SetMutexProfileFraction, SetBlockProfileRate).
// profile --kind block --contention measures it instead, for --duration,
// with uprobes on the runtime's blocking slow paths (pkg/contention).

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/contention"
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
		return fmt.Errorf("PID %d (%s): no %s profile: %w; gonetscope profile --kind block --contention measures blocking without it", p.PID, p.Comm, kind, err)
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

// startContention places the contention probes in p and returns what
// collects a block profile from them: every park of a goroutine on a
// lock, a channel or a select since, by stack and wait
// reason, weighted by how long it stayed parked: delay until it was made
// runnable (as the runtime's own block profile), sched_delay from then
// until it ran.
func startContention(p proc.Process, sym *goruntime.Process) (func(*goruntime.Process, time.Duration) (*profile.Profile, uint64, error), error) {
	o, err := contention.Load(contention.Options{Profile: true})
	if err != nil {
		return nil, err
	}
	skipped, err := o.Attach(sym)
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("PID %d (%s): placing the contention probes: %w", p.PID, p.Comm, err)
	}
	for _, s := range skipped {
		fmt.Fprintf(os.Stderr, "gonetscope: not probed, its blocking goes uncounted: %s\n", s)
	}
	return func(sym *goruntime.Process, d time.Duration) (*profile.Profile, uint64, error) {
		defer o.Close()
		recs, lost, err := o.Records(p.PID)
		if err != nil {
			return nil, 0, err
		}
		b := pprof.NewBuilder(sym, []*profile.ValueType{
			{Type: "contentions", Unit: "count"},
			{Type: "delay", Unit: "nanoseconds"},
			{Type: "sched_delay", Unit: "nanoseconds"},
		}, "delay")
		b.SetPeriod(&profile.ValueType{Type: "contentions", Unit: "count"}, 1)
		b.SetDuration(d)
		// The runtime's own frames (gopark's caller, semacquire1...):
		// the leaf is then where the program's code blocked, as in the
		// runtime's own block profile.
		b.Fold = func(fn string) bool {
			return strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "sync.runtime_") || strings.HasPrefix(fn, "internal/sync.runtime_")
		}
		for _, r := range recs {
			b.Add(r.Stack, []int64{int64(r.Count), int64(r.DelayNs), int64(r.SchedDelayNs)}, map[string][]string{"wait_reason": {sym.Bin.WaitReason(r.Reason)}}, nil)
		}
		prof, err := b.Profile()
		if err != nil {
			return nil, 0, err
		}
		for _, s := range skipped {
			prof.Comments = append(prof.Comments, "not probed: "+s)
		}
		return prof, lost, nil
	}, nil
}
