package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/gonetscope/gonetscope/pkg/acceptq"
	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"github.com/gonetscope/gonetscope/pkg/requests"
)

// fakeRequests is a Source with request histograms.
type fakeRequests struct {
	procs []proc.Process
	hists []requests.Hist
	grpc  []requests.GRPCHist
}

func (f *fakeRequests) TracedProcesses() []proc.Process          { return f.procs }
func (f *fakeRequests) Hists() ([]bpfobj.Hist, error)            { return nil, nil }
func (f *fakeRequests) LostTotals() map[string]map[string]uint64 { return nil }
func (f *fakeRequests) Listeners() ([]acceptq.Listener, error)   { return nil, nil }
func (f *fakeRequests) RequestHists() ([]requests.Hist, error)   { return f.hists, nil }
func (f *fakeRequests) GRPCHists() ([]requests.GRPCHist, error)  { return f.grpc, nil }
func (f *fakeRequests) RequestCounts() *requests.Counts          { return &requests.Counts{NoStart: 2} }
func (f *fakeRequests) Runtime(int) *goruntime.Process           { return nil }

func hist(route string, count uint64, status int) requests.Hist {
	b := make([]uint64, len(requests.Bounds)+1)
	b[0] = count
	return requests.Hist{PID: 1, Method: "GET", Route: route, Status: status, Count: count, SumNs: count * 1000, Buckets: b}
}

// TestRouteCap: a target's first MaxRoutes routes (busiest first) keep
// series of their own; the rest become route "other", their requests
// counted in it and in the overflow counter; a series keeps its name at
// the next scrape even when a new route is busier.
func TestRouteCap(t *testing.T) {
	src := &fakeRequests{procs: []proc.Process{{PID: 1, Comm: "svc"}}}
	for i := range MaxRoutes + 5 {
		src.hists = append(src.hists, hist(fmt.Sprintf("/r%03d", i), uint64(1000-i), 200))
	}
	src.hists = append(src.hists, hist("/r000", 7, 500)) // a second status of a kept route
	c := NewCollector(src)
	series, overflow := collectRoutes(t, c)
	if len(series) != MaxRoutes+2 { // MaxRoutes routes, /r000's 500s, and other
		t.Errorf("%d series, want %d", len(series), MaxRoutes+2)
	}
	var want uint64
	for i := MaxRoutes; i < MaxRoutes+5; i++ {
		want += uint64(1000 - i)
	}
	if series["GET other 200"] != want || overflow != want {
		t.Errorf("other: %d requests, overflow counter %d; want %d", series["GET other 200"], overflow, want)
	}
	if series["GET /r000 500"] != 7 || series["GET /r099 200"] != 901 {
		t.Errorf("kept routes: /r000 500 %d, /r099 %d", series["GET /r000 500"], series["GET /r099 200"])
	}
	// A new, busier route later is other: kept series never change.
	src.hists = append(src.hists, hist("/new", 5000, 200))
	series, _ = collectRoutes(t, c)
	if _, ok := series["GET /new 200"]; ok || series["GET /r099 200"] != 901 {
		t.Errorf("after a new busier route: /new has a series of its own, or /r099 lost its (%d)", series["GET /r099 200"])
	}
}

// collectRoutes scrapes c: server request counts by "method route status",
// and the overflow counter.
func collectRoutes(t *testing.T, c *Collector) (map[string]uint64, uint64) {
	t.Helper()
	series := map[string]uint64{}
	var overflow uint64
	eachRequestMetric(t, c, func(desc *prometheus.Desc, l map[string]string, pb *dto.Metric) {
		switch desc {
		case serverDurationDesc:
			series[l["http_request_method"]+" "+l["http_route"]+" "+l["http_response_status_code"]] += pb.Histogram.GetSampleCount()
		case routesOverflowDesc:
			overflow += uint64(pb.Counter.GetValue())
		}
	})
	return series, overflow
}

