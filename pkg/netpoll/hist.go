package netpoll

import (
	"slices"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

// HistMetrics names the values of enum hist_metric (bpf/hist.h).
var HistMetrics = map[uint8]string{
	uint8(netpollHistMetricHIST_NETPOLL_WAIT):        "netpoll_wait",
	uint8(netpollHistMetricHIST_NETPOLL_IO_WAIT):     "netpoll_io_wait",
	uint8(netpollHistMetricHIST_NETPOLL_SCHED_DELAY): "netpoll_sched_delay",
	uint8(netpollHistMetricHIST_EPOLL_BLOCK):         "epoll_block",
	uint8(netpollHistMetricHIST_CONNECT_HANDSHAKE):   "connect_handshake",
	uint8(netpollHistMetricHIST_ACCEPT_QUEUE_WAIT):   "accept_queue_wait",
	uint8(netpollHistMetricCOUNT_CONNECT):            "connects",
	uint8(netpollHistMetricCOUNT_ACCEPT):             "accepts",
	uint8(netpollHistMetricCOUNT_ACCEPT_ERROR):       "accept_errors",
}

// ModeName is the JSON and metrics name of an enum mode value.
func ModeName(m uint8) string { return modes[netpollMode(m)] }

// Hists reads this object's histograms (netpoll waits and epoll_pwait
// blocks), dropping those of PIDs keep rejects. A netpoll wait's three
// histograms are one map entry (netpoll_hists), read as three.
func (o *Objects) Hists(keep func(pid uint32) bool) ([]bpfobj.Hist, error) {
	conv := func(pid uint32, metric uint8, mode uint8, port uint16, result int32, v *netpollHist) bpfobj.Hist {
		return bpfobj.Hist{
			PID: pid, Metric: HistMetrics[metric], Mode: ModeName(mode),
			Port: port, Result: result, Count: v.Count, SumNs: v.SumNs,
			Buckets: slices.Clone(v.Buckets[:]),
		}
	}
	out, err := bpfobj.ReadHists(o.coll.Maps[netpollMapHists],
		func(k *netpollHistKey) uint32 { return k.Pid }, keep,
		func(k *netpollHistKey, v *netpollHist) bpfobj.Hist {
			return conv(k.Pid, k.Metric, k.Mode, k.Port, k.Result, v)
		})
	if err != nil {
		return nil, err
	}
	waits, err := bpfobj.ReadHists(o.coll.Maps[netpollMapNetpollHists],
		func(k *netpollWaitHistsKey) uint32 { return k.Pid }, keep,
		func(k *netpollWaitHistsKey, v *netpollWaitHists) [3]bpfobj.Hist {
			return [3]bpfobj.Hist{
				conv(k.Pid, uint8(netpollHistMetricHIST_NETPOLL_WAIT), k.Mode, 0, 0, &v.Wait),
				conv(k.Pid, uint8(netpollHistMetricHIST_NETPOLL_IO_WAIT), k.Mode, 0, 0, &v.IoWait),
				conv(k.Pid, uint8(netpollHistMetricHIST_NETPOLL_SCHED_DELAY), k.Mode, 0, 0, &v.SchedDelay),
			}
		})
	if err != nil {
		return nil, err
	}
	for _, w := range waits {
		out = append(out, w[:]...)
	}
	return out, nil
}
