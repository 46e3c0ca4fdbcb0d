package diagnose

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/pprof"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// maxCloseWait bounds the CLOSE_WAIT sockets a process event lists.
const maxCloseWait = 20

// Snapshot reads the facts of a live process that no hook reports, for
// the process event that diagnose records into the stream: its fds and
// limit, its TCP sockets by state, its GOMAXPROCS, its CPU quota and the
// CPU time it has used. What cannot be read is left out and Unknown says
// why. All /proc access goes through pkg/proc, the runtime's memory
// through pkg/goruntime.
func Snapshot(p proc.Process, nsPID int) *event.Process {
	ev := &event.Process{Header: snapshotHeader("process", p, nsPID), Unknown: map[string]string{}}
	pid := p.PID
	if n, err := proc.OpenFDs(pid); err != nil {
		ev.Unknown["open_fds"] = err.Error()
	} else if lim, err := proc.FDLimit(pid); err != nil {
		ev.Unknown["open_fds"] = err.Error()
	} else {
		ev.OpenFDs, ev.FDLimit = n, lim
		if lim == ^uint64(0) {
			ev.FDLimit = 0
		}
	}
	if socks, err := proc.TCPSockets(pid); err != nil {
		ev.Unknown["tcp_states"] = err.Error()
	} else {
		ev.TCPStates = map[string]int{}
		for _, s := range socks {
			ev.TCPStates[s.State]++
			if s.State == "CLOSE_WAIT" && len(ev.CloseWait) < maxCloseWait {
				ev.CloseWait = append(ev.CloseWait, event.Socket{FD: s.FD, Addrs: event.Addrs{
					Local: s.Local, LocalPort: s.LocalPort, Remote: s.Remote, RemotePort: s.RemotePort}})
			}
		}
	}
	if n, err := goruntime.GOMAXPROCS(pid); err != nil {
		if errors.Is(err, goruntime.ErrNoSymbols) {
			ev.Unknown["gomaxprocs"] = "the binary is stripped: runtime.gomaxprocs cannot be found without its symbol table"
		} else {
			ev.Unknown["gomaxprocs"] = err.Error()
		}
	} else {
		ev.GOMAXPROCS, ev.HasGOMAXPROCS = n, true
	}
	if cpus, from, limited, err := proc.CPUQuota(pid); err != nil {
		ev.Unknown["cpu_quota"] = err.Error()
	} else if limited {
		ev.CPUQuota, ev.CPUQuotaFrom, ev.HasCPUQuota = cpus, from, true
	}
	if cpu, err := proc.CPUTime(pid); err != nil {
		ev.Unknown["cpu_ns"] = err.Error()
	} else {
		ev.CPUNs, ev.HasCPU = uint64(cpu), true
	}
	if len(ev.Unknown) == 0 {
		ev.Unknown = nil
	}
	return ev
}

// snapshotHeader is the header of a snapshot event of p (name), with its
// PID in its own namespace when that differs.
func snapshotHeader(name string, p proc.Process, nsPID int) event.Header {
	h := event.Header{Time: time.Now(), Event: name, PID: uint32(p.PID), TID: uint32(p.PID), Comm: p.Comm}
	if nsPID != 0 && nsPID != p.PID {
		h.NsPID = uint32(nsPID)
	}
	return h
}

// site is a profile's sample site: a function, its file and a line.
type site struct {
	fn, file string
	line     int64
}

// lineSite is the site of one of a location's lines.
func lineSite(l profile.Line) site { return site{l.Function.Name, l.Function.Filename, l.Line} }

// leafSite is the site of a sample's innermost frame: its first
// location's first line, or the location's address when it has no
// symbol, or "?" when the sample has no location.
func leafSite(smp *profile.Sample) site {
	if len(smp.Location) == 0 {
		return site{fn: "?"}
	}
	loc := smp.Location[0]
	if len(loc.Line) == 0 || loc.Line[0].Function == nil {
		return site{fn: fmt.Sprintf("%#x", loc.Address)}
	}
	return lineSite(loc.Line[0])
}

// topSites are the n values of m that order sorts first.
func topSites[T any](m map[site]*T, n int, order func(a, b *T) int) []T {
	all := make([]*T, 0, len(m))
	for _, v := range m {
		all = append(all, v)
	}
	slices.SortFunc(all, order)
	out := make([]T, 0, min(n, len(all)))
	for _, v := range all[:min(n, len(all))] {
		out = append(out, *v)
	}
	return out
}

// profileSites is how many sites a heap_profile or contention_profile
// event lists.
const profileSites = 10

