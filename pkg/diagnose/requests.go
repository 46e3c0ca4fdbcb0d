package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The fields of http_routes, grpc_methods, http_request and grpc_request
// events the http_requests item reads (Event embeds them).
type httpFields struct {
	// http_routes, grpc_methods
	SinceNs      uint64       `json:"since_ns"`
	Routes       []HTTPRoute  `json:"routes"`
	OtherRoutes  int          `json:"other_routes"`
	Methods      []GRPCMethod `json:"methods"`
	OtherMethods int          `json:"other_methods"`
	OtherCount   uint64       `json:"other_count"`

	// http_request, grpc_request (Method its method, without the service)
	Method     string     `json:"method"`
	Route      string     `json:"route"`
	Path       string     `json:"path"`
	Status     int        `json:"status"`
	Service    string     `json:"service"`
	CodeName   string     `json:"code_name"`
	DurationNs uint64     `json:"duration_ns"`
	Breakdown  *Breakdown `json:"breakdown"`
}

// HTTPRoute is one route of an http_routes event.
type HTTPRoute struct {
	Method  string            `json:"method"`
	Route   string            `json:"route"`
	Count   uint64            `json:"count"`
	Status  map[string]uint64 `json:"status"`
	P99GtNs uint64            `json:"p99_gt_ns"`
	P99LeNs uint64            `json:"p99_le_ns"`
}

// GRPCMethod is one method of a grpc_methods event.
type GRPCMethod struct {
	Service string            `json:"service"`
	Method  string            `json:"method"`
	Count   uint64            `json:"count"`
	Codes   map[string]uint64 `json:"codes"`
	P99GtNs uint64            `json:"p99_gt_ns"`
	P99LeNs uint64            `json:"p99_le_ns"`
}

