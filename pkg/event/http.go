package event

import (
	"github.com/rs/zerolog"
)

// HTTPRequest: a net/http server request of the target ended (its handler
// returned), over --slow-request.
type HTTPRequest struct {
	Header
	Method string
	// Route is Request.Pattern as the ServeMux set it (Go 1.23+), without
	// its method and host; otherwise the path with ids collapsed to {id}.
	Route string
	// RouteFrom is "pattern" or "path".
	RouteFrom string
	Path      string
	// Protocol is "HTTP/1.1" or "HTTP/2".
	Protocol string
	Status   int
	// Written is the response body's bytes; RequestLen the request
	// body's declared length (Request.ContentLength: -1 unknown).
	Written    uint64
	RequestLen int64
	DurationNs uint64
	// FD is the connection's fd, -1 when it could not be read (TLS).
	FD int32
	// Remote is the client: conn.remoteAddr.
	RemoteAddr string
	RemotePort uint16
	// TCP is the connection's round-trip time and retransmissions, when
	// FD is known.
	TCP       *TCPInfo
	Breakdown Breakdown
}

// TCPInfo is a TCP connection's smoothed round-trip time and its
// retransmissions over its life, read as the event was made.
type TCPInfo struct {
	SrttUs, Retrans uint32
}

func (ti *TCPInfo) marshal(e *zerolog.Event) {
	if ti != nil {
		e.Uint32("srtt_us", ti.SrttUs).Uint32("retrans", ti.Retrans)
	}
}

// Breakdown is where a request's time went, as far as gonetscope saw it.
type Breakdown struct {
	// NetworkNs: the serving goroutine parked in the netpoller (I/O
	// wait), or a Transport goroutine for its round trips; SchedNs: the
	// same waits' time from ready to running again.
	NetworkNs, SchedNs uint64
	// OtherNs is the rest: CPU, locks, channels, sleeps, runnable time
	// not after a netpoll wait, and goroutines the handler started. Never
	// negative: waits of parallel round trips can add up to more than the
	// duration, then it is 0.
	OtherNs uint64
	Waits   uint32
	// ConnectNs is the part of NetworkNs and SchedNs spent connecting:
	// new downstream connections the request's round trips dialed (on
	// goroutines the serving one started).
	ConnectNs uint64
	// Unslotted counts waits on connections beyond the ones listed (they
	// are in the sums).
	Unslotted uint32
	Conns     []BreakdownConn
	// GRPCCalls and GRPCNs: the gRPC calls (unary and streams) the
	// serving goroutine (or a goroutine it started) began, and their time (in the others:
	// the goroutine waits for a gRPC response on a channel, not in the
	// netpoller); GRPCSlowest the longest of them.
	GRPCCalls   uint32
	GRPCNs      uint64
	GRPCSlowest *GRPCCall
}

// GRPCCall is one gRPC call a request made.
type GRPCCall struct {
	Service, Method, Target string
	DurationNs              uint64
}

func (c GRPCCall) MarshalZerologObject(e *zerolog.Event) {
	e.Str("service", c.Service).Str("method", c.Method).Str("target", c.Target).Uint64("duration_ns", c.DurationNs)
}

// BreakdownConn is one connection's share of a request.
type BreakdownConn struct {
	FD int32
	// Role: "client" (the request's own connection: its body, the
	// response's writes), "downstream" (any other connection).
	Role  string
	Addrs Addrs
	// IoWaitNs, SchedDelayNs: its waits' parts, clipped to the request.
	IoWaitNs, SchedDelayNs uint64
	Waits                  uint32
	// ClientCalls, ClientNs: net/http round trips the serving goroutine
	// made on it and their time.
	ClientCalls uint32
	ClientNs    uint64
	TCP         *TCPInfo
}

func (r *HTTPRequest) MarshalZerologObject(e *zerolog.Event) {
	r.marshal(e)
	e.Str("method", r.Method).Str("route", r.Route).Str("route_from", r.RouteFrom).Str("path", r.Path).Str("protocol", r.Protocol).
		Int("status", r.Status).Uint64("duration_ns", r.DurationNs).Int64("request_bytes", r.RequestLen).Uint64("response_bytes", r.Written).
		Int32("fd", r.FD)
	if r.RemoteAddr != "" {
		e.Str("raddr", r.RemoteAddr).Uint16("rport", r.RemotePort)
	}
	r.TCP.marshal(e)
	e.Object("breakdown", r.Breakdown)
}

