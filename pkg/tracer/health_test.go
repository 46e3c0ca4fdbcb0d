package tracer

import (
	"slices"
	"testing"
	"time"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// gcEvent lists the cycles between two reads oldest first, from the
// runtime's ring (newest first in GCStats), and counts those that left it.
func TestGCEvent(t *testing.T) {
	tg := &target{}
	ring := func(numgc uint32, n int) *goruntime.GCStats {
		s := &goruntime.GCStats{NumGC: numgc, TotalAlloc: 1000 * uint64(numgc)}
		for i := 0; i < min(int(numgc), n); i++ {
			s.Pauses = append(s.Pauses, goruntime.GCPause{Ns: uint64(numgc) - uint64(i)}) // cycle c's pause is c ns
		}
		return s
	}
	if ev := gcEvent(tg, ring(5, 256), ring(5, 256), time.Second); ev != nil {
		t.Errorf("no cycle ended: %+v", ev)
	}
	ev := gcEvent(tg, ring(5, 256), ring(8, 256), 2*time.Second)
	if ev.Cycles != 3 || !slices.Equal(ev.PausesNs, []uint64{6, 7, 8}) || ev.PausesMissed != 0 || ev.AllocBytesPerSec != 1500 {
		t.Errorf("5 -> 8: %+v", ev)
	}
	ev = gcEvent(tg, ring(5, 256), ring(305, 256), time.Second)
	if ev.Cycles != 300 || len(ev.PausesNs) != 256 || ev.PausesNs[0] != 50 || ev.PausesNs[255] != 305 || ev.PausesMissed != 44 {
		t.Errorf("5 -> 305: cycles %d, %d pauses from %d to %d, missed %d", ev.Cycles, len(ev.PausesNs), ev.PausesNs[0], ev.PausesNs[len(ev.PausesNs)-1], ev.PausesMissed)
	}
}

// keepOldest keeps the n lowest goids, in order.
func TestKeepOldest(t *testing.T) {
	var old []goruntime.G
	for _, id := range []uint64{9, 3, 7, 1, 8, 2, 6} {
		old = keepOldest(old, goruntime.G{Goid: id}, 3)
	}
	var ids []uint64
	for _, g := range old {
		ids = append(ids, g.Goid)
	}
	if !slices.Equal(ids, []uint64{1, 2, 3}) {
		t.Errorf("got %v", ids)
	}
}
