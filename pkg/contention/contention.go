// Package contention loads bpf/contention.bpf.c: how long the goroutines
// of a Go program block on sync.Mutex, RWMutex, WaitGroup,
// channels and select, by stack and wait reason, from uprobes on the
// runtime's blocking slow paths (opt-in: gonetscope profile --kind block
// --contention, and trace --contention, which sends the blocks of at least
// --min-block as contention events). It works whether or not the program
// turned on its own block or mutex profile.
package contention

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// blockingCalls are the runtime functions whose parks are contention,
// and what they park with: gopark (reason its third argument) or
// goparkunlock (its second), whichever the compiler left as a call.
// Network waits (netpollblock), sleeps and the runtime's own workers
// park elsewhere and are not probed. Nor is sync.Cond.Wait
// (sync.runtime_notifyListWait), a signal rather than contention:
// net/http's server waits on one after every keep-alive response
// (connReader.abortPendingRead), which made three uprobe hits per
// request, x1.25 CPU per request on make bench's server.
var blockingCalls = []string{
	"runtime.semacquire1", // sync.Mutex, RWMutex, WaitGroup (sync.runtime_Semacquire*)
	"runtime.chanrecv",    // <-ch
	"runtime.chansend",    // ch <- v
	"runtime.selectgo",    // select
}

// parkers are the callees of blockingCalls that park, with the program
// that reads their wait reason.
var parkers = []struct{ callee, prog string }{
	{"runtime.gopark", contentionProgBlockGopark},
	{"runtime.goparkunlock", contentionProgBlockGoparkunlock},
}

// Probe is one uprobe: where, and which program.
type Probe struct {
	goruntime.Site
	Prog string
}

// Sites finds the probes in the runtime of f: for each park in
// blockingCalls, the call (block) and the first emulated instruction
// after it (unblock). A function the program does not have (the linker
// left it out: nothing calls it) is passed over; one with no park found
// is left out and named in skipped (the runtime's code differs: the rest
// still serve); none at all is an error.
func Sites(f *elf.File, funcs goruntime.FuncLookup) (probes []Probe, skipped []string, err error) {
	for _, caller := range blockingCalls {
		if _, _, ok := funcs(caller); !ok {
			continue
		}
		var found []Probe
		var why []string
		for _, p := range parkers {
			calls, err := goruntime.CallSites(f, funcs, caller, p.callee)
			if err != nil {
				why = append(why, err.Error())
				continue
			}
			resumes, err := goruntime.ResumeSites(f, funcs, caller, calls)
			if err != nil {
				why = append(why, err.Error())
				found = nil
				break
			}
			for i := range calls {
				found = append(found, Probe{calls[i], p.prog}, Probe{resumes[i], contentionProgUnblock})
			}
		}
		if len(found) == 0 {
			skipped = append(skipped, fmt.Sprintf("%s (%s)", caller, strings.Join(why, "; ")))
			continue
		}
		probes = append(probes, found...)
	}
	if len(probes) == 0 {
		return nil, skipped, fmt.Errorf("no blocking call of the runtime found: %s", strings.Join(skipped, "; "))
	}
	// Where runtime.ready cannot be probed, a block's delay runs until
	// the goroutine ran again, scheduling delay included.
	if s, err := goruntime.EntryBranch(f, funcs, "runtime.ready"); err == nil {
		probes = append(probes, Probe{s, contentionProgReady})
	} else {
		skipped = append(skipped, fmt.Sprintf("runtime.ready (%v): delays include the scheduler's", err))
	}
	return probes, skipped, nil
}

// Objects are the loaded programs and maps, and the uprobes per target.
type Objects struct {
	coll  *ebpf.Collection
	links map[int][]link.Link

	profile bool

	mu sync.Mutex
	// bins name each target's wait reasons in its events.
	bins map[uint32]*goruntime.Binary
}

