package goruntime

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// GCStats are the garbage collector's own records, read from the
// target's memory at once: runtime.memstats (what runtime.ReadMemStats
// copies) and runtime.gcController (the pacer).
type GCStats struct {
	// NumGC is the number of completed GC cycles (memstats.numgc), and
	// NumForcedGC those the program forced (runtime.GC()).
	NumGC, NumForcedGC uint32
	// PauseTotalNs is the cumulative stop-the-world pause time since the
	// program started (memstats.pause_total_ns).
	PauseTotalNs uint64
	// Pauses are the most recent cycles' pauses, newest first: up to
	// the runtime's ring of 256 (memstats.pause_ns, pause_end).
	Pauses []GCPause
	// LastGCUnixNs is when the last cycle ended (memstats.last_gc_unix),
	// ns since 1970; 0 before the first.
	LastGCUnixNs uint64
	// GOGC is gcController.gcPercent (negative: GC off), MemoryLimit
	// gcController.memoryLimit (math.MaxInt64: no limit), bytes.
	GOGC        int32
	MemoryLimit int64
	// HeapLive is gcController.heapLive: the bytes the last GC marked
	// plus those allocated since, as far as spans were handed out (the
	// pacer's view of the heap; HeapAlloc of ReadMemStats is summed from
	// per-P counters and is not read here). HeapMarked is
	// gcController.heapMarked: the live heap the last cycle's marking
	// found.
	HeapLive, HeapMarked uint64
	// HeapGoal is the goal GOGC sets for the next cycle
	// (gcController.gcPercentHeapGoal): the runtime's NextGC, unless a
	// memory limit lowers it or the minimum runway or sweep distance
	// raises it. LastHeapGoal is gcController.lastHeapGoal, the goal of
	// the last cycle; HeapMinimum gcController.heapMinimum (4 MiB at
	// GOGC=100).
	HeapGoal, LastHeapGoal, HeapMinimum uint64
	// TotalAlloc is gcController.totalAlloc: bytes allocated since the
	// program started, counted when a span is handed out (so it runs
	// ahead of MemStats.TotalAlloc by what sits unused in the per-P
	// caches); 0 when its offset is not known.
	TotalAlloc uint64
	// Heap0, Heap1 and Heap2 are the last completed cycle's heap at its
	// start, at its mark termination and marked live (runtime.work,
	// what GODEBUG=gctrace=1 prints as "heap0->heap1->heap2 MB"). Valid
	// only when HasCycleHeap: runtime.work is known and no cycle had
	// started since (a started cycle overwrites heap0).
	Heap0, Heap1, Heap2 uint64
	HasCycleHeap        bool
}

// GCPause is one GC cycle's stop-the-world pause.
type GCPause struct {
	Ns        uint64 // its pauses' total (pause_ns)
	EndUnixNs uint64 // when it ended (pause_end), ns since 1970
}

