package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

var tcpSocketsDesc = desc("tcp_sockets", "The target's TCP sockets by state (ESTABLISHED, CLOSE_WAIT, LISTEN, ...), from its fds and /proc/PID/net/tcp*.", "state")

// collectTCPStates emits pid's TCP sockets by state.
func collectTCPStates(ch chan<- prometheus.Metric, pid int, labels ...string) {
	states, err := proc.TCPStates(pid)
	if err != nil {
		return
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(tcpSocketsDesc, prometheus.GaugeValue, float64(n), append(labels, st)...)
	}
}
