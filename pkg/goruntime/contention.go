package goruntime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"go/version"
	"math"
	"os"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// ContentionRecord is one bucket of the runtime's block or mutex profile:
// the waits recorded at one call stack (runtime.BlockProfile,
// runtime.MutexProfile), cumulative since the program started.
type ContentionRecord struct {
	// Count is the events (scaled up by the sampling rate, as the runtime
	// records them), Cycles the time waited in CPU ticks.
	Count, Cycles int64
	// Stack: return addresses (run-time), leaf first.
	Stack []uint64
}

// ContentionProfile is the runtime's block or mutex profile, read from its
// memory.
type ContentionProfile struct {
	Kind string // "block" or "mutex"
	// Rate is runtime.blockprofilerate (CPU ticks: 1 samples every
	// blocking event) or runtime.mutexprofilerate (1 in Rate events);
	// -1 when it could not be found (a stripped binary whose code
	// gonetscope finds it in is not known).
	Rate int64
	// TicksPerSecond converts Cycles to time: the runtime's own
	// ticks.val once it measured it, else measured here from its start
	// marks (startTicks, startTime) and this machine's TSC.
	TicksPerSecond int64
	Records        []ContentionRecord
}

// ErrContentionOff means the target records no block or mutex profile.
var ErrContentionOff = errors.New("the program records no such profile: it has not called runtime.SetBlockProfileRate or runtime.SetMutexProfileFraction with a positive value")

// ContentionProfile reads the runtime's block ("block") or mutex
// ("mutex") profile buckets: what runtime.BlockProfile or MutexProfile
// would return now.
func (p *Process) ContentionProfile(kind string) (*ContentionProfile, error) {
	o := p.Bin.Offsets
	if version.Compare(version.Lang(p.Bin.GoVersion), "go1.20") < 0 {
		return nil, fmt.Errorf("%s: the %s profile is read from Go 1.20 on", p.Bin.GoVersion, kind)
	}
	if o.BucketHdr == 0 || o.BucketAllnext == 0 || o.BucketNstk == 0 || o.BlockRecCycles == 0 || o.TicksVal == 0 {
		return nil, fmt.Errorf("the layout of the %s profile buckets of %s is not known (runtime.bucket, blockRecord, ticksType)", kind, p.Bin.GoVersion)
	}
	head, rate := "runtime.bbuckets", "runtime.blockprofilerate"
	if kind == "mutex" {
		head, rate = "runtime.xbuckets", "runtime.mutexprofilerate"
	} else if kind != "block" {
		return nil, fmt.Errorf("unknown contention profile %q", kind)
	}
	var addrs [3]uint64
	for i, name := range []string{head, rate, "runtime.ticks"} {
		a, err := p.global(name)
		if err != nil && name != rate {
			return nil, err
		}
		addrs[i] = a // the rate may stay unknown (0): see Rate
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	m := memReader{mem}
	cp := &ContentionProfile{Kind: kind, Rate: -1}
	if addrs[1] != 0 {
		r, err := m.u64(addrs[1])
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", rate, err)
		}
		cp.Rate = int64(r)
	}
	b, err := m.u64(addrs[0])
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", head, err)
	}
	if cp.Rate <= 0 && b == 0 {
		return nil, ErrContentionOff
	}
	// Only now: a program that records nothing is told so even when it
	// started too recently for its tick rate to be measured.
	if cp.TicksPerSecond, err = p.ticksPerSecond(m, addrs[2]); err != nil {
		return nil, err
	}
	err = p.walkBuckets(m, b, head, kind, uint64(o.BlockRecCycles)+8, func(_ uint64, _ []byte, stack []uint64, br []byte) {
		rec := ContentionRecord{Stack: stack}
		// As runtime.BlockProfile and MutexProfile: int64(count); a
		// block record never counts 0.
		rec.Count = int64(math.Float64frombits(binary.LittleEndian.Uint64(br)))
		rec.Cycles = int64(binary.LittleEndian.Uint64(br[o.BlockRecCycles:]))
		if kind == "block" && rec.Count == 0 {
			rec.Count = 1
		}
		cp.Records = append(cp.Records, rec)
	})
	if err != nil {
		return nil, err
	}
	return cp, nil
}

// ticksPerSecond is the runtime's ticks.val, the rate runtime/pprof
// converts cycles with; before the runtime measured it, measured as the
// runtime would (ticksPerSecond): ticks since its start mark over the
// time since, with this machine's clock of cputicks (the TSC on amd64,
// which every process shares; nanotime on arm64).
func (p *Process) ticksPerSecond(m memReader, ticks uint64) (int64, error) {
	o := p.Bin.Offsets
	val, err := m.u64(ticks + uint64(o.TicksVal))
	if err != nil {
		return 0, fmt.Errorf("reading runtime.ticks: %w", err)
	}
	if val != 0 {
		return int64(val), nil
	}
	if p.Bin.arch() == "arm64" {
		return 1e9, nil // cputicks is nanotime
	}
	if o.TicksStartTicks == 0 || o.TicksStartTime == 0 || !haveTSC {
		return 0, errors.New("the runtime has not measured its tick rate yet (it does when runtime/pprof first asks), and this Go version keeps no start marks")
	}
	startTicks, err1 := m.u64(ticks + uint64(o.TicksStartTicks))
	startTime, err2 := m.u64(ticks + uint64(o.TicksStartTime))
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("reading runtime.ticks: %w", err)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, err
	}
	nowTicks, nowTime := cputicks(), ts.Nano()
	if int64(nowTicks) <= int64(startTicks) || nowTime-int64(startTime) < 100e6 {
		return 0, errors.New("the target started too recently to tell its tick rate")
	}
	return int64(float64(nowTicks-startTicks) * 1e9 / float64(nowTime-int64(startTime))), nil
}
