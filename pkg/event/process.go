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
	// Unknown maps a fact that could not be read ("open_fds",
	// "tcp_states", "gomaxprocs", "cpu_quota") to the reason.
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
	if len(p.Unknown) > 0 {
		e.Dict("unknown", dictOf(p.Unknown))
	}
}