// grpcServerErrors are the gRPC status codes that say the server failed
// (OpenTelemetry's gRPC conventions: a server span with one of them is an
// error); the others are the caller's (NOT_FOUND, INVALID_ARGUMENT, ...).
var grpcServerErrors = []string{"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}

// Breakdown is an http_request's or grpc_request's breakdown.
type Breakdown struct {
	NetworkNs    uint64 `json:"network_ns"`
	SchedDelayNs uint64 `json:"sched_delay_ns"`
	OtherNs      uint64 `json:"other_ns"`
	Conns        []struct {
		FD          int32  `json:"fd"`
		Role        string `json:"role"`
		Raddr       string `json:"raddr"`
		Rport       uint16 `json:"rport"`
		IoWaitNs    uint64 `json:"io_wait_ns"`
		ClientCalls int    `json:"client_calls"`
	} `json:"conns"`
	GRPCCalls   int          `json:"grpc_calls"`
	GRPCSlowest *grpcSlowest `json:"grpc_slowest"`
}

type grpcSlowest struct {
	Service    string `json:"service"`
	Method     string `json:"method"`
	Target     string `json:"target"`
	DurationNs uint64 `json:"duration_ns"`
}

// served is one route's or gRPC method's requests: its name ("GET
// /items/{id}", "pkg.Service/Method"), how many, how many failed by the
// server's fault (5xx, a gRPC server error), and the bucket of its p99.
type served struct {
	name         string
	count, errs  uint64
	p99Gt, p99Le uint64
	grpc         bool
}

// requestsOf is what the last http_routes and grpc_methods events say:
// every route and method, and the totals of each kind (other routes and
// methods included).
type requestsOf struct {
	all                  []served
	httpTotal, http5xx   uint64
	grpcTotal, grpcErrs  uint64
	worstHTTP, worstGRPC served // the most errors of each kind
}

func readRequests(s *stream) (r requestsOf, any bool) {
	if routes := s.of("http_routes"); len(routes) > 0 {
		any = true
		// The last one covers the whole attach.
		last := routes[len(routes)-1]
		for _, rt := range last.Routes {
			r.add(served{name: rt.Method + " " + rt.Route, count: rt.Count, errs: rt.Status["5xx"], p99Gt: rt.P99GtNs, p99Le: rt.P99LeNs})
		}
		r.httpTotal += last.OtherCount
	}
	if methods := s.of("grpc_methods"); len(methods) > 0 {
		any = true
		last := methods[len(methods)-1]
		for _, m := range last.Methods {
			sv := served{name: m.Service + "/" + m.Method, count: m.Count, p99Gt: m.P99GtNs, p99Le: m.P99LeNs, grpc: true}
			for _, c := range grpcServerErrors {
				sv.errs += m.Codes[c]
			}
			r.add(sv)
		}
		r.grpcTotal += last.OtherCount
	}
	return r, any
}

// add counts sv in its kind's totals.
func (r *requestsOf) add(sv served) {
	r.all = append(r.all, sv)
	total, errs, worst := &r.httpTotal, &r.http5xx, &r.worstHTTP
	if sv.grpc {
		total, errs, worst = &r.grpcTotal, &r.grpcErrs, &r.worstGRPC
	}
	*total += sv.count
	*errs += sv.errs
	if sv.errs > worst.errs {
		*worst = sv
	}
}

// httpRequests: per route and gRPC method, the p99 of every request
// (http_routes and grpc_methods, from the kernel's histograms, whose
// buckets put it in (gt, le]) against request_p99, and the share of 5xx
// answers, and of gRPC calls that ended in a server error, against
// request_5xx_ratio; the evidence is the slowest http_request and
// grpc_request events and where their time went.
func httpRequests(s *stream) Item {
	th := uint64(s.th.RequestP99)
	it := Item{ID: "http_requests", Title: "Request latency and server errors", Unit: "ns",
		Threshold: fmt.Sprintf("p99 ≤ %s per route (of ≥ %d requests), 5xx ≤ %g%%", dur(th), s.th.RequestMinCount, 100*s.th.Request5xxRatio),
		Limit:     f64(float64(th))}
	rq, any := readRequests(s)
	if !any {
		it.Status = NA
		it.Why = "no http_routes event in the stream: request tracing was off (trace --requests), or ran no summary"
		for _, l := range s.target.Limits {
			if strings.HasPrefix(l, "no http_request") {
				it.Why = "request tracing is off for the target: " + l
			}
		}
		return it
	}
	if rq.grpcTotal > 0 || len(s.of("grpc_methods")) > 0 {
		it.Threshold += " (gRPC: server errors)"
	}
	total := rq.httpTotal + rq.grpcTotal
	if total == 0 {
		it.Status = NA
		it.Why = "no request served in the window"
		return it
	}
	judged := slices.DeleteFunc(slices.Clone(rq.all), func(r served) bool { return r.count < s.th.RequestMinCount })
	upper := func(r served) uint64 {
		if r.p99Le == 0 {
			return ^uint64(0)
		}
		return r.p99Le
	}
	slices.SortStableFunc(judged, func(a, b served) int { return cmp.Compare(b.p99Gt, a.p99Gt) })
	var parts []string
	status := OK
	if len(judged) > 0 {
		w := judged[0]
		it.Measured = f64(float64(w.p99Gt))
		switch {
		case w.p99Gt >= th:
			status = Problem
			it.score = float64(w.p99Gt) / float64(max(th, 1))
		case upper(w) > th:
			status = Warn
			it.score = 0.5
		}
		parts = append(parts, fmt.Sprintf("%s p99 %s (%s)", w.name, p99Range(w), plural(w.count, unitOf(w))))
	} else {
		parts = append(parts, fmt.Sprintf("%s, no route with %d for a p99", plural(total, "request"), s.th.RequestMinCount))
	}
	var over []string
	ratioOf := func(errs, n uint64) float64 { return float64(errs) / float64(max(n, 1)) }
	if rq.httpTotal > 0 || rq.grpcTotal == 0 {
		ratio := ratioOf(rq.http5xx, rq.httpTotal)
		parts = append(parts, fmt.Sprintf("5xx %d of %d (%.1f%%)", rq.http5xx, rq.httpTotal, 100*ratio))
		if rq.http5xx > 0 && ratio > s.th.Request5xxRatio {
			over = append(over, fmt.Sprintf("%d of %d requests (%.1f%%) were answered 5xx, most on %s.", rq.http5xx, rq.httpTotal, 100*ratio, rq.worstHTTP.name))
			it.score = max(it.score, ratio/max(s.th.Request5xxRatio, 1e-9))
		}
	}
	if rq.grpcTotal > 0 {
		ratio := ratioOf(rq.grpcErrs, rq.grpcTotal)
		parts = append(parts, fmt.Sprintf("gRPC server errors %d of %d (%.1f%%)", rq.grpcErrs, rq.grpcTotal, 100*ratio))
		if rq.grpcErrs > 0 && ratio > s.th.Request5xxRatio {
			over = append(over, fmt.Sprintf("%d of %d gRPC calls (%.1f%%) ended in a server error (%s), most on %s.", rq.grpcErrs, rq.grpcTotal,
				100*ratio, strings.Join(grpcServerErrors, ", "), rq.worstGRPC.name))
			it.score = max(it.score, ratio/max(s.th.Request5xxRatio, 1e-9))
		}
	}
	it.Value = strings.Join(parts, ", ")
	switch {
	case len(over) > 0:
		status = Problem
	case (rq.http5xx > 0 || rq.grpcErrs > 0) && status == OK:
		status = Warn
	}
	it.Status = status
	if status == OK {
		return it
	}
	// The slowest requests written, and where their time went.
	slow := append(s.of("http_request"), s.of("grpc_request")...)
	slices.SortStableFunc(slow, func(a, b Event) int { return cmp.Compare(b.DurationNs, a.DurationNs) })
	for _, e := range slow[:min(3, len(slow))] {
		ev := Evidence{ValueNs: e.DurationNs}
		if e.Event == "grpc_request" {
			ev.Text = fmt.Sprintf("gRPC %s/%s took %s, %s, on %s", e.Service, e.Method, dur(e.DurationNs), e.CodeName, goroutineOf(e))
		} else {
			ev.Text = fmt.Sprintf("%s %s (route %s) took %s, status %d, on %s", e.Method, e.Path, e.Route, dur(e.DurationNs), e.Status, goroutineOf(e))
		}
		if e.Goid != nil {
			ev.Goids = []uint64{*e.Goid}
		}
		if b := e.Breakdown; b != nil {
			var where []string
			for _, c := range b.Conns {
				if c.IoWaitNs == 0 {
					continue
				}
				w := fmt.Sprintf("%s waiting on %s:%d (%s", dur(c.IoWaitNs), c.Raddr, c.Rport, c.Role)
				if c.ClientCalls > 0 {
					w += ", " + plural(c.ClientCalls, "round trip")
				}
				where = append(where, w+")")
				if ev.Raddr == "" && c.Role == "downstream" {
					ev.Raddr, ev.Rport, ev.FDs = c.Raddr, c.Rport, []int32{c.FD}
				}
			}
			if g := b.GRPCSlowest; b.GRPCCalls > 0 && g != nil {
				where = append(where, fmt.Sprintf("%s in gRPC calls, the slowest %s/%s to %s (%s)", plural(b.GRPCCalls, "call"),
					g.Service, g.Method, g.Target, dur(g.DurationNs)))
			}
			where = append(where, dur(b.SchedDelayNs)+" runnable after a wait", dur(b.OtherNs)+" CPU or other")
			ev.Text += ": " + strings.Join(where, ", ")
		}
		it.Evidence = append(it.Evidence, ev)
	}
	switch {
	case len(over) > 0:
		it.Finding = strings.Join(over, " ")
	case len(it.Evidence) > 0 && len(judged) > 0:
		it.Finding = fmt.Sprintf("%s is slow (%s); the slowest request: %s.", judged[0].name, "p99 "+p99Range(judged[0]), it.Evidence[0].Text)
	default:
		it.Finding = "Requests: " + it.Value + "."
	}
	return it
}

func unitOf(r served) string {
	if r.grpc {
		return "call"
	}
	return "request"
}

func p99Range(r served) string {
	if r.p99Le == 0 {
		return "> " + dur(r.p99Gt)
	}
	return dur(r.p99Gt) + "–" + dur(r.p99Le)
}
