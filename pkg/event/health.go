package event

import (
	"maps"
	"slices"

	"github.com/rs/zerolog"
)

// GC: garbage-collection cycles that ended since the previous gc event of
// the process (or since the attach), read from the runtime's own records
// (runtime.memstats, runtime.gcController, runtime.work) with no probe.
type GC struct {
	Header
	// NumGC and PauseTotalNs are the runtime's cumulative counters
	// (MemStats.NumGC, PauseTotalNs) at the read; NumForcedGC those
	// forced by runtime.GC().
	NumGC, NumForcedGC uint32
	PauseTotalNs       uint64
	// Cycles is how many cycles ended since the previous event; PausesNs
	// their stop-the-world pauses, oldest first, from the runtime's ring
	// of 256 (MemStats.PauseNs). PausesMissed counts the cycles whose
	// pause had left the ring before it was read (more than 256 since the
	// previous event): PauseTotalNs still counts them.
	Cycles       uint32
	PausesNs     []uint64
	PausesMissed uint32
	// The last cycle's heap at its start and marked live (gctrace's
	// heap0 and heap2), when no cycle had started since: HasCycleHeap.
	HeapBefore, HeapAfter uint64
	HasCycleHeap          bool
	// HeapLive is the pacer's heap now, HeapGoal the goal GOGC sets for
	// the next cycle.
	HeapLive, HeapGoal uint64
	GOGC               int32
	MemoryLimit        int64
	// TotalAlloc is bytes allocated since the program started (0: not
	// known); AllocBytesPerSec its rate since the previous event.
	TotalAlloc       uint64
	AllocBytesPerSec float64
	IntervalNs       uint64
}

func (g *GC) MarshalZerologObject(e *zerolog.Event) {
	g.marshal(e)
	ps := zerolog.Arr()
	for _, p := range g.PausesNs {
		ps.Uint64(p)
	}
	e.Uint32("num_gc", g.NumGC).Uint32("num_forced_gc", g.NumForcedGC).Uint64("pause_total_ns", g.PauseTotalNs).
		Uint32("cycles", g.Cycles).Array("pauses_ns", ps)
	if g.PausesMissed > 0 {
		e.Uint32("pauses_missed", g.PausesMissed)
	}
	if g.HasCycleHeap {
		e.Uint64("heap_before", g.HeapBefore).Uint64("heap_after", g.HeapAfter)
	}
	e.Uint64("heap_live", g.HeapLive).Uint64("heap_goal", g.HeapGoal).Int32("gogc", g.GOGC).Int64("memory_limit", g.MemoryLimit)
	if g.TotalAlloc > 0 {
		e.Uint64("total_alloc", g.TotalAlloc).Float64("alloc_bytes_per_sec", g.AllocBytesPerSec)
	}
	e.Uint64("interval_ns", g.IntervalNs)
}

// FDs are a process's file descriptors against its limit, and its TCP
// sockets by state, read from /proc.
type FDs struct {
	Open  int
	Limit uint64 // soft RLIMIT_NOFILE; 0: unlimited
	// TCPStates counts its TCP sockets by state ("ESTABLISHED", …).
	TCPStates map[string]int
}

func (f FDs) MarshalZerologObject(e *zerolog.Event) {
	e.Int("open", f.Open).Uint64("limit", f.Limit)
	st := zerolog.Dict()
	for _, k := range slices.Sorted(maps.Keys(f.TCPStates)) {
		st.Int(k, f.TCPStates[k])
	}
	e.Dict("tcp_states", st)
}

// FDPressure: the process's open fds went over the threshold (85%) of
// its RLIMIT_NOFILE. Written once per crossing: again only after usage
// fell below it.
type FDPressure struct {
	Header
	FDs
	Ratio     float64
	Threshold float64
}

func (p *FDPressure) MarshalZerologObject(e *zerolog.Event) {
	p.marshal(e)
	p.FDs.MarshalZerologObject(e)
	e.Float64("ratio", p.Ratio).Float64("threshold", p.Threshold)
}

// NoDeadline: a goroutine has been parked on a socket read or write
// longer than --no-deadline-after, and the socket has no deadline for
// that direction (pollDesc.rd or wd is 0): nothing will wake it if the
// peer never answers. Written once per goroutine, fd and mode. Goid and
// Stack are in the Header.
type NoDeadline struct {
	Header
	FD   int32
	Mode string // "read" or "write"
	Addrs
	// ParkedNs is how long it has been parked at least: since the first
	// scan that saw it parked there, or since the runtime's own
	// g.waitsince when that is earlier.
	ParkedNs uint64
	// Status is what the runtime says it is doing ("waiting: IO wait").
	Status    string
	CreatedAt string // file:line of the go statement that started it
	CreatedBy string
	Func      string // what it was started to run
}

func (n *NoDeadline) MarshalZerologObject(e *zerolog.Event) {
	n.Header.marshal(e)
	e.Int32("fd", n.FD).Str("mode", n.Mode)
	n.Addrs.marshal(e)
	e.Uint64("parked_ns", n.ParkedNs).Str("go_status", n.Status).Str("func", n.Func).
		Str("created_at", n.CreatedAt).Str("created_by", n.CreatedBy)
}