// Options change the object before it is loaded.
type Options struct {
	// MinBlock is the shortest block sent as a contention event; zero
	// sends none (a profile reads the counts only).
	MinBlock time.Duration
	// RingBufferBytes sizes the event ring buffer (a power of two, a
	// multiple of the page size); zero: one page without events, else
	// 1 MiB.
	RingBufferBytes uint32
	// Profile takes every block's stack and counts it (Records); else
	// only the events' blocks have a stack, taken as they end.
	Profile bool
	// WakeupInterval bounds the reader's wake-ups: the tracer's drain
	// interval (zero: 50ms).
	WakeupInterval time.Duration
}

// Load loads the programs.
func Load(opts Options) (*Objects, error) {
	spec, err := loadContention()
	if err != nil {
		return nil, err
	}
	switch {
	case opts.RingBufferBytes != 0:
		spec.Maps[contentionMapEvents].MaxEntries = opts.RingBufferBytes
	case opts.MinBlock == 0:
		spec.Maps[contentionMapEvents].MaxEntries = uint32(os.Getpagesize())
	}
	if opts.WakeupInterval > 0 {
		if err := spec.Variables[contentionVarWakeupIntervalNs].Set(uint64(opts.WakeupInterval.Nanoseconds())); err != nil {
			return nil, fmt.Errorf("setting wakeup_interval_ns: %w", err)
		}
	}
	if opts.Profile {
		if err := spec.Variables[contentionVarProfileStacks].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("setting profile_stacks: %w", err)
		}
	}
	if opts.MinBlock > 0 {
		if err := spec.Variables[contentionVarMinBlockNs].Set(uint64(opts.MinBlock.Nanoseconds())); err != nil {
			return nil, fmt.Errorf("setting min_block_ns: %w", err)
		}
	}
	coll, err := bpfobj.NewCollection(spec, ebpf.CollectionOptions{})
	if err != nil {
		return nil, bpfobj.LoadError("contention BPF object", err)
	}
	return &Objects{coll: coll, links: map[int][]link.Link{}, bins: map[uint32]*goruntime.Binary{}, profile: opts.Profile}, nil
}

// Hooks names the mechanism, for the attached event.
func (o *Objects) Hooks() map[string]string { return map[string]string{"contention": "uprobe"} }

// Events is the ring buffer of contention events.
func (o *Objects) Events() *ebpf.Map { return o.coll.Maps[contentionMapEvents] }

// Lost returns how many contention events found the ring buffer full.
func (o *Objects) Lost() (map[string]uint64, error) {
	return bpfobj.LostCounts(o.coll.Maps[contentionMapLost], map[contentionContentionEventType]string{
		contentionContentionEventTypeEVENT_CONTENTION: "contention",
	})
}

// Decode turns one ring buffer record into a contention event, its
// stack (where it blocked) unsymbolized.
func (o *Objects) Decode(raw []byte, clock bpfobj.Clock) (event.Event, error) {
	r, err := bpfobj.View[contentionContentionEvent](raw)
	if err != nil {
		return nil, err
	}
	if contentionContentionEventType(r.Hdr.Type) != contentionContentionEventTypeEVENT_CONTENTION {
		return nil, fmt.Errorf("contention: unknown event type %d", r.Hdr.Type)
	}
	h, err := bpfobj.View[bpfobj.EventHeader](raw)
	if err != nil {
		return nil, err
	}
	e := &event.Contention{Header: h.Header("contention", clock), DelayNs: r.DelayNs, SchedDelayNs: r.SchedDelayNs, ReadySeen: r.ReadySeen != 0}
	if r.StackId >= 0 {
		if stack, err := bpfobj.ReadStack(o.coll.Maps[contentionMapContentionStacks], r.StackId); err == nil {
			e.Stack = &event.Stack{PCs: stack}
		}
	}
	o.mu.Lock()
	if b := o.bins[r.Hdr.Pid]; b != nil {
		e.WaitReason = b.WaitReason(uint8(r.Reason))
	}
	o.mu.Unlock()
	return e, nil
}

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	for pid := range o.links {
		o.Detach(pid)
	}
	o.coll.Close()
	return nil
}