// HeapSnapshot reads the runtime's heap profile from rt's memory (no
// probe) for the heap_profile event: its totals, and the profileSites
// allocation sites with the most bytes in use. A site is the first frame
// below the allocator, as in the heap profile pprof shows (the runtime's
// own frames at the leaf hidden), and its counts are scaled as pprof
// scales them, so they match the target's own runtime/pprof heap profile.
// What cannot be read is said in the event's Unreadable; the profile (for
// --out's heap.pb.gz) is nil then.
func HeapSnapshot(p proc.Process, rt *goruntime.Process, nsPID int) (*event.HeapProfile, *profile.Profile) {
	ev := &event.HeapProfile{Header: snapshotHeader("heap_profile", p, nsPID)}
	h, err := rt.HeapProfile()
	if err != nil {
		ev.Unreadable = err.Error()
		return ev, nil
	}
	prof, err := pprof.Heap(rt, h, "")
	if err != nil {
		ev.Unreadable = err.Error()
		return ev, nil
	}
	ev.MemProfileRate = h.Rate
	sites := map[site]*event.HeapSite{}
	for _, smp := range prof.Sample {
		// alloc_objects, alloc_space, inuse_objects, inuse_space
		v := smp.Value
		ev.AllocObjects += v[0]
		ev.AllocBytes += v[1]
		ev.InuseObjects += v[2]
		ev.InuseBytes += v[3]
		k := leafSite(smp)
		st := sites[k]
		if st == nil {
			st = &event.HeapSite{Func: k.fn, File: k.file, Line: k.line}
			sites[k] = st
		}
		st.AllocObjects += v[0]
		st.AllocBytes += v[1]
		st.InuseObjects += v[2]
		st.InuseBytes += v[3]
	}
	ev.Sites = topSites(sites, profileSites, func(a, b *event.HeapSite) int {
		return cmp.Or(cmp.Compare(b.InuseBytes, a.InuseBytes), cmp.Compare(b.AllocBytes, a.AllocBytes),
			cmp.Compare(a.Func, b.Func), cmp.Compare(a.Line, b.Line))
	})
	return ev, prof
}

// contentionPlumbing are the packages a contention site is below: the
// first frame outside them is the code that held or waited.
var contentionPlumbing = []string{"runtime.", "sync.", "internal/sync."}

// ContentionSnapshot reads the runtime's mutex or block profile (kind)
// from rt's memory for the contention_profile event: totals, and the
// profileSites sites with the most delay, as runtime/pprof's profile of that
// kind gives them. What cannot be read, including a program that records
// no such profile, is said in the event's Unreadable.
func ContentionSnapshot(p proc.Process, rt *goruntime.Process, nsPID int, kind string) *event.ContentionProfile {
	ev := &event.ContentionProfile{Header: snapshotHeader("contention_profile", p, nsPID), Kind: kind}
	c, err := rt.ContentionProfile(kind)
	if err != nil {
		ev.Unreadable = err.Error()
		return ev
	}
	prof, err := pprof.Contention(rt, c)
	if err != nil {
		ev.Unreadable = err.Error()
		return ev
	}
	ev.Rate = c.Rate
	sites := map[site]*event.ContentionSite{}
	for _, smp := range prof.Sample {
		// contentions, delay
		ev.Contentions += smp.Value[0]
		ev.DelayNs += smp.Value[1]
		k := site{fn: "?"}
	frames:
		for _, loc := range smp.Location {
			for _, l := range loc.Line {
				if l.Function != nil && !slices.ContainsFunc(contentionPlumbing, func(p string) bool { return strings.HasPrefix(l.Function.Name, p) }) {
					k = lineSite(l)
					break frames
				}
			}
		}
		st := sites[k]
		if st == nil {
			st = &event.ContentionSite{Func: k.fn, File: k.file, Line: k.line}
			sites[k] = st
		}
		st.Contentions += smp.Value[0]
		st.DelayNs += smp.Value[1]
	}
	ev.Sites = topSites(sites, profileSites, func(a, b *event.ContentionSite) int {
		return cmp.Or(cmp.Compare(b.DelayNs, a.DelayNs), cmp.Compare(a.Func, b.Func), cmp.Compare(a.Line, b.Line))
	})
	return ev
}

// CPUSnapshot folds prof, a CPU profile of p taken at freqHz with lost
// samples lost (or err, why none could be taken), into the cpu_profile
// event: the profileSites functions with the most samples, by the
// innermost frame of each sample.
func CPUSnapshot(p proc.Process, nsPID int, freqHz uint64, prof *profile.Profile, lost uint64, err error) *event.CPUProfile {
	ev := &event.CPUProfile{Header: snapshotHeader("cpu_profile", p, nsPID), FrequencyHz: freqHz, Lost: lost}
	if err != nil {
		ev.Unreadable = err.Error()
		return ev
	}
	funcs := map[site]uint64{}
	for _, smp := range prof.Sample {
		n := uint64(smp.Value[0]) // samples
		ev.Samples += n
		k := leafSite(smp)
		k.line = 0 // by function
		funcs[k] += n
	}
	for k, n := range funcs {
		ev.Funcs = append(ev.Funcs, event.CPUFunc{Func: k.fn, File: k.file, Samples: n})
	}
	slices.SortFunc(ev.Funcs, func(a, b event.CPUFunc) int {
		return cmp.Or(cmp.Compare(b.Samples, a.Samples), cmp.Compare(a.Func, b.Func))
	})
	ev.Funcs = ev.Funcs[:min(profileSites, len(ev.Funcs))]
	return ev
}
