package goruntime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"go/version"
	"os"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// HeapRecord is one bucket of the runtime's heap profile: the allocations
// sampled at one call stack, of one object size, as the runtime publishes
// them (runtime.MemProfile).
type HeapRecord struct {
	// Bucket is the bucket's address: buckets are never freed or moved,
	// so it names the same bucket in two reads.
	Bucket     uint64
	ObjectSize int64
	// Sampled objects and bytes allocated and freed, cumulative since
	// the program started, up to the last published GC cycle.
	AllocObjects, FreeObjects int64
	AllocBytes, FreeBytes     int64
	// Stack is as the runtime recorded it with runtime.Callers: return
	// addresses (run-time), leaf first, one per logical frame (an inlined
	// call has a pc of its own, in its caller's code).
	Stack []uint64
}

// HeapProfile is the runtime's heap profile, read from its memory.
type HeapProfile struct {
	// Rate is runtime.MemProfileRate: on average one allocation is
	// sampled per Rate bytes.
	Rate int64
	// Cycle is the runtime's heap profile cycle (mProfCycle): it moves
	// on at the end of each GC's mark phase.
	Cycle   uint32
	Records []HeapRecord
}

// ErrMemProfileOff means the target samples no allocation.
var ErrMemProfileOff = errors.New("runtime.MemProfileRate is 0: the program records no heap profile (it set runtime.MemProfileRate = 0, or it does not link runtime.MemProfile, so the linker turned heap sampling off)")

// Bounds against garbage read as a bucket list.
const (
	maxBuckets = 1 << 22
	maxStack   = 1 << 12
)

