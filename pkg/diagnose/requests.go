package diagnose

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// The fields of http_routes and http_request events the http_requests
// item reads (Event embeds them).
type httpFields struct {
	// http_routes
	SinceNs     uint64      `json:"since_ns"`
	Routes      []HTTPRoute `json:"routes"`
	OtherRoutes int         `json:"other_routes"`
	OtherCount  uint64      `json:"other_count"`

	// http_request
	Method     string     `json:"method"`
	Route      string     `json:"route"`
	Path       string     `json:"path"`
	Status     int        `json:"status"`
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

// Breakdown is an http_request's breakdown.
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
}

// httpRequests: per route, the p99 of every request (http_routes, from
// the kernel's histograms, whose buckets put it in (gt, le]) against
// request_p99, and the share of 5xx answers against request_5xx_ratio;
// the evidence is the slowest http_request events and where their time
// went.
func httpRequests(s *stream) Item {
	th := uint64(s.th.RequestP99)
	it := Item{ID: "http_requests", Title: "Request latency and 5xx", Unit: "ns",
		Threshold: fmt.Sprintf("p99 ≤ %s per route (of ≥ %d requests), 5xx ≤ %g%%", dur(th), s.th.RequestMinCount, 100*s.th.Request5xxRatio),
		Limit:     f64(float64(th))}
	routes := s.of("http_routes")
	if len(routes) == 0 {
		it.Status = NA
		it.Why = "no http_routes event in the stream: request tracing was off (trace --requests), or ran no summary"
		for _, l := range s.target.Limits {
			if strings.HasPrefix(l, "no http_request") {
				it.Why = "request tracing is off for the target: " + l
			}
		}
		return it
	}
	// The last one covers the whole attach.
	last := routes[len(routes)-1]
	var total, errs uint64
	worst5xx := ""
	var worst5xxN uint64
	for _, r := range last.Routes {
		total += r.Count
		errs += r.Status["5xx"]
		if r.Status["5xx"] > worst5xxN {
			worst5xx, worst5xxN = r.Method+" "+r.Route, r.Status["5xx"]
		}
	}
	total += last.OtherCount
	if total == 0 {
		it.Status = NA
		it.Why = "no request served in the window"
		return it
	}
	judged := slices.DeleteFunc(slices.Clone(last.Routes), func(r HTTPRoute) bool { return r.Count < s.th.RequestMinCount })
	upper := func(r HTTPRoute) uint64 {
		if r.P99LeNs == 0 {
			return ^uint64(0)
		}
		return r.P99LeNs
	}
	slices.SortStableFunc(judged, func(a, b HTTPRoute) int { return cmp.Compare(b.P99GtNs, a.P99GtNs) })
	var parts []string
	status := OK
	if len(judged) > 0 {
		w := judged[0]
		it.Measured = f64(float64(w.P99GtNs))
		switch {
		case w.P99GtNs >= th:
			status = Problem
			it.score = float64(w.P99GtNs) / float64(max(th, 1))
		case upper(w) > th:
			status = Warn
			it.score = 0.5
		}
		parts = append(parts, fmt.Sprintf("%s %s p99 %s (%s)", w.Method, w.Route, p99Range(w), plural(w.Count, "request")))
	} else {
		parts = append(parts, fmt.Sprintf("%s, no route with %d for a p99", plural(total, "request"), s.th.RequestMinCount))
	}
	ratio := float64(errs) / float64(total)
	parts = append(parts, fmt.Sprintf("5xx %d of %d (%.1f%%)", errs, total, 100*ratio))
	it.Value = strings.Join(parts, ", ")
	over5xx := errs > 0 && ratio > s.th.Request5xxRatio
	switch {
	case over5xx:
		status = Problem
		it.score = max(it.score, ratio/max(s.th.Request5xxRatio, 1e-9))
	case errs > 0 && status == OK:
		status = Warn
	}
	it.Status = status
	if status == OK {
		return it
	}
	// The slowest requests written, and where their time went.
	slow := s.of("http_request")
	slices.SortStableFunc(slow, func(a, b Event) int { return cmp.Compare(b.DurationNs, a.DurationNs) })
	for _, e := range slow[:min(3, len(slow))] {
		ev := Evidence{ValueNs: e.DurationNs, Text: fmt.Sprintf("%s %s (route %s) took %s, status %d, on %s", e.Method, e.Path, e.Route, dur(e.DurationNs), e.Status, goroutineOf(e))}
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
			where = append(where, dur(b.SchedDelayNs)+" runnable after a wait", dur(b.OtherNs)+" CPU or other")
			ev.Text += ": " + strings.Join(where, ", ")
		}
		it.Evidence = append(it.Evidence, ev)
	}
	switch {
	case over5xx:
		it.Finding = fmt.Sprintf("%d of %d requests (%.1f%%) were answered 5xx, most on %s.", errs, total, 100*ratio, worst5xx)
	case len(it.Evidence) > 0 && len(judged) > 0:
		it.Finding = fmt.Sprintf("%s is slow (%s); the slowest request: %s.", judged[0].Method+" "+judged[0].Route, "p99 "+p99Range(judged[0]), it.Evidence[0].Text)
	default:
		it.Finding = "Requests: " + it.Value + "."
	}
	return it
}

func p99Range(r HTTPRoute) string {
	if r.P99LeNs == 0 {
		return "> " + dur(r.P99GtNs)
	}
	return dur(r.P99GtNs) + "–" + dur(r.P99LeNs)
}
