package main

// gonetscope profile: a pprof profile of one Go process, from stacks the
// kernel captures (see pkg/sampler, pkg/netpoll, pkg/pprof).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/pprof"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"github.com/gonetscope/gonetscope/pkg/sampler"
)

const profileUsage = "Usage: gonetscope profile --pid PID --kind netpoll|cpu|offcpu|heap|mutex|block [--contention] [--duration 30s] -o out.pb.gz"

func profileCmd(args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	var (
		pid      = fs.Int("pid", 0, "PID of the Go program to profile")
		kind     = fs.String("kind", "netpoll", "netpoll (time parked in the netpoller), cpu (on-CPU samples), offcpu (time off CPU), heap (the runtime's own allocation samples, read from memory), mutex or block (the runtime's own contention records, when the program enabled them; block with --contention: measured with uprobes)")
		duration = fs.Duration("duration", 30*time.Second, "how long to profile (Ctrl-C or the target's exit ends it earlier)")
		out      = fs.String("o", "", "write the profile (gzipped pprof protobuf) to this file")
		freq     = fs.Uint64("frequency", 99, "cpu: samples per second per CPU")
		full     = fs.Bool("full-stacks", false, "netpoll: keep the runtime, syscall and internal/poll frames below the call that waited")
		ready    = fs.String("ready-file", "", "create this file once profiling has started")
		contend  = fs.Bool("contention", false, "block: measure it for --duration with uprobes on the runtime's blocking slow paths (locks, channels, select), whether or not the program records a block profile itself")
	)
	fs.StringVar(out, "output", "", "same as -o")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fmt.Println(profileUsage)
			fs.PrintDefaults()
			return nil
		}
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: %s", fs.Arg(0), profileUsage)
	case *pid <= 0:
		return errors.New("no target: give the PID of a Go program with --pid")
	case *kind != "netpoll" && *kind != "cpu" && *kind != "offcpu" && *kind != "heap" && *kind != "mutex" && *kind != "block":
		return fmt.Errorf("unknown profile kind %q: use --kind netpoll, cpu, offcpu, heap, mutex or block", *kind)
	case *duration <= 0:
		return fmt.Errorf("--duration %s: give a positive duration such as 30s", *duration)
	case *out == "":
		return errors.New("no output file: give one with -o out.pb.gz")
	case *freq == 0 || *freq > 10000:
		return fmt.Errorf("--frequency %d: use 1 to 10000 samples per second", *freq)
	case *contend && *kind != "block":
		return fmt.Errorf("--contention makes a block profile (where goroutines waited): use it with --kind block, not %s", *kind)
	}
	// heap, mutex and block load nothing into the kernel: they read the
	// target's memory, and need no tracefs (which checkPrivileges may
	// mount by executing gonetscope again).
	fromMemory := *kind == "heap" || *kind == "mutex" || (*kind == "block" && !*contend)
	if !fromMemory {
		if err := checkPrivileges(); err != nil {
			return err
		}
	}
	// The binary and its symbol tables first: a target we cannot
	// symbolize is refused before anything is loaded into the kernel.
	p, sym, err := openTarget(*pid)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("opening the output file: %w", err)
	}
	defer f.Close()
	if *kind == "heap" {
		return heapProfile(p, sym, flagGiven(fs, "duration"), *duration, *ready, f)
	}
	if fromMemory {
		return contentionProfile(p, sym, *kind, f)
	}

	var collect func(*goruntime.Process, time.Duration) (*profile.Profile, uint64, error)
	switch {
	case *contend:
		collect, err = startContention(p, sym)
	case *kind == "netpoll":
		collect, err = startNetpoll(p, sym.Bin, !*full)
	default:
		collect, err = startSampler(p, sampler.Kind(*kind), *freq)
	}
	if err != nil {
		return err
	}
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			return fmt.Errorf("writing --ready-file: %w", err)
		}
	}

	start := time.Now()
	watchFor(*duration, p) // a target that exits ends the profile early
	prof, lost, err := collect(sym, time.Since(start))
	if err != nil {
		return err
	}
	if lost > 0 {
		prof.Comments = append(prof.Comments, fmt.Sprintf("%d samples lost (stack or sample map full)", lost))
		fmt.Fprintf(os.Stderr, "gonetscope: %d samples lost (stack or sample map full)\n", lost)
	}
	if err := prof.Write(f); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	fmt.Fprintf(os.Stderr, "gonetscope: wrote %s profile of PID %d (%s), %s, %d samples, to %s: open it with go tool pprof -http=: %s\n",
		prof.DefaultSampleType, p.PID, p.Comm, time.Since(start).Round(time.Millisecond), len(prof.Sample), *out, *out)
	return nil
}

