package acceptq

import (
	"fmt"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// nsState is one network namespace that traced listeners live in, and its
// TcpExt counters: ListenOverflows counts exactly the accept-queue
// overflows of every listener in it, ListenDrops every SYN or handshake
// dropped on a listener (the overflows among them).
type nsState struct {
	base     counts // when first read
	now      counts // at the latest read
	ok       bool   // now was read at the latest sample
	reported counts // reported for its listeners that have closed
}

// counts are a listener's, or a namespace's, overflows and drops.
type counts struct {
	overflows, drops uint64
}

// readCounts reads TcpExtListenOverflows and TcpExtListenDrops of pid's
// network namespace.
func readCounts(pid uint32) (counts, error) {
	c, err := proc.TcpExt(int(pid))
	if err != nil {
		return counts{}, err
	}
	ov, ok1 := c["ListenOverflows"]
	dr, ok2 := c["ListenDrops"]
	if !ok1 || !ok2 {
		return counts{}, fmt.Errorf("no TcpExt ListenOverflows or ListenDrops in netstat")
	}
	return counts{ov, dr}, nil
}

// allocate splits total, the overflows (or drops) of one namespace not yet reported,
// plus what was reported already, among its listeners by their cumulative
// drop counters s, and returns what each should report now (never
// negative). reported[i] is what listener i has reported so far.
//
// One listener gets min(total, s[0]): every overflow also increments its
// sk_drops, so sk_drops is never lower; when it is higher, the excess is
// listen drops that were not overflows. Several get shares of total in
// proportion to s, the remainder to the largest.
func allocate(total uint64, s, reported []uint64) []uint64 {
	out := make([]uint64, len(s))
	var sum uint64
	for _, v := range s {
		sum += v
	}
	if sum == 0 {
		return out
	}
	if total > sum {
		total = sum
	}
	target := make([]uint64, len(s))
	var given uint64
	largest := 0
	for i, v := range s {
		target[i] = uint64(float64(total) * float64(v) / float64(sum))
		if target[i] > v {
			target[i] = v
		}
		given += target[i]
		if v > s[largest] {
			largest = i
		}
	}
	if given < total {
		target[largest] += total - given
	}
	for i := range s {
		if target[i] > reported[i] {
			out[i] = target[i] - reported[i]
		}
	}
	return out
}
