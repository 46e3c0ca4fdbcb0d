package bpfobj

import (
	"errors"
	"fmt"
	"maps"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Mechanism families for the kernel-function hooks, best first; --hooks
// forces one.
const (
	HooksAuto       = "auto"       // the best family the kernel allows, per hook
	HooksFentry     = "fentry"     // fentry and fexit
	HooksKprobe     = "kprobe"     // kprobe and kretprobe
	HooksTracepoint = "tracepoint" // no kernel-function hook: tracepoints only
)

// CheckHooks refuses a name that is no family.
func CheckHooks(family string) error {
	switch family {
	case HooksAuto, HooksFentry, HooksKprobe, HooksTracepoint:
		return nil
	}
	return fmt.Errorf("unknown hook mechanism %q: use --hooks auto, fentry, kprobe or tracepoint", family)
}

// Probe is one program of a candidate and how it attaches.
type Probe struct {
	Prog   string
	Attach func(*ebpf.Program) (link.Link, error)
}

// Candidate is one way to hook a point: a mechanism of a family, and the
// probes that must all load and attach for it to be used.
type Candidate struct {
	Family    string // HooksFentry or HooksKprobe
	Mechanism string // what the attached event names: "fentry", "fexit", "kretprobe"...
	Probes    []Probe
}

// Tracing attaches an fentry or fexit program.
func Tracing(p *ebpf.Program) (link.Link, error) {
	return link.AttachTracing(link.TracingOptions{Program: p})
}

// Kprobe attaches a kprobe program to fn.
func Kprobe(fn string) func(*ebpf.Program) (link.Link, error) {
	return func(p *ebpf.Program) (link.Link, error) { return link.Kprobe(fn, p, nil) }
}

// Kretprobe attaches a kretprobe program to fn.
func Kretprobe(fn string) func(*ebpf.Program) (link.Link, error) {
	return func(p *ebpf.Program) (link.Link, error) { return link.Kretprobe(fn, p, nil) }
}

// Attached is the candidate in use: its programs, loaded on their own
// beside the object's, and their links.
type Attached struct {
	Mechanism string
	coll      *ebpf.Collection
	links     []link.Link
}

// Close detaches and unloads the candidate.
func (a *Attached) Close() {
	CloseAll(a.links)
	a.coll.Close()
}

// CandidateProgs lists the programs of all candidates, to leave out of the
// object's main load.
func CandidateProgs(cands []Candidate) []string {
	var progs []string
	for _, c := range cands {
		for _, p := range c.Probes {
			progs = append(progs, p.Prog)
		}
	}
	return progs
}

// AttachFirst tries the candidates of family (all of them for HooksAuto),
// in order, and returns the first whose programs the kernel loads and
// attaches. Each is loaded from spec on its own, with the object's maps,
// since a kernel may refuse any of them. It returns nil, nil when none is
// in use and none was required: family is HooksAuto or HooksTracepoint.
// A forced family the kernel refuses is an error, which names each refusal;
// a forced family with no candidate here means the tracepoint fallback.
func AttachFirst(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, cands []Candidate, family string) (*Attached, error) {
	var errs []error
	for _, c := range cands {
		if family != HooksAuto && family != c.Family {
			continue
		}
		a, err := attach(spec, maps, c)
		if err == nil {
			return a, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.Mechanism, err))
	}
	if len(errs) > 0 && family != HooksAuto && family != HooksTracepoint {
		return nil, fmt.Errorf("the kernel refused --hooks=%s (%w); try --hooks=auto", family, errors.Join(errs...))
	}
	return nil, nil
}

func attach(spec *ebpf.CollectionSpec, maps map[string]*ebpf.Map, c Candidate) (*Attached, error) {
	var progs []string
	for _, p := range c.Probes {
		progs = append(progs, p.Prog)
	}
	coll, err := NewCollection(Only(spec, progs...), ebpf.CollectionOptions{MapReplacements: maps})
	if err != nil {
		return nil, LoadError(progs[0], err)
	}
	a := &Attached{Mechanism: c.Mechanism, coll: coll}
	for _, p := range c.Probes {
		l, err := p.Attach(coll.Programs[p.Prog])
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("attaching %s: %w", p.Prog, err)
		}
		a.links = append(a.links, l)
	}
	return a, nil
}

// Only returns a copy of spec with just the programs progs.
func Only(spec *ebpf.CollectionSpec, progs ...string) *ebpf.CollectionSpec {
	keep := make(map[string]bool, len(progs))
	for _, p := range progs {
		keep[p] = true
	}
	out := spec.Copy()
	for name := range out.Programs {
		if !keep[name] {
			delete(out.Programs, name)
		}
	}
	return out
}

// Without returns a copy of spec without the programs progs.
func Without(spec *ebpf.CollectionSpec, progs ...string) *ebpf.CollectionSpec {
	out := spec.Copy()
	for _, p := range progs {
		delete(out.Programs, p)
	}
	return out
}

// NoEvents removes the ring buffer `events` and the counters `lost` that
// bpf/gonetscope.h declares in every object, from spec of an object whose
// programs send no events.
func NoEvents(spec *ebpf.CollectionSpec) {
	delete(spec.Maps, "events")
	delete(spec.Maps, "lost")
}