// Attach places the probes in the running Go process p (its executable
// through /proc/PID/exe) and returns the blocking calls it could not
// probe.
func (o *Objects) Attach(p *goruntime.Process) (skipped []string, err error) {
	if p.Bin.Offsets.GGoid == 0 {
		return nil, errors.New("runtime.g offsets unknown")
	}
	f, err := p.OpenExe()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	probes, skipped, err := Sites(f, p.Syms.Func)
	if err != nil {
		return nil, err
	}
	if !o.profile {
		// Every wake-up in the program hits runtime.ready, not
		// only those of the probed parks: one more uprobe hit per
		// keep-alive request in net/http (its sync.Cond). Events
		// go without it; their delay runs until the goroutine ran.
		probes = slices.DeleteFunc(probes, func(p Probe) bool { return p.Prog == contentionProgReady })
	}
	o.mu.Lock()
	o.bins[uint32(p.PID)] = p.Bin
	o.mu.Unlock()
	if err := o.coll.Maps[contentionMapGoidOffsets].Put(uint32(p.PID), uint32(p.Bin.Offsets.GGoid)); err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable(p.ExePath())
	if err != nil {
		return nil, err
	}
	for _, pr := range probes {
		up, err := ex.Uprobe("", o.coll.Programs[pr.Prog], &link.UprobeOptions{Address: pr.FileOffset, PID: p.PID})
		if err != nil {
			o.Detach(p.PID)
			return nil, fmt.Errorf("attaching uprobe at %#x (%s): %w", pr.Addr, pr.Inst, err)
		}
		o.links[p.PID] = append(o.links[p.PID], up)
	}
	return skipped, nil
}

// Detach removes pid's uprobes and forgets what it recorded.
func (o *Objects) Detach(pid int) {
	bpfobj.CloseAll(o.links[pid])
	delete(o.links, pid)
	o.coll.Maps[contentionMapGoidOffsets].Delete(uint32(pid))
	o.mu.Lock()
	delete(o.bins, uint32(pid))
	o.mu.Unlock()
	bpfobj.DeleteWhere[contentionBlockedKey, contentionBlocked](o.coll.Maps[contentionMapBlocked],
		func(k *contentionBlockedKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[contentionContentionKey, contentionContentionValue](o.coll.Maps[contentionMapContentions],
		func(k *contentionContentionKey) bool { return k.Pid == uint32(pid) })
}

// Record is the blocking of one stack for one wait reason.
type Record struct {
	Stack   []uint64 // user pcs, innermost first (the blocking call first)
	Reason  uint8    // the runtime's waitReason (goruntime.Binary.WaitReason)
	Count   uint64   // times a goroutine blocked there
	DelayNs uint64   // their blocked time, until each was made runnable
	// SchedDelayNs is the time from runnable to running again.
	SchedDelayNs uint64
}

// Records returns what pid's goroutines blocked on since the attach, and
// how many blocks were lost (their stack, or the map, full).
func (o *Objects) Records(pid int) ([]Record, uint64, error) {
	var (
		k   contentionContentionKey
		v   contentionContentionValue
		out []Record
	)
	stacks := o.coll.Maps[contentionMapContentionStacks]
	it := o.coll.Maps[contentionMapContentions].Iterate()
	for it.Next(&k, &v) {
		if k.Pid != uint32(pid) || k.StackId < 0 {
			continue
		}
		stack, err := bpfobj.ReadStack(stacks, k.StackId)
		if err != nil {
			continue
		}
		out = append(out, Record{Stack: stack, Reason: uint8(k.Reason), Count: v.Count, DelayNs: v.DelayNs, SchedDelayNs: v.SchedDelayNs})
	}
	if err := it.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading contentions: %w", err)
	}
	var lost uint64
	for _, which := range []uint32{0, 1} {
		n, err := bpfobj.SumPerCPU(o.coll.Maps[contentionMapContentionLost], which)
		if err != nil {
			return nil, 0, fmt.Errorf("reading lost contentions: %w", err)
		}
		lost += n
	}
	return out, lost, nil
}
