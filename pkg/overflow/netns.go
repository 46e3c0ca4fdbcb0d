package overflow

import (
	"fmt"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// nsState is one network namespace that traced listeners live in, and its
// TcpExtListenOverflows, which counts exactly the accept-queue overflows of
// every listener in it.
type nsState struct {
	base         uint64 // ListenOverflows when first read
	overflows    uint64 // ListenOverflows at the latest sample
	ok           bool   // overflows was read at the latest sample
	reportedGone uint64 // drops reported for its listeners that have closed
}

// listenOverflows reads TcpExtListenOverflows of pid's network namespace.
func listenOverflows(pid uint32) (uint64, error) {
	c, err := proc.TcpExt(int(pid))
	if err != nil {
		return 0, err
	}
	v, ok := c["ListenOverflows"]
	if !ok {
		return 0, fmt.Errorf("no TcpExt ListenOverflows in netstat")
	}
	return v, nil
}

// allocate splits total, the overflows of one namespace not yet reported,
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