// SocketCalls is the attached event's hook point for the syscalls the
// objects hook beside kernel functions and socket tracepoints: accept4,
// connect and getsockopt. Its mechanism is HooksFentry; else HooksUprobe
// where uprobes in the target serve (pkg/tracer's socketCalls); else
// HooksTracepoint where their syscall tracepoints are used.
const SocketCalls = "socket_calls"

// HooksUprobe is the SocketCalls mechanism of uprobes in the target.
const HooksUprobe = "uprobe"

// SyscallHook is the entry or exit of a syscall, hooked with fentry or
// fexit on the kernel function the syscall calls where the kernel allows
// it; else, for a Go target that can have them, with a uprobe at the call
// or the return of the syscall package's wrapper; else with the syscall's
// tracepoint. A syscall tracepoint puts every thread on the host on the
// slow syscall entry (TIF_SYSCALL_TRACEPOINT) while it is attached; fentry
// and uprobes cost only the hooked calls.
type SyscallHook struct {
	Tracing    string    // the fentry or fexit program
	Uprobe     string    // the uprobe program; "" if the hook needs none
	At         CallPoint // where Uprobe goes
	Tracepoint string    // the tracepoint program, the last resort
}

// CallPoint is where a SyscallHook's uprobe goes: the calls, or the
// returns, of a syscall package wrapper (goruntime.SocketSyscallSites).
type CallPoint struct {
	Syscall string // goruntime.Accept4, Connect or Getsockopt
	Return  bool
}

// CallUprobe is a loaded uprobe program and where it goes.
type CallUprobe struct {
	At   CallPoint
	Prog *ebpf.Program
}

// CallUprobes are the uprobe programs of hooks in coll.
func CallUprobes(coll *ebpf.Collection, hooks []SyscallHook) []CallUprobe {
	var out []CallUprobe
	for _, h := range hooks {
		if h.Uprobe != "" {
			out = append(out, CallUprobe{At: h.At, Prog: coll.Programs[h.Uprobe]})
		}
	}
	return out
}

// SyscallsFentry is the one candidate for a set of syscall hooks: their
// fentry and fexit programs, all or none.
func SyscallsFentry(hooks []SyscallHook) []Candidate {
	c := Candidate{Family: HooksFentry, Mechanism: HooksFentry}
	for _, h := range hooks {
		c.Probes = append(c.Probes, Probe{Prog: h.Tracing, Attach: Tracing})
	}
	return []Candidate{c}
}

// SyscallTracepoints are the fallback programs of hooks.
func SyscallTracepoints(hooks []SyscallHook) map[string]bool {
	out := map[string]bool{}
	for _, h := range hooks {
		out[h.Tracepoint] = true
	}
	return out
}

// AttachTracepointsAndSyscalls attaches the tracepoint programs of coll
// (loaded from base, which lacks the fentry programs of hooks) and hooks:
// with fentry, loaded from spec, where family allows it and the kernel
// takes them all, else with their syscall tracepoints. calls owns the
// fentry programs, nil where the tracepoints serve; syscalls then holds
// those tracepoints, attached only while something is traced
// (SyscallLinks.Trace), nil where fentry serves.
func AttachTracepointsAndSyscalls(spec, base *ebpf.CollectionSpec, coll *ebpf.Collection, hooks []SyscallHook, family string) (calls *Attached, links []link.Link, syscalls *SyscallLinks, err error) {
	if calls, err = AttachFirst(spec, coll.Maps, SyscallsFentry(hooks), family); err != nil {
		return nil, nil, nil, fmt.Errorf("hook %s: %w", SocketCalls, err)
	}
	fallback := SyscallTracepoints(hooks)
	progs := maps.Clone(coll.Programs)
	maps.DeleteFunc(progs, func(name string, _ *ebpf.Program) bool { return fallback[name] })
	if links, err = AttachTracepoints(base, progs); err != nil {
		if calls != nil {
			calls.Close()
		}
		return nil, nil, nil, err
	}
	if calls == nil {
		syscalls = &SyscallLinks{spec: base, progs: maps.Clone(coll.Programs)}
		maps.DeleteFunc(syscalls.progs, func(name string, _ *ebpf.Program) bool { return !fallback[name] })
	}
	return calls, links, syscalls, nil
}

// SyscallLinks are syscall tracepoints that serve where fentry does not.
// Each puts every thread on the host on the slow syscall entry while it
// is attached, so they are attached only while something is traced.
type SyscallLinks struct {
	spec  *ebpf.CollectionSpec
	progs map[string]*ebpf.Program
	links []link.Link
}

// Trace attaches them when on and they are not, and detaches them when
// not on. A nil SyscallLinks (fentry serves) does nothing.
func (s *SyscallLinks) Trace(on bool) error {
	switch {
	case s == nil:
	case on && s.links == nil:
		links, err := AttachTracepoints(s.spec, s.progs)
		if err != nil {
			return err
		}
		s.links = links
	case !on:
		CloseAll(s.links)
		s.links = nil
	}
	return nil
}

// Close detaches them.
func (s *SyscallLinks) Close() { s.Trace(false) }

// CallsMechanism names how calls hooks the syscalls
// (AttachTracepointsAndSyscalls): where fentry does not serve, the syscall
// tracepoints, unless pkg/tracer puts uprobes in the targets instead.
func CallsMechanism(calls *Attached) string {
	if calls == nil {
		return HooksTracepoint
	}
	return calls.Mechanism
}
