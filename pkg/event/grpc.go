package event

import "github.com/rs/zerolog"

// GRPCRequest: a gRPC server call of the target (google.golang.org/grpc)
// ended (its status was written), over --slow-request.
type GRPCRequest struct {
	Header
	// Service and Method split the full method "/pkg.Service/Method".
	Service, Method string
	// Code is the gRPC status code written, CodeName its name ("OK",
	// "NOT_FOUND", ...); Code -1 and CodeName "" when it could not be
	// read.
	Code       int
	CodeName   string
	DurationNs uint64
	// Truncated: the full method was longer than the kernel's 127 bytes.
	Truncated bool
	// FD is the call's connection (-1 unknown), Addrs its endpoints (the
	// client is the remote one), TCP its round-trip time and
	// retransmissions.
	FD    int32
	Addrs Addrs
	TCP   *TCPInfo
	// Breakdown is where the time went, as for HTTPRequest: the serving
	// goroutine's own netpoll waits; nil when the goroutine was serving
	// a net/http request as well (grpc's ServeHTTP).
	Breakdown *Breakdown
}

func (r *GRPCRequest) MarshalZerologObject(e *zerolog.Event) {
	r.marshal(e)
	e.Str("service", r.Service).Str("method", r.Method).Int("code", r.Code).Str("code_name", r.CodeName).
		Uint64("duration_ns", r.DurationNs)
	if r.Truncated {
		e.Bool("truncated", true)
	}
	e.Int32("fd", r.FD)
	r.Addrs.marshal(e)
	r.TCP.marshal(e)
	if r.Breakdown != nil {
		e.Object("breakdown", *r.Breakdown)
	}
}

// GRPCClientRequest: a gRPC call the target made (unary or a stream)
// ended, over --slow-request; its goroutine is the one that began it.
type GRPCClientRequest struct {
	Header
	Service, Method string
	// Target is the ClientConn's dial target ("dns:///host:port", ...);
	// "" when not known.
	Target     string
	Code       int
	CodeName   string
	DurationNs uint64
	Truncated  bool
}

func (r *GRPCClientRequest) MarshalZerologObject(e *zerolog.Event) {
	r.marshal(e)
	e.Str("service", r.Service).Str("method", r.Method).Str("target", r.Target).Int("code", r.Code).
		Str("code_name", r.CodeName).Uint64("duration_ns", r.DurationNs)
	if r.Truncated {
		e.Bool("truncated", true)
	}
}

// GRPCMethods: a target's gRPC server calls by method since the attach,
// from the kernel's histograms (every call, not only the slow ones): every
// --summary-interval and before its detached event, for a target whose
// gRPC server probes are attached. The gRPC twin of HTTPRoutes.
type GRPCMethods struct {
	Header
	// SinceNs is the time since the attach the counts cover.
	SinceNs uint64
	Methods []GRPCMethod
	// OtherMethods and OtherCount: the methods beyond the listed ones,
	// and their calls.
	OtherMethods int
	OtherCount   uint64
}

// GRPCMethod is one method of a GRPCMethods.
type GRPCMethod struct {
	// Service and Method split the full method "/pkg.Service/Method".
	Service, Method string
	// ByCode counts the calls by status code name ("OK", "UNAVAILABLE",
	// ...; "unread" where the kernel could not read it).
	ByCode map[string]uint64
	Latency
}

func (r *GRPCMethods) MarshalZerologObject(e *zerolog.Event) {
	r.marshal(e)
	e.Uint64("since_ns", r.SinceNs).Array("methods", grpcMethods(r.Methods))
	if r.OtherMethods > 0 {
		e.Int("other_methods", r.OtherMethods).Uint64("other_count", r.OtherCount)
	}
}

type grpcMethods []GRPCMethod

func (ms grpcMethods) MarshalZerologArray(a *zerolog.Array) {
	for _, m := range ms {
		a.Object(m)
	}
}

func (m GRPCMethod) MarshalZerologObject(e *zerolog.Event) {
	e.Str("service", m.Service).Str("method", m.Method).Dict("codes", countsOf(m.ByCode))
	m.Latency.marshal(e)
}
