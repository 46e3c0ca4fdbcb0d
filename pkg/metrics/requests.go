package metrics

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gonetscope/gonetscope/pkg/requests"
)

// RequestSource is a Source that also has request-duration histograms
// (pkg/requests, --requests): *tracer.Tracer is one.
type RequestSource interface {
	RequestHists() ([]requests.Hist, error)
	GRPCHists() ([]requests.GRPCHist, error)
	RequestCounts() *requests.Counts
}

// MaxRoutes is how many routes (server) or hosts (client) of one target
// get series of their own; the rest are route "other" (host "other"),
// counted in gonetscope_http_routes_overflow_total.
const MaxRoutes = 100

// The OpenTelemetry HTTP metrics (semantic conventions: names, seconds,
// the default buckets), as Prometheus names them, per target.
var (
	serverDurationDesc = prometheus.NewDesc("http_server_request_duration_seconds",
		"Duration of net/http server requests of the target: ServeHTTP called to the handler returned (OpenTelemetry http.server.request.duration).",
		append(append([]string{}, base...), "http_request_method", "http_route", "http_response_status_code"), nil)
	clientDurationDesc = prometheus.NewDesc("http_client_request_duration_seconds",
		"Duration of net/http client round trips (HTTP/1) the target made (OpenTelemetry http.client.request.duration); http_response_status_code is empty when the round trip failed.",
		append(append([]string{}, base...), "http_request_method", "server_address", "server_port", "http_response_status_code"), nil)
	// The OpenTelemetry RPC metrics (rpc.server.call.duration,
	// rpc.client.call.duration: seconds, the same default buckets).
	grpcServerDurationDesc = prometheus.NewDesc("rpc_server_call_duration_seconds",
		"Duration of gRPC server calls of the target: handleStream called to the status written (OpenTelemetry rpc.server.call.duration).",
		append(append([]string{}, base...), "rpc_system_name", "rpc_method", "rpc_response_status_code"), nil)
	grpcClientDurationDesc = prometheus.NewDesc("rpc_client_call_duration_seconds",
		"Duration of gRPC calls the target made, unary and streaming: grpc's newClientStream called to the client stream finished (OpenTelemetry rpc.client.call.duration).",
		append(append([]string{}, base...), "rpc_system_name", "rpc_method", "server_address", "server_port", "rpc_response_status_code"), nil)
	routesOverflowDesc = prometheus.NewDesc("gonetscope_http_routes_overflow_total",
		"Requests counted under http_route=\"other\" (server_address for clients; rpc_method=\"_OTHER\" for gRPC, kind grpc_server and grpc_client) because the target had more routes than gonetscope keeps apart.",
		append(append([]string{}, base...), "kind"), nil)
	requestsUntrackedDesc = prometheus.NewDesc("gonetscope_http_requests_untracked_total",
		"Requests not in the histograms: hist_full (the kernel's histogram map was full), no_start (server requests begun before the attach), client_no_start (the same for round trips), grpc_no_start (gRPC statuses of server calls begun before the attach, or of streams grpc's transport refused), grpc_client_no_start (gRPC client calls and streams begun before the attach), end_unseen (HTTP/1 requests whose handler sent the whole response itself on a connection that closed before its next read, where requests end at a send).",
		[]string{"reason"}, nil)
	connsUntrackedDesc = prometheus.NewDesc("gonetscope_http_connections_untracked_total",
		"HTTP/1 connections none of whose requests are in the histograms: the kernel's table of served connections (1M across the targets, where requests end at a send) was full when the target began to serve them.",
		nil, nil)
)

// routeCaps remembers, per target and kind, the routes that have series
// of their own: the first MaxRoutes seen, so a series never changes name.
type routeCaps struct {
	mu   sync.Mutex
	kept map[routeCapKey]map[string]bool
}

// routeCapKey is a target's routes of one kind: "server" or "client"
// (HTTP), "grpc_server" or "grpc_client" (methods).
type routeCapKey struct {
	pid  uint32
	kind string
}

func (rc *routeCaps) admit(pid uint32, kind, route string) bool {
	if rc.kept == nil {
		rc.kept = map[routeCapKey]map[string]bool{}
	}
	k := routeCapKey{pid, kind}
	set := rc.kept[k]
	if set == nil {
		set = map[string]bool{}
		rc.kept[k] = set
	}
	if set[route] {
		return true
	}
	if len(set) >= MaxRoutes {
		return false
	}
	set[route] = true
	return true
}

func describeRequests(ch chan<- *prometheus.Desc) {
	ch <- serverDurationDesc
	ch <- clientDurationDesc
	ch <- grpcServerDurationDesc
	ch <- grpcClientDurationDesc
	ch <- routesOverflowDesc
	ch <- requestsUntrackedDesc
	ch <- connsUntrackedDesc
}

