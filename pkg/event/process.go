package event

import (
	"maps"
	"slices"

	"github.com/rs/zerolog"
)

// Process is a snapshot of facts about a traced process that no hook
// reports, read from /proc, the cgroup file system and the target's
// memory: its fds against its limit, its TCP sockets by state, its
// GOMAXPROCS and its cgroup's CPU quota. `gonetscope diagnose` writes
// one when it attaches, every few seconds, and before it detaches, so
// that `gonetscope report` reaches the same verdicts from the stream
// alone. A fact that could not be read is absent, and Unknown says why.
type Process struct {
	Header
	// OpenFDs and FDLimit (the soft RLIMIT_NOFILE; 0: unlimited).
	OpenFDs int
	FDLimit uint64
	// TCPStates counts the process's TCP sockets by state, such as
	// "ESTABLISHED": 12 (the kernel's names, as ss prints them).
	TCPStates map[string]int
	// CloseWait lists up to 20 of its sockets in CLOSE_WAIT: the peer
	// closed the connection and the process has not.
	CloseWait []Socket
	// GOMAXPROCS is the runtime's gomaxprocs variable, when HasGOMAXPROCS.
	GOMAXPROCS    int
	HasGOMAXPROCS bool
	// CPUQuota is the CPU bandwidth limit of the process's cgroup and its
	// ancestors, in CPUs (quota / period, the smallest on the path); 0
	// when there is none. CPUQuotaFrom names the file it came from.
	CPUQuota     float64
	CPUQuotaFrom string
	HasCPUQuota  bool
	// CPUNs is the CPU time its threads have used since it started, user
	// and system (/proc/PID/stat, 10 ms resolution), when HasCPU.
	CPUNs  uint64
	HasCPU bool
	// Unknown maps a fact that could not be read ("open_fds",
	// "tcp_states", "gomaxprocs", "cpu_quota", "cpu_ns") to the reason.
	Unknown map[string]string
}

// Socket is one TCP socket of a process.
type Socket struct {
	FD    int32
	Addrs Addrs
}

func (p *Process) MarshalZerologObject(e *zerolog.Event) {
	p.marshal(e)
	if _, ok := p.Unknown["open_fds"]; !ok {
		e.Int("open_fds", p.OpenFDs).Uint64("fd_limit", p.FDLimit)
	}
	if p.TCPStates != nil {
		d := zerolog.Dict()
		for _, k := range slices.Sorted(maps.Keys(p.TCPStates)) {
			d.Int(k, p.TCPStates[k])
		}
		e.Dict("tcp_states", d)
		arr := zerolog.Arr()
		for _, s := range p.CloseWait {
			d := zerolog.Dict().Int32("fd", s.FD)
			s.Addrs.marshal(d)
			arr.Dict(d)
		}
		e.Array("close_wait", arr)
	}
	if p.HasGOMAXPROCS {
		e.Int("gomaxprocs", p.GOMAXPROCS)
	}
	if p.HasCPUQuota {
		e.Float64("cpu_quota", p.CPUQuota).Str("cpu_quota_from", p.CPUQuotaFrom)
	}
	if p.HasCPU {
		e.Uint64("cpu_ns", p.CPUNs)
	}
	if len(p.Unknown) > 0 {
		e.Dict("unknown", dictOf(p.Unknown))
	}
}

// HeapProfile is the runtime's own heap profile (the allocations it
// samples, one per runtime.MemProfileRate bytes on average), read from
// the target's memory with no probe: totals and the allocation sites that
// hold the most bytes in use. `gonetscope diagnose` writes one when it
// attaches and one before it detaches. Counts are scaled up by the chance
// that sampling saw an allocation, as pprof scales them, and are as of
// the last GC cycle the runtime published (in use means marked live).
type HeapProfile struct {
	Header
	MemProfileRate                                     int64
	InuseBytes, InuseObjects, AllocBytes, AllocObjects int64
	// Sites are the top allocation sites by bytes in use, most first.
	Sites []HeapSite
	// Unreadable says why the profile could not be read; the rest is
	// zero then.
	Unreadable string
}

