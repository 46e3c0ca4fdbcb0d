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
// blocks), dropping those of PIDs keep rejects.
func (o *Objects) Hists(keep func(pid uint32) bool) ([]bpfobj.Hist, error) {
	return bpfobj.ReadHists(o.coll.Maps[netpollMapHists],
		func(k *netpollHistKey) uint32 { return k.Pid }, keep,
		func(k *netpollHistKey, v *netpollHist) bpfobj.Hist {
			return bpfobj.Hist{
				PID: k.Pid, Metric: HistMetrics[k.Metric], Mode: ModeName(k.Mode),
				Port: k.Port, Result: k.Result, Count: v.Count, SumNs: v.SumNs,
				Buckets: slices.Clone(v.Buckets[:]),
			}
		})
}