// GCStats reads the GC's records. If a cycle ends while they are read,
// they are read again; the memstats fields come from one read.
func (p *Process) GCStats() (*GCStats, error) {
	o := p.Bin.Offsets
	if o.MsPauseTotalNs == 0 || o.MsPauseNs == 0 || o.MsPauseEnd == 0 || o.MsPauseLen == 0 || o.MsNumgc == 0 ||
		o.MsNumforcedgc == 0 || o.MsLastGCUnix == 0 {
		return nil, fmt.Errorf("the layout of runtime.mstats of %s is not known", p.Bin.GoVersion)
	}
	if o.GcHeapLive == 0 || o.GcMemoryLimit == 0 || o.GcHeapMarked == 0 || o.GcPercentHeapGoal == 0 ||
		o.GcLastHeapGoal == 0 || o.GcHeapMinimum == 0 {
		return nil, fmt.Errorf("the layout of runtime.gcControllerState of %s is not known (gcPercentHeapGoal, memoryLimit: Go 1.20+)", p.Bin.GoVersion)
	}
	ms, err := p.global("runtime.memstats")
	if err != nil {
		return nil, err
	}
	gc, err := p.global("runtime.gcController")
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	m := memReader{mem}
	// The memstats fields read, in one span.
	lo := min(o.MsLastGCUnix, o.MsPauseTotalNs, o.MsPauseNs, o.MsPauseEnd, o.MsNumgc, o.MsNumforcedgc)
	hi := max(o.MsLastGCUnix+8, o.MsPauseTotalNs+8, o.MsPauseNs+8*o.MsPauseLen, o.MsPauseEnd+8*o.MsPauseLen, o.MsNumgc+4, o.MsNumforcedgc+4)
	msb := make([]byte, hi-lo)
	gcHi := max(o.GcMemoryLimit, o.GcHeapMinimum, o.GcHeapLive, o.GcHeapMarked, o.GcPercentHeapGoal, o.GcLastHeapGoal, o.GcTotalAlloc) + 8
	gcb := make([]byte, gcHi)
	u64 := func(b []byte, off uint16) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
	for try := 0; ; try++ {
		if err := m.read(msb, ms+uint64(lo)); err != nil {
			return nil, fmt.Errorf("reading runtime.memstats: %w", err)
		}
		if err := m.read(gcb, gc); err != nil {
			return nil, fmt.Errorf("reading runtime.gcController: %w", err)
		}
		numgc, err := m.u32(ms + uint64(o.MsNumgc))
		if err != nil {
			return nil, fmt.Errorf("reading runtime.memstats: %w", err)
		}
		if numgc != binary.LittleEndian.Uint32(msb[o.MsNumgc-lo:]) && try < 2 {
			continue // a cycle ended meanwhile
		}
		s := &GCStats{
			NumGC:        binary.LittleEndian.Uint32(msb[o.MsNumgc-lo:]),
			NumForcedGC:  binary.LittleEndian.Uint32(msb[o.MsNumforcedgc-lo:]),
			PauseTotalNs: u64(msb, o.MsPauseTotalNs-lo),
			LastGCUnixNs: u64(msb, o.MsLastGCUnix-lo),
			GOGC:         int32(binary.LittleEndian.Uint32(gcb)),
			MemoryLimit:  int64(u64(gcb, o.GcMemoryLimit)),
			HeapLive:     u64(gcb, o.GcHeapLive),
			HeapMarked:   u64(gcb, o.GcHeapMarked),
			HeapGoal:     u64(gcb, o.GcPercentHeapGoal),
			LastHeapGoal: u64(gcb, o.GcLastHeapGoal),
			HeapMinimum:  u64(gcb, o.GcHeapMinimum),
		}
		if o.GcTotalAlloc != 0 {
			s.TotalAlloc = u64(gcb, o.GcTotalAlloc)
		}
		p.cycleHeap(m, s)
		// The runtime writes cycle n's pause at pause_ns[n%len] and then
		// counts it: the newest is at numgc-1.
		n := uint32(o.MsPauseLen)
		for i := uint32(0); i < min(s.NumGC, n); i++ {
			at := uint16((s.NumGC - 1 - i) % n)
			s.Pauses = append(s.Pauses, GCPause{Ns: u64(msb, o.MsPauseNs-lo+8*at), EndUnixNs: u64(msb, o.MsPauseEnd-lo+8*at)})
		}
		return s, nil
	}
}

// cycleHeap fills s's Heap0, Heap1 and Heap2 from runtime.work when its
// layout and address are known and it holds the cycle s.NumGC ended:
// work.cycles (cycles started) equal to numgc, read before and after.
func (p *Process) cycleHeap(m memReader, s *GCStats) {
	o := p.Bin.Offsets
	if o.WorkCycles == 0 || o.WorkHeap0 == 0 || o.WorkHeap1 == 0 || o.WorkHeap2 == 0 {
		return
	}
	w, err := p.global("runtime.work")
	if err != nil {
		return
	}
	before, err := m.u32(w + uint64(o.WorkCycles))
	if err != nil || before != s.NumGC {
		return
	}
	var b [24]byte
	for i, off := range []uint16{o.WorkHeap0, o.WorkHeap1, o.WorkHeap2} {
		if err := m.read(b[8*i:8*i+8], w+uint64(off)); err != nil {
			return
		}
	}
	if after, err := m.u32(w + uint64(o.WorkCycles)); err != nil || after != before {
		return
	}
	s.Heap0, s.Heap1, s.Heap2 = binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
	s.HasCycleHeap = true
}