// HeapProfile reads the runtime's heap profile buckets (runtime.mbuckets)
// and returns what runtime.MemProfile would return at this moment: for
// each bucket its published counts (memRecord.active) plus the cycle
// that is published but maybe not yet flushed into them
// (future[cycle%3]); and if no bucket has anything published yet (no GC
// has ended), every cycle, as the runtime does. If a GC cycle ends while
// it reads, it reads again.
func (p *Process) HeapProfile() (*HeapProfile, error) {
	o := p.Bin.Offsets
	if version.Compare(version.Lang(p.Bin.GoVersion), "go1.20") < 0 {
		return nil, fmt.Errorf("%s: the heap profile is read from Go 1.20 on", p.Bin.GoVersion)
	}
	if o.BucketHdr == 0 || o.BucketAllnext == 0 || o.BucketObjSize == 0 || o.BucketNstk == 0 ||
		o.MemRecFuture == 0 || o.MemCycleSize == 0 || o.MemCycleFrees == 0 {
		return nil, fmt.Errorf("the layout of the heap profile buckets of %s is not known (runtime.bucket, memRecord)", p.Bin.GoVersion)
	}
	var addrs [3]uint64
	for i, name := range []string{"runtime.MemProfileRate", "runtime.mProfCycle", "runtime.mbuckets"} {
		a, err := p.global(name)
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	m := memReader{mem}
	rate, err := m.u64(addrs[0])
	if err != nil {
		return nil, fmt.Errorf("reading runtime.MemProfileRate: %w", err)
	}
	if rate == 0 {
		return nil, ErrMemProfileOff
	}
	for try := 0; ; try++ {
		cycle, err := m.u32(addrs[1])
		if err != nil {
			return nil, fmt.Errorf("reading runtime.mProfCycle: %w", err)
		}
		recs, err := p.readBuckets(m, addrs[2], cycle>>1)
		if err != nil {
			return nil, err
		}
		again, err := m.u32(addrs[1])
		if err != nil {
			return nil, err
		}
		if again>>1 == cycle>>1 || try == 2 {
			return &HeapProfile{Rate: int64(rate), Cycle: cycle >> 1, Records: recs}, nil
		}
	}
}

// memCycle is a runtime.memRecordCycle.
type memCycle struct{ allocs, frees, allocBytes, freeBytes int64 }

func (a *memCycle) add(b memCycle) {
	a.allocs += b.allocs
	a.frees += b.frees
	a.allocBytes += b.allocBytes
	a.freeBytes += b.freeBytes
}

func (c memCycle) zero() bool { return c == memCycle{} }

// walkBuckets walks a runtime profile bucket list (runtime.mbuckets,
// bbuckets, xbuckets) from its first bucket b along the headers' allnext
// links, and calls visit with each bucket's address, header, stack and
// the recLen bytes of record after the stack. hdr is reused: visit reads
// it, it does not keep it. list and kind name the list and its profile
// in errors.
func (p *Process) walkBuckets(m memReader, b uint64, list, kind string, recLen uint64, visit func(b uint64, hdr []byte, stack []uint64, rec []byte)) error {
	o := p.Bin.Offsets
	hdr := make([]byte, o.BucketHdr)
	for n := 0; b != 0; b, n = binary.LittleEndian.Uint64(hdr[o.BucketAllnext:]), n+1 {
		if n == maxBuckets {
			return fmt.Errorf("%s has more than %d buckets: not a bucket list", list, maxBuckets)
		}
		if err := m.read(hdr, b); err != nil {
			return fmt.Errorf("reading %s profile bucket %#x: %w", kind, b, err)
		}
		nstk := binary.LittleEndian.Uint64(hdr[o.BucketNstk:])
		if nstk > maxStack {
			return fmt.Errorf("%s profile bucket %#x has %d pcs: not a bucket", kind, b, nstk)
		}
		body := make([]byte, 8*nstk+recLen)
		if err := m.read(body, b+uint64(o.BucketHdr)); err != nil {
			return fmt.Errorf("reading %s profile bucket %#x: %w", kind, b, err)
		}
		var stack []uint64
		for i := range nstk {
			stack = append(stack, binary.LittleEndian.Uint64(body[8*i:]))
		}
		visit(b, hdr, stack, body[8*nstk:])
	}
	return nil
}

func (p *Process) readBuckets(m memReader, head uint64, cycle uint32) ([]HeapRecord, error) {
	o := p.Bin.Offsets
	b, err := m.u64(head)
	if err != nil {
		return nil, fmt.Errorf("reading runtime.mbuckets: %w", err)
	}
	type bucket struct {
		rec    HeapRecord
		active memCycle
		future [3]memCycle
	}
	var buckets []bucket
	recLen := uint64(o.MemRecFuture) + 3*uint64(o.MemCycleSize)
	err = p.walkBuckets(m, b, "runtime.mbuckets", "heap", recLen, func(b uint64, hdr []byte, stack []uint64, rec []byte) {
		bk := bucket{rec: HeapRecord{Bucket: b, ObjectSize: int64(binary.LittleEndian.Uint64(hdr[o.BucketObjSize:])), Stack: stack}}
		bk.active = p.memCycle(rec, bk.rec.ObjectSize)
		for c := range 3 {
			bk.future[c] = p.memCycle(rec[int(o.MemRecFuture)+c*int(o.MemCycleSize):], bk.rec.ObjectSize)
		}
		buckets = append(buckets, bk)
	})
	if err != nil {
		return nil, err
	}
	// As runtime.memProfileInternal: flush the published cycle; if
	// nothing is published at all, take every cycle.
	clear := true
	for i := range buckets {
		buckets[i].active.add(buckets[i].future[cycle%3])
		clear = clear && buckets[i].active.zero()
	}
	out := make([]HeapRecord, 0, len(buckets))
	for _, bk := range buckets {
		a := bk.active
		if clear {
			for c := range 3 {
				if c != int(cycle%3) {
					a.add(bk.future[c])
				}
			}
		}
		bk.rec.AllocObjects, bk.rec.FreeObjects, bk.rec.AllocBytes, bk.rec.FreeBytes = a.allocs, a.frees, a.allocBytes, a.freeBytes
		out = append(out, bk.rec)
	}
	return out, nil
}

// memCycle decodes a memRecordCycle; without byte counts (Go 1.27) the
// bytes are the objects times the bucket's object size, as
// runtime.MemProfile computes them.
func (p *Process) memCycle(b []byte, size int64) memCycle {
	o := p.Bin.Offsets
	c := memCycle{allocs: int64(binary.LittleEndian.Uint64(b)), frees: int64(binary.LittleEndian.Uint64(b[o.MemCycleFrees:]))}
	if o.MemCycleAllocBytes != 0 && o.MemCycleFreeBytes != 0 {
		c.allocBytes = int64(binary.LittleEndian.Uint64(b[o.MemCycleAllocBytes:]))
		c.freeBytes = int64(binary.LittleEndian.Uint64(b[o.MemCycleFreeBytes:]))
	} else {
		c.allocBytes, c.freeBytes = c.allocs*size, c.frees*size
	}
	return c
}

// memReader reads the target's memory.
type memReader struct{ f *os.File }

func (m memReader) read(b []byte, addr uint64) error {
	_, err := m.f.ReadAt(b, int64(addr))
	return err
}

func (m memReader) u64(addr uint64) (uint64, error) {
	var b [8]byte
	err := m.read(b[:], addr)
	return binary.LittleEndian.Uint64(b[:]), err
}

func (m memReader) u32(addr uint64) (uint32, error) {
	var b [4]byte
	err := m.read(b[:], addr)
	return binary.LittleEndian.Uint32(b[:]), err
}

// Sub returns what h allocated since an earlier read, before, of the same
// process: alloc counts are the differences per bucket (buckets new since
// then count whole), in-use counts are h's.
func (h *HeapProfile) Sub(before *HeapProfile) *HeapProfile {
	old := map[uint64]HeapRecord{}
	for _, r := range before.Records {
		old[r.Bucket] = r
	}
	out := &HeapProfile{Rate: h.Rate, Cycle: h.Cycle}
	for _, r := range h.Records {
		if b, ok := old[r.Bucket]; ok {
			// In use stays as now: objects live now, whenever allocated.
			inuseObj, inuseBytes := r.AllocObjects-r.FreeObjects, r.AllocBytes-r.FreeBytes
			r.AllocObjects -= b.AllocObjects
			r.AllocBytes -= b.AllocBytes
			r.FreeObjects, r.FreeBytes = r.AllocObjects-inuseObj, r.AllocBytes-inuseBytes
		}
		out.Records = append(out.Records, r)
	}
	return out
}
