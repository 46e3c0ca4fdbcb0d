// Package pprof builds pprof profiles of a running Go process from the
// stacks the kernel captured: one mapping per executable mapping (path,
// build id, offsets, so `go tool pprof` can re-symbolize against the
// binary), functions, files and lines from pkg/goruntime/symtab with
// inlined calls as lines of their own, as `trace --stacks` shows them.
//
//	p, _ := goruntime.OpenProcess(pid, nil)
//	b := pprof.NewBuilder(p, types, defaultType)
//	b.Add(stack, values, labels, nil) // stack: leaf first, as the kernel gives it
//	prof, _ := b.Profile()
package pprof

import (
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// Builder collects stacks into a pprof profile.
type Builder struct {
	// Fold, when set, drops the leaf locations whose outermost function
	// it returns true for, up to the first location it keeps (see
	// SyscallPlumbing).
	Fold func(fn string) bool
	// CallerPCs says the leaf pc of a stack is a return address too (or
	// one past the instruction, as the runtime's own profiles record
	// pcs): a goroutine's saved stack rather than a thread interrupted
	// by a sample.
	CallerPCs bool

	proc  *goruntime.Process
	p     *profile.Profile
	maps  map[*goruntime.Mapping]*profile.Mapping
	locs  map[locKey]*profile.Location
	funcs map[funcKey]*profile.Function
}

type funcKey struct{ name, file string }

type locKey struct {
	pc   uint64
	leaf bool
}

// NewBuilder starts a profile with these sample types; defaultType names
// the one pprof shows first.
func NewBuilder(proc *goruntime.Process, types []*profile.ValueType, defaultType string) *Builder {
	p := &profile.Profile{
		SampleType:        types,
		DefaultSampleType: defaultType,
		TimeNanos:         time.Now().UnixNano(),
	}
	b := &Builder{proc: proc, p: p, maps: map[*goruntime.Mapping]*profile.Mapping{},
		locs: map[locKey]*profile.Location{}, funcs: map[funcKey]*profile.Function{}}
	for _, m := range proc.Mappings {
		pm := &profile.Mapping{
			ID: uint64(len(p.Mapping) + 1), Start: m.Start, Limit: m.Limit, Offset: m.Offset,
			File: m.Path, BuildID: m.BuildID,
			HasFunctions: m.Exe, HasFilenames: m.Exe, HasLineNumbers: m.Exe,
		}
		p.Mapping = append(p.Mapping, pm)
		b.maps[m] = pm
	}
	return b
}

// SetDuration and SetPeriod fill the profile's header.
func (b *Builder) SetDuration(d time.Duration) { b.p.DurationNanos = d.Nanoseconds() }

// SetPeriod says what one sample stands for (e.g. 1/99 s of CPU).
func (b *Builder) SetPeriod(t *profile.ValueType, period int64) {
	b.p.PeriodType, b.p.Period = t, period
}

// Add adds one sample. stack is leaf first (as bpf_get_stack gives it);
// values are in the order of the sample types.
func (b *Builder) Add(stack []uint64, values []int64, labels map[string][]string, numLabels map[string][]int64) {
	smp := &profile.Sample{Value: values, Label: labels, NumLabel: numLabels}
	folding := b.Fold != nil
	for i, pc := range stack {
		if pc == 0 {
			break
		}
		l := b.location(pc, i == 0 && !b.CallerPCs)
		if folding && len(l.Line) > 0 && b.Fold(l.Line[len(l.Line)-1].Function.Name) && i < len(stack)-1 {
			continue
		}
		folding = false
		smp.Location = append(smp.Location, l)
	}
	b.p.Sample = append(b.p.Sample, smp)
}

func (b *Builder) location(pc uint64, leaf bool) *profile.Location {
	k := locKey{pc, leaf}
	if l := b.locs[k]; l != nil {
		return l
	}
	l := &profile.Location{ID: uint64(len(b.p.Location) + 1), Address: pc}
	m := b.proc.MappingOf(pc)
	if m != nil {
		l.Mapping = b.maps[m]
	}
	if m != nil && m.Exe {
		// Innermost inlined call first, as pprof wants them.
		for _, fr := range b.proc.Syms.Frames(pc, leaf) {
			l.Line = append(l.Line, profile.Line{Function: b.function(fr), Line: int64(fr.Line)})
		}
	}
	b.p.Location = append(b.p.Location, l)
	b.locs[k] = l
	return l
}

func (b *Builder) function(fr symtab.Frame) *profile.Function {
	key := funcKey{fr.Func, fr.File}
	if f := b.funcs[key]; f != nil {
		return f
	}
	f := &profile.Function{ID: uint64(len(b.p.Function) + 1), Name: fr.Func, SystemName: fr.Func, Filename: fr.File}
	b.p.Function = append(b.p.Function, f)
	b.funcs[key] = f
	return f
}

// SyscallPlumbing is true for the functions between a Go program's call
// on a connection or file and the system call: the runtime, package
// syscall, internal/poll, and the Read/Write/Accept methods of net.netFD,
// net.conn and os.File. Folding them makes the leaf of a network wait the
// call that waited, which is what `go tool pprof -top` should rank.
func SyscallPlumbing(fn string) bool {
	for _, p := range []string{
		"runtime.", "internal/runtime/", "syscall.", "internal/syscall/", "internal/poll.",
		"net.(*netFD).", "net.(*conn).", "net.(*TCPConn).", "net.(*UnixConn).", "net.(*UDPConn).",
		"net.(*TCPListener).", "net.(*UnixListener).", "net.(*sysDialer).", "net.(*Dialer).", "net.sysSocket", "net.socket",
		"net.internetSocket", "os.(*File).",
	} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

// Profile returns the profile, checked for consistency.
func (b *Builder) Profile() (*profile.Profile, error) {
	if err := b.p.CheckValid(); err != nil {
		return nil, err
	}
	return b.p, nil
}