// HeapSite is one allocation site: the function, file and line that
// called into the allocator (the innermost inlined one), with its
// objects and bytes in use now and allocated since the program started.
type HeapSite struct {
	Func                                               string
	File                                               string
	Line                                               int64
	InuseBytes, InuseObjects, AllocBytes, AllocObjects int64
}

func (h *HeapProfile) MarshalZerologObject(e *zerolog.Event) {
	h.marshal(e)
	if h.Unreadable != "" {
		e.Str("unreadable", h.Unreadable)
		return
	}
	e.Int64("mem_profile_rate", h.MemProfileRate).
		Int64("inuse_bytes", h.InuseBytes).Int64("inuse_objects", h.InuseObjects).
		Int64("alloc_bytes", h.AllocBytes).Int64("alloc_objects", h.AllocObjects)
	arr := zerolog.Arr()
	for _, s := range h.Sites {
		arr.Dict(zerolog.Dict().Str("func", s.Func).Str("file", s.File).Int64("line", s.Line).
			Int64("inuse_bytes", s.InuseBytes).Int64("inuse_objects", s.InuseObjects).
			Int64("alloc_bytes", s.AllocBytes).Int64("alloc_objects", s.AllocObjects))
	}
	e.Array("sites", arr)
}

// ContentionProfile is the runtime's own mutex or block profile, read from
// the target's memory with no probe, when the program records it
// (runtime.SetMutexProfileFraction, SetBlockProfileRate): totals and the
// sites with the most delay, cumulative since the program started.
// `gonetscope diagnose` writes one of each kind when it attaches and
// before it detaches. A site is the first frame outside the runtime and
// sync: for the mutex profile the code that unlocked a contended lock
// (the holder others waited for), for the block profile the code that
// waited.
type ContentionProfile struct {
	Header
	Kind                 string // "mutex" or "block"
	Rate                 int64  // the sampling rate; -1: not known
	Contentions, DelayNs int64
	// Sites are the top sites by delay, most first.
	Sites []ContentionSite
	// Unreadable says why the profile could not be read (the program
	// records none, or it cannot be read); the rest is zero then.
	Unreadable string
}

// ContentionSite is one site of a contention profile.
type ContentionSite struct {
	Func                 string
	File                 string
	Line                 int64
	Contentions, DelayNs int64
}

func (c *ContentionProfile) MarshalZerologObject(e *zerolog.Event) {
	c.marshal(e)
	e.Str("kind", c.Kind)
	if c.Unreadable != "" {
		e.Str("unreadable", c.Unreadable)
		return
	}
	e.Int64("rate", c.Rate).Int64("contentions", c.Contentions).Int64("delay_ns", c.DelayNs)
	arr := zerolog.Arr()
	for _, s := range c.Sites {
		arr.Dict(zerolog.Dict().Str("func", s.Func).Str("file", s.File).Int64("line", s.Line).
			Int64("contentions", s.Contentions).Int64("delay_ns", s.DelayNs))
	}
	e.Array("sites", arr)
}

// CPUProfile is where the target's CPU time went while diagnose watched:
// its threads' stacks sampled FrequencyHz times a second per CPU while on
// CPU (perf events, pkg/sampler), folded by the function each sample was
// in. Written by `gonetscope diagnose` once, before it detaches.
type CPUProfile struct {
	Header
	FrequencyHz uint64
	// Samples counts every sample; Lost those the sampler's maps had no
	// room for.
	Samples, Lost uint64
	// Funcs are the functions with the most samples (self: the innermost
	// frame, an inlined one included), most first.
	Funcs []CPUFunc
	// Unreadable says why no profile was taken; the rest is zero then.
	Unreadable string
}

// CPUFunc is one function of a CPU profile and its samples.
type CPUFunc struct {
	Func    string
	File    string
	Samples uint64
}

func (c *CPUProfile) MarshalZerologObject(e *zerolog.Event) {
	c.marshal(e)
	if c.Unreadable != "" {
		e.Str("unreadable", c.Unreadable)
		return
	}
	e.Uint64("frequency_hz", c.FrequencyHz).Uint64("samples", c.Samples).Uint64("lost", c.Lost)
	arr := zerolog.Arr()
	for _, f := range c.Funcs {
		arr.Dict(zerolog.Dict().Str("func", f.Func).Str("file", f.File).Uint64("samples", f.Samples))
	}
	e.Array("funcs", arr)
}
