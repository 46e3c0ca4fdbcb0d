package overflow

import (
	"fmt"
	"os"
	"strconv"
	"strings"
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

// netnsOf identifies pid's network namespace by its inode.
func netnsOf(pid uint32) (uint64, error) {
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return 0, err
	}
	// "net:[4026531840]"
	s := strings.TrimSuffix(strings.TrimPrefix(link, "net:["), "]")
	return strconv.ParseUint(s, 10, 64)
}

// listenOverflows reads TcpExtListenOverflows of pid's network namespace:
// /proc/PID/net/netstat shows the namespace of the process, not the reader.
func listenOverflows(pid uint32) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/netstat", pid))
	if err != nil {
		return 0, err
	}
	return parseListenOverflows(string(raw))
}

func parseListenOverflows(netstat string) (uint64, error) {
	lines := strings.Split(netstat, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j, n := range names {
			if n == "ListenOverflows" && j < len(vals) {
				return strconv.ParseUint(vals[j], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no TcpExt ListenOverflows in netstat")
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
