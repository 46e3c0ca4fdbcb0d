package diagnose

import (
	"strings"
	"testing"
)

func routesEvent(pid uint32, rs ...HTTPRoute) Event {
	e := Event{Event: "http_routes", PID: pid}
	e.Routes = rs
	return e
}

// The p99 lies in (gt, le]: surely over request_p99 is a problem, a
// bucket that straddles it a warning, below it ok; a route with too few
// requests is not judged; 5xx over the ratio is a problem, under it a
// warning.
func TestHTTPRequestsItem(t *testing.T) {
	ok2xx := map[string]uint64{"2xx": 100}
	for _, c := range []struct {
		name  string
		route HTTPRoute
		want  string
	}{
		{"fast", HTTPRoute{Method: "GET", Route: "/a", Count: 100, Status: ok2xx, P99GtNs: 250e6, P99LeNs: 500e6}, OK},
		{"straddles", HTTPRoute{Method: "GET", Route: "/a", Count: 100, Status: ok2xx, P99GtNs: 750e6, P99LeNs: 1e9 + 1}, Warn},
		{"slow", HTTPRoute{Method: "GET", Route: "/a", Count: 100, Status: ok2xx, P99GtNs: 2.5e9, P99LeNs: 5e9}, Problem},
		{"above the last bucket", HTTPRoute{Method: "GET", Route: "/a", Count: 100, Status: ok2xx, P99GtNs: 10e9}, Problem},
		{"slow but few", HTTPRoute{Method: "GET", Route: "/a", Count: 5, Status: map[string]uint64{"2xx": 5}, P99GtNs: 2.5e9, P99LeNs: 5e9}, OK},
		{"some 5xx", HTTPRoute{Method: "GET", Route: "/a", Count: 1000, Status: map[string]uint64{"2xx": 995, "5xx": 5}, P99LeNs: 5e6}, Warn},
		{"many 5xx", HTTPRoute{Method: "GET", Route: "/a", Count: 100, Status: map[string]uint64{"2xx": 90, "5xx": 10}, P99LeNs: 5e6}, Problem},
	} {
		r, err := Analyze([]Event{attached(7), routesEvent(7, c.route)}, 7, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		if it := itemOf(t, r, "http_requests"); it.Status != c.want {
			t.Errorf("%s: %s %q, want %s", c.name, it.Status, it.Value, c.want)
		}
	}
}

// Without request events the item is n/a and says why: the target's
// limits when request tracing was off for it.
func TestHTTPRequestsNA(t *testing.T) {
	r, _ := Analyze([]Event{attached(7)}, 7, Defaults())
	if it := itemOf(t, r, "http_requests"); it.Status != NA || !strings.Contains(it.Why, "--requests") {
		t.Errorf("no http_routes: %s %q", it.Status, it.Why)
	}
	a := attached(7)
	a.Limits = []string{"no http_request: no net/http server in the program"}
	r, _ = Analyze([]Event{a}, 7, Defaults())
	if it := itemOf(t, r, "http_requests"); it.Status != NA || !strings.Contains(it.Why, "no net/http server") {
		t.Errorf("no server: %s %q", it.Status, it.Why)
	}
}

// A few 5xx on routes all too few to judge, with a slow request written:
// a warning whose finding names the 5xx, not a route's p99.
func TestHTTPRequestsFewWith5xx(t *testing.T) {
	slow := Event{Event: "http_request", PID: 7}
	slow.Method, slow.Path, slow.Route, slow.Status, slow.DurationNs = "GET", "/a", "/a", 500, 2e9
	route := HTTPRoute{Method: "GET", Route: "/a", Count: 5, Status: map[string]uint64{"2xx": 4, "5xx": 1}, P99GtNs: 1e9, P99LeNs: 2.5e9}
	th := Defaults()
	th.Request5xxRatio = 0.5
	r, err := Analyze([]Event{attached(7), slow, routesEvent(7, route)}, 7, th)
	if err != nil {
		t.Fatal(err)
	}
	if it := itemOf(t, r, "http_requests"); it.Status != Warn || !strings.Contains(it.Finding, "5xx 1 of 5") {
		t.Errorf("%s %q, finding %q; want warn naming the 5xx", it.Status, it.Value, it.Finding)
	}
}

func methodsEvent(pid uint32, ms ...GRPCMethod) Event {
	e := Event{Event: "grpc_methods", PID: pid}
	e.Methods = ms
	return e
}

// gRPC methods are judged as routes are: a slow p99 is a problem; calls
// that ended in a server error (UNAVAILABLE, ...) count as 5xx do, the
// caller's codes (NOT_FOUND, ...) do not. A server with both kinds is
// judged on each.
func TestHTTPRequestsGRPC(t *testing.T) {
	okCodes := map[string]uint64{"OK": 100}
	for _, c := range []struct {
		name   string
		events []Event
		want   string
		value  string
	}{
		{"fast", []Event{methodsEvent(7, GRPCMethod{Service: "s.S", Method: "M", Count: 100, Codes: okCodes, P99GtNs: 250e6, P99LeNs: 500e6})},
			OK, "s.S/M p99 250ms–500ms (100 calls), gRPC server errors 0 of 100 (0.0%)"},
		{"slow", []Event{methodsEvent(7, GRPCMethod{Service: "s.S", Method: "M", Count: 100, Codes: okCodes, P99GtNs: 2.5e9, P99LeNs: 5e9})},
			Problem, ""},
		{"caller's codes", []Event{methodsEvent(7, GRPCMethod{Service: "s.S", Method: "M", Count: 100, Codes: map[string]uint64{"OK": 50, "NOT_FOUND": 30, "INVALID_ARGUMENT": 20}, P99LeNs: 5e6})},
			OK, ""},
		{"server errors", []Event{methodsEvent(7, GRPCMethod{Service: "s.S", Method: "M", Count: 100, Codes: map[string]uint64{"OK": 90, "UNAVAILABLE": 6, "INTERNAL": 4}, P99LeNs: 5e6})},
			Problem, "s.S/M p99 0s–5ms (100 calls), gRPC server errors 10 of 100 (10.0%)"},
		{"HTTP fine, gRPC failing", []Event{routesEvent(7, HTTPRoute{Method: "GET", Route: "/a", Count: 100, Status: map[string]uint64{"2xx": 100}, P99LeNs: 5e6}),
			methodsEvent(7, GRPCMethod{Service: "s.S", Method: "M", Count: 10, Codes: map[string]uint64{"OK": 5, "DEADLINE_EXCEEDED": 5}, P99LeNs: 5e6})},
			Problem, ""},
	} {
		r, err := Analyze(append([]Event{attached(7)}, c.events...), 7, Defaults())
		if err != nil {
			t.Fatal(err)
		}
		it := itemOf(t, r, "http_requests")
		if it.Status != c.want || (c.value != "" && it.Value != c.value) {
			t.Errorf("%s: %s %q, want %s %q", c.name, it.Status, it.Value, c.want, c.value)
		}
	}
}