// startNetpoll loads the netpoll object for p alone, sending no events,
// and records the stack of every netpoll wait where it resumes.
func startNetpoll(p proc.Process, bin *goruntime.Binary, fold bool) (func(*goruntime.Process, time.Duration) (*profile.Profile, uint64, error), error) {
	np, err := netpoll.Load(netpoll.Options{StackTraces: 16384, RingBufferBytes: uint32(os.Getpagesize())})
	if err != nil {
		return nil, err
	}
	ns, err := proc.ReadNamespaces(p.PID)
	if err != nil {
		np.Close()
		return nil, fmt.Errorf("reading the namespaces of PID %d: %w", p.PID, err)
	}
	v := netpoll.TargetOf(p, ns, bin, -1)
	if err := np.AddTarget(uint32(p.PID), &v); err != nil {
		np.Close()
		return nil, fmt.Errorf("adding PID %d to the kernel filter: %w", p.PID, err)
	}
	if err := np.EnableStacks(p.PID); err != nil {
		np.Close()
		return nil, err
	}
	return func(sym *goruntime.Process, d time.Duration) (*profile.Profile, uint64, error) {
		defer np.Close()
		stacks, lost, err := np.Stacks(p.PID)
		if err != nil {
			return nil, 0, err
		}
		b := pprof.NewBuilder(sym, []*profile.ValueType{
			{Type: "waits", Unit: "count"},
			{Type: "wait", Unit: "nanoseconds"},
			{Type: "io_wait", Unit: "nanoseconds"},
			{Type: "sched_delay", Unit: "nanoseconds"},
		}, "wait")
		if fold {
			b.Fold = pprof.SyscallPlumbing
		}
		b.SetDuration(d)
		for _, s := range stacks {
			b.Add(s.Stack, []int64{int64(s.Count), int64(s.WaitNs), int64(s.IoWaitNs), int64(s.SchedDelayNs)},
				map[string][]string{"mode": {s.Mode}}, nil)
		}
		prof, err := b.Profile()
		return prof, lost, err
	}, nil
}

// startSampler attaches the cpu or offcpu sampler to p.
func startSampler(p proc.Process, kind sampler.Kind, freq uint64) (func(*goruntime.Process, time.Duration) (*profile.Profile, uint64, error), error) {
	s, err := sampler.Load(sampler.Options{PID: p.PID, Kind: kind, FrequencyHz: freq})
	if err != nil {
		return nil, err
	}
	return func(sym *goruntime.Process, d time.Duration) (*profile.Profile, uint64, error) {
		defer s.Close()
		s.Stop()
		samples, lost, err := s.Samples()
		if err != nil {
			return nil, 0, err
		}
		var b *pprof.Builder
		period := int64(time.Second) / int64(freq)
		if kind == sampler.CPU {
			b = pprof.NewBuilder(sym, []*profile.ValueType{
				{Type: "samples", Unit: "count"},
				{Type: "cpu", Unit: "nanoseconds"},
			}, "cpu")
			b.SetPeriod(&profile.ValueType{Type: "cpu", Unit: "nanoseconds"}, period)
		} else {
			b = pprof.NewBuilder(sym, []*profile.ValueType{
				{Type: "switches", Unit: "count"},
				{Type: "offcpu", Unit: "nanoseconds"},
			}, "offcpu")
		}
		b.SetDuration(d)
		for _, smp := range samples {
			v := []int64{int64(smp.Count), int64(smp.Ns)}
			if kind == sampler.CPU {
				v[1] = int64(smp.Count) * period
			}
			b.Add(smp.Stack, v, nil, map[string][]int64{"tid": {int64(smp.TID)}})
		}
		prof, err := b.Profile()
		return prof, lost, err
	}, nil
}
