package pprof

import (
	"math"
	"strings"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// Heap builds the heap profile h as runtime/pprof.WriteHeapProfile
// writes it (runtime/pprof/protomem.go): sample types alloc_objects,
// alloc_space, inuse_objects, inuse_space, each bucket scaled up by the
// chance that the sampling saw it at all (scaleHeapSample, with the
// target's MemProfileRate), a "bytes" label with the object size, and the
// runtime's own frames above the allocating call left out unless the
// stack has nothing else. defaultType names the sample type pprof shows
// first ("": pprof's default, inuse_space).
func Heap(proc *goruntime.Process, h *goruntime.HeapProfile, defaultType string) (*profile.Profile, error) {
	b := NewBuilder(proc, []*profile.ValueType{
		{Type: "alloc_objects", Unit: "count"},
		{Type: "alloc_space", Unit: "bytes"},
		{Type: "inuse_objects", Unit: "count"},
		{Type: "inuse_space", Unit: "bytes"},
	}, defaultType)
	b.SetPeriod(&profile.ValueType{Type: "space", Unit: "bytes"}, h.Rate)
	b.CallerPCs = true
	for _, r := range h.Records {
		v := make([]int64, 4)
		v[0], v[1] = scaleHeapSample(r.AllocObjects, r.AllocBytes, h.Rate)
		v[2], v[3] = scaleHeapSample(r.AllocObjects-r.FreeObjects, r.AllocBytes-r.FreeBytes, h.Rate)
		var num map[string][]int64
		if r.ObjectSize != 0 {
			num = map[string][]int64{"bytes": {r.ObjectSize}}
		}
		b.Add(b.physical(dropGoexit(proc, hideRuntime(proc, r.Stack))), v, nil, num)
	}
	return b.Profile()
}

// scaleHeapSample is the runtime's (runtime/pprof/protomem.go): an
// allocation of size S is sampled with probability 1-exp(-S/rate), so
// each bucket's counts are divided by that.
func scaleHeapSample(count, size, rate int64) (int64, int64) {
	if count == 0 || size == 0 {
		return 0, 0
	}
	if rate <= 1 {
		return count, size
	}
	avgSize := float64(size) / float64(count)
	scale := 1 / (1 - math.Exp(-avgSize/float64(rate)))
	return int64(float64(count) * scale), int64(float64(size) * scale)
}

// hideRuntime drops the runtime's frames at the leaf of an allocation's
// stack (mallocgc and what calls it), as writeHeapProto does; the whole
// stack when nothing else is left.
func hideRuntime(proc *goruntime.Process, stk []uint64) []uint64 {
	for i, pc := range stk {
		fr := proc.Syms.Frames(pc, false)
		if len(fr) > 0 && (strings.HasPrefix(fr[0].Func, "runtime.") || strings.HasPrefix(fr[0].Func, "internal/runtime/")) {
			continue
		}
		return stk[i:]
	}
	return stk
}

// dropGoexit drops runtime.goexit, the bottom of every goroutine's stack,
// as the runtime's profiles do.
func dropGoexit(proc *goruntime.Process, stk []uint64) []uint64 {
	if n := len(stk); n > 1 {
		if fr := proc.Syms.Frames(stk[n-1], false); len(fr) > 0 && fr[0].Func == "runtime.goexit" {
			return stk[:n-1]
		}
	}
	return stk
}

// physical turns a stack as runtime.Callers records it, one pc per
// logical frame (an inlined call's pc is its inlining mark in the
// caller), into one pc per physical frame: the first pc of a frame
// already stands for the inlined calls around it (as a location with
// one line per call), so the pcs of its callers up to the physical
// function are dropped, when they are those callers.
func (b *Builder) physical(stk []uint64) []uint64 {
	out := make([]uint64, 0, len(stk))
	for i := 0; i < len(stk); {
		out = append(out, stk[i])
		chain := b.proc.Syms.Frames(stk[i], false)
		j := i + 1
		for k := 1; k < len(chain) && j < len(stk); k, j = k+1, j+1 {
			next := b.proc.Syms.Frames(stk[j], false)
			if len(next) != len(chain)-k || next[0].Func != chain[k].Func {
				break
			}
		}
		i = j
	}
	return out
}