func (b Breakdown) MarshalZerologObject(e *zerolog.Event) {
	e.Uint64("network_ns", b.NetworkNs).Uint64("sched_delay_ns", b.SchedNs).Uint64("other_ns", b.OtherNs).
		Uint32("waits", b.Waits)
	if b.ConnectNs > 0 {
		e.Uint64("connect_ns", b.ConnectNs)
	}
	if b.Unslotted > 0 {
		e.Uint32("waits_unlisted", b.Unslotted)
	}
	e.Array("conns", conns(b.Conns))
	if b.GRPCCalls > 0 {
		e.Uint32("grpc_calls", b.GRPCCalls).Uint64("grpc_ns", b.GRPCNs)
		if b.GRPCSlowest != nil {
			e.Object("grpc_slowest", *b.GRPCSlowest)
		}
	}
}

type conns []BreakdownConn

func (cs conns) MarshalZerologArray(a *zerolog.Array) {
	for _, c := range cs {
		a.Object(c)
	}
}

func (c BreakdownConn) MarshalZerologObject(e *zerolog.Event) {
	e.Int32("fd", c.FD).Str("role", c.Role)
	c.Addrs.marshal(e)
	c.TCP.marshal(e)
	e.Uint64("io_wait_ns", c.IoWaitNs).Uint64("sched_delay_ns", c.SchedDelayNs).Uint32("waits", c.Waits)
	if c.ClientCalls > 0 {
		e.Uint32("client_calls", c.ClientCalls).Uint64("client_ns", c.ClientNs)
	}
}

// HTTPClientRequest: a net/http round trip (HTTP/1) the target made ended,
// over --slow-request.
type HTTPClientRequest struct {
	Header
	Method string
	Host   string
	// Status is 0 when the round trip failed (no response).
	Status     int
	DurationNs uint64
	FD         int32
	Addrs      Addrs
}

func (r *HTTPClientRequest) MarshalZerologObject(e *zerolog.Event) {
	r.marshal(e)
	e.Str("method", r.Method).Str("host", r.Host).Int("status", r.Status).Uint64("duration_ns", r.DurationNs).
		Int32("fd", r.FD)
	r.Addrs.marshal(e)
}

// HTTPRoutes: a target's server requests by route since the attach, from
// the kernel's histograms (every request, not only the slow ones): every
// --summary-interval and before its detached event.
type HTTPRoutes struct {
	Header
	// SinceNs is the time since the attach the counts cover.
	SinceNs uint64
	Routes  []HTTPRoute
	// OtherRoutes and OtherCount: the routes beyond the listed ones, and
	// their requests.
	OtherRoutes int
	OtherCount  uint64
}

// HTTPRoute is one method and route of an HTTPRoutes.
type HTTPRoute struct {
	Method, Route string
	// ByClass counts the requests by status class: "2xx", "4xx", "5xx", ...
	ByClass map[string]uint64
	Latency
}

// Latency is what the kernel's histograms say of one series of requests
// (a route, a gRPC method): how many, their total time, and the buckets
// their p50 and p99 lie in: (Gt, Le], Le 0 when above the last bound
// (10 s).
type Latency struct {
	Count, SumNs                       uint64
	P50GtNs, P50LeNs, P99GtNs, P99LeNs uint64
}

func (l Latency) marshal(e *zerolog.Event) {
	e.Uint64("count", l.Count).Uint64("sum_ns", l.SumNs).Uint64("p50_gt_ns", l.P50GtNs)
	if l.P50LeNs > 0 {
		e.Uint64("p50_le_ns", l.P50LeNs)
	}
	e.Uint64("p99_gt_ns", l.P99GtNs)
	if l.P99LeNs > 0 {
		e.Uint64("p99_le_ns", l.P99LeNs)
	}
}

func (r *HTTPRoutes) MarshalZerologObject(e *zerolog.Event) {
	r.marshal(e)
	e.Uint64("since_ns", r.SinceNs).Array("routes", routes(r.Routes))
	if r.OtherRoutes > 0 {
		e.Int("other_routes", r.OtherRoutes).Uint64("other_count", r.OtherCount)
	}
}

type routes []HTTPRoute

func (rs routes) MarshalZerologArray(a *zerolog.Array) {
	for _, r := range rs {
		a.Object(r)
	}
}

func (r HTTPRoute) MarshalZerologObject(e *zerolog.Event) {
	e.Str("method", r.Method).Str("route", r.Route).Dict("status", countsOf(r.ByClass))
	r.Latency.marshal(e)
}
