package tcp

import (
	"slices"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
)

// Hists reads this object's histograms and counters (connects, accepts,
// accept errors), dropping those of PIDs keep rejects.
func (o *Objects) Hists(keep func(pid uint32) bool) ([]bpfobj.Hist, error) {
	return bpfobj.ReadHists(o.coll.Maps[tcpMapHists],
		func(k *tcpHistKey) uint32 { return k.Pid }, keep,
		func(k *tcpHistKey, v *tcpHist) bpfobj.Hist {
			return bpfobj.Hist{
				PID: k.Pid, Metric: netpoll.HistMetrics[k.Metric],
				Port: k.Port, Result: k.Result, Count: v.Count, SumNs: v.SumNs,
				Buckets: slices.Clone(v.Buckets[:]),
			}
		})
}