// eachRequestMetric scrapes c's request metrics of pid 1 ("svc") and
// calls f with each one's desc, labels and value.
func eachRequestMetric(t *testing.T, c *Collector, f func(*prometheus.Desc, map[string]string, *dto.Metric)) {
	t.Helper()
	ch := make(chan prometheus.Metric, 1000)
	c.collectRequests(ch, map[uint32]string{1: "svc"})
	close(ch)
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		l := map[string]string{}
		for _, lp := range pb.Label {
			l[lp.GetName()] = lp.GetValue()
		}
		f(m.Desc(), l, &pb)
	}
}

// A target no longer traced keeps no route caps: a daemon attaching and
// detaching for months does not grow them, and a PID traced again later
// starts with no routes kept.
func TestRouteCapsForgetDetached(t *testing.T) {
	src := &fakeRequests{hists: []requests.Hist{hist("/a", 10, 200)}}
	c := NewCollector(src)
	collectRoutes(t, c)
	if len(c.routes.kept) != 1 {
		t.Fatalf("traced: caps %v, want pid 1's server routes", c.routes.kept)
	}
	ch := make(chan prometheus.Metric, 1000)
	c.collectRequests(ch, map[uint32]string{}) // pid 1 detached
	close(ch)
	if len(c.routes.kept) != 0 {
		t.Errorf("after the detach: caps %v, want none", c.routes.kept)
	}
}

// TestGRPCMethodCap: gRPC methods have OpenTelemetry's RPC labels, a cap
// of their own per side (a target's HTTP routes do not use it up), and
// the methods beyond it are rpc_method="_OTHER", counted in the overflow
// counter by kind.
func TestGRPCMethodCap(t *testing.T) {
	src := &fakeRequests{procs: []proc.Process{{PID: 1, Comm: "svc"}}}
	for i := range MaxRoutes {
		src.hists = append(src.hists, hist(fmt.Sprintf("/r%03d", i), 1, 200))
	}
	b := make([]uint64, len(requests.Bounds)+1)
	for i := range MaxRoutes + 3 {
		src.grpc = append(src.grpc, requests.GRPCHist{PID: 1, Method: fmt.Sprintf("/pkg.Svc/M%03d", i), Code: 5, Count: uint64(1000 - i), Buckets: b})
	}
	src.grpc = append(src.grpc, requests.GRPCHist{PID: 1, Client: true, Method: "/pkg.Svc/M000", Target: "dns:///db.internal:9090",
		Code: -1, Count: 4, Buckets: b})
	got := map[string]uint64{}
	overflow := map[string]uint64{}
	eachRequestMetric(t, NewCollector(src), func(desc *prometheus.Desc, l map[string]string, pb *dto.Metric) {
		switch desc {
		case grpcServerDurationDesc:
			got["server "+l["rpc_system_name"]+" "+l["rpc_method"]+" "+l["rpc_response_status_code"]] += pb.Histogram.GetSampleCount()
		case grpcClientDurationDesc:
			got["client "+l["rpc_method"]+" "+l["server_address"]+" "+l["server_port"]+" "+l["rpc_response_status_code"]] += pb.Histogram.GetSampleCount()
		case routesOverflowDesc:
			overflow[l["kind"]] += uint64(pb.Counter.GetValue())
		}
	})
	var other uint64
	for i := MaxRoutes; i < MaxRoutes+3; i++ {
		other += uint64(1000 - i)
	}
	if got["server grpc pkg.Svc/M000 NOT_FOUND"] != 1000 || got["server grpc _OTHER NOT_FOUND"] != other || overflow["grpc_server"] != other {
		t.Errorf("server: M000 %d, _OTHER %d, overflow %d; want 1000, %d, %d", got["server grpc pkg.Svc/M000 NOT_FOUND"],
			got["server grpc _OTHER NOT_FOUND"], overflow["grpc_server"], other, other)
	}
	if got["client pkg.Svc/M000 db.internal 9090 "] != 4 || overflow["server"] != 0 || overflow["grpc_client"] != 0 {
		t.Errorf("client series %v, overflow %v", got, overflow)
	}
}