// collectRequests emits the request histograms of the traced targets
// (comm by PID), merging what the caps fold together.
func (c *Collector) collectRequests(ch chan<- prometheus.Metric, comm map[uint32]string) {
	src, ok := c.src.(RequestSource)
	if !ok {
		return
	}
	hists, err := src.RequestHists()
	if err != nil {
		c.errors.Inc()
		return
	}
	grpcHists, err := src.GRPCHists()
	if err != nil {
		c.errors.Inc()
		return
	}
	if cnt := src.RequestCounts(); cnt != nil {
		for reason, n := range map[string]uint64{"hist_full": cnt.HistFull, "no_start": cnt.NoStart, "client_no_start": cnt.ClientNoStart,
			"grpc_no_start": cnt.GRPCNoStart, "grpc_client_no_start": cnt.GRPCClientNoStart, "end_unseen": cnt.EndUnseen} {
			ch <- prometheus.MustNewConstMetric(requestsUntrackedDesc, prometheus.CounterValue, float64(n), reason)
		}
		ch <- prometheus.MustNewConstMetric(connsUntrackedDesc, prometheus.CounterValue, float64(cnt.ConnUnnoted))
	}
	// Admit routes in a stable order: the busiest first.
	slices.SortFunc(hists, func(a, b requests.Hist) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Route, b.Route), cmp.Compare(a.Method, b.Method), cmp.Compare(a.Status, b.Status))
	})
	slices.SortFunc(grpcHists, func(a, b requests.GRPCHist) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Method, b.Method), cmp.Compare(a.Target, b.Target), cmp.Compare(a.Code, b.Code))
	})
	type series struct {
		desc   *prometheus.Desc
		labels []string
		count  uint64
		sumNs  uint64
		bucket []uint64
	}
	merged := map[string]*series{}
	var order []string
	add := func(desc *prometheus.Desc, labels []string, count, sumNs uint64, buckets []uint64) {
		key := desc.String() + "\x00" + stringsKey(labels)
		s := merged[key]
		if s == nil {
			s = &series{desc: desc, labels: labels, bucket: make([]uint64, len(buckets))}
			merged[key] = s
			order = append(order, key)
		}
		s.count += count
		s.sumNs += sumNs
		for i, n := range buckets {
			s.bucket[i] += n
		}
	}
	type overflowKey struct{ pid, comm, kind string }
	overflow := map[overflowKey]uint64{}
	// capped is route, or other when the target has more of this kind
	// than the cap (counted).
	capped := func(pid uint32, comm, kind, route, other string, count uint64) string {
		if c.routes.admit(pid, kind, route) {
			return route
		}
		overflow[overflowKey{strconv.Itoa(int(pid)), comm, kind}] += count
		return other
	}
	c.routes.mu.Lock()
	for _, h := range hists {
		name, traced := comm[h.PID]
		if !traced {
			continue
		}
		pid := strconv.Itoa(int(h.PID))
		kind := "server"
		if h.Client {
			kind = "client"
		}
		route := capped(h.PID, name, kind, h.Route, "other", h.Count)
		status := ""
		if h.Status != 0 {
			status = strconv.Itoa(h.Status)
		}
		desc, labels := serverDurationDesc, []string{pid, name, h.Method, route, status}
		if h.Client {
			host, port, err := net.SplitHostPort(route)
			if err != nil {
				host, port = route, ""
			}
			desc, labels = clientDurationDesc, []string{pid, name, h.Method, host, port, status}
		}
		add(desc, labels, h.Count, h.SumNs, h.Buckets)
	}
	for _, h := range grpcHists {
		name, traced := comm[h.PID]
		if !traced {
			continue
		}
		pid := strconv.Itoa(int(h.PID))
		kind := "grpc_server"
		if h.Client {
			kind = "grpc_client"
		}
		// OpenTelemetry's rpc.method: "pkg.Service/Method".
		method := capped(h.PID, name, kind, strings.TrimPrefix(h.Method, "/"), "_OTHER", h.Count)
		code := requests.GRPCCodeName(h.Code)
		desc, labels := grpcServerDurationDesc, []string{pid, name, "grpc", method, code}
		if h.Client {
			host, port := requests.GRPCServerAddress(h.Target)
			desc, labels = grpcClientDurationDesc, []string{pid, name, "grpc", method, host, port, code}
		}
		add(desc, labels, h.Count, h.SumNs, h.Buckets)
	}
	// A target no longer traced keeps no caps: a daemon attaches and
	// detaches for as long as it runs.
	for k := range c.routes.kept {
		if _, traced := comm[k.pid]; !traced {
			delete(c.routes.kept, k)
		}
	}
	c.routes.mu.Unlock()
	for _, k := range order {
		s := merged[k]
		buckets := make(map[float64]uint64, len(requests.Bounds))
		var cum uint64
		for i, b := range requests.Bounds {
			cum += s.bucket[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(s.desc, s.count, float64(s.sumNs)/1e9, buckets, s.labels...)
	}
	for k, n := range overflow {
		ch <- prometheus.MustNewConstMetric(routesOverflowDesc, prometheus.CounterValue, float64(n), k.pid, k.comm, k.kind)
	}
}

func stringsKey(ss []string) string {
	var b []byte
	for _, s := range ss {
		b = append(append(b, s...), 0)
	}
	return string(b)
}
