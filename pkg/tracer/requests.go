package tracer

import (
	"time"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/netpoll"
	"github.com/gonetscope/gonetscope/pkg/requests"
)

// requestTracing is pkg/requests as a feature (--requests): net/http
// and grpc uprobes in each target, the http_request,
// http_client_request, grpc_request and grpc_client_request events, the
// request-duration histograms.
type requestTracing struct {
	rq *requests.Objects
	// slow is Options.SlowRequest.
	slow time.Duration
}

func (t *Tracer) loadRequests() error {
	shared := t.netpoll.RequestMaps()
	shared["targets"] = t.netpoll.Targets()
	// On the sock path netpoll's socket hooks start HTTP/1 requests, and
	// requests' own, on the same hook points, end them.
	readStarts := t.netpoll.Mechanism() != netpoll.Tracepoint
	sendmsg := t.netpoll.SendmsgFunc()
	rq, err := requests.Load(requests.Options{Shared: shared, RingBufferBytes: t.opts.RingBufferBytes,
		WakeupInterval: t.opts.DrainInterval, ReadStarts: readStarts, SendmsgFunc: sendmsg})
	if err != nil {
		return err
	}
	t.requests = rq
	r := &requestTracing{rq: rq, slow: t.opts.SlowRequest}
	var samplers []sampler
	if t.opts.SummaryInterval > 0 {
		samplers = append(samplers, sampler{every: t.opts.SummaryInterval, atEnd: true, run: func(sink Sink) error { return r.writeRoutes(t, sink) }})
	}
	t.plug(feature{
		samplers: samplers,
		hooks:    map[string]string{"http": httpHooks(readStarts, t.netpoll.Mechanism()), "http_end": httpEndHook(readStarts, sendmsg), "grpc": "uprobe"},
		streams:  []source{{"requests", rq.Events(), requests.Decode, rq.Lost}},
		attach:   r.attach,
		detach:   func(tg *target) { rq.Detach(tg.proc.PID) },
		close:    rq.Close,
	})
	return nil
}

// httpHooks names the http hooks' mechanisms: uprobes, and on the sock
// path netpoll's (tp_btf or fentry), which start HTTP/1 requests.
func httpHooks(readStarts bool, netpollMechanism string) string {
	if readStarts {
		return bpfobj.HooksUprobe + "+" + netpollMechanism
	}
	return bpfobj.HooksUprobe
}

// httpEndHook names where HTTP/1 server requests end: at their last
// send (after a uprobe per connection), seen at the sock_send_length
// tracepoint or, on the fentry sock path, at the exit of sendmsg (the
// kernel function); or at a uprobe per request.
func httpEndHook(readStarts bool, sendmsg string) string {
	switch {
	case !readStarts:
		return bpfobj.HooksUprobe
	case sendmsg != "":
		return "fexit:" + sendmsg
	}
	return netpoll.Sock + ":sock_send_length"
}

// attach places the request probes in a target; one that cannot have
// them is traced without, and its attached event says why.
func (r *requestTracing) attach(tg *target) error {
	if tg.rt == nil {
		return nil // install noted why there are no symbols
	}
	limits, err := r.rq.Attach(tg.rt, r.slow)
	if err != nil {
		limits = append([]string{requests.HTTPLimit(err)}, limits...)
	}
	tg.bin.Limits = append(tg.bin.Limits, limits...)
	return nil
}

// RequestHists reads the request-duration histograms of the traced
// processes (pkg/metrics); nil without --requests.
func (t *Tracer) RequestHists() ([]requests.Hist, error) {
	if t.requests == nil {
		return nil, nil
	}
	return t.requests.Hists(t.tracedNow())
}

// GRPCHists reads the gRPC call-duration histograms of the traced
// processes (pkg/metrics); nil without --requests.
func (t *Tracer) GRPCHists() ([]requests.GRPCHist, error) {
	if t.requests == nil {
		return nil, nil
	}
	return t.requests.GRPCHists(t.tracedNow())
}

// RequestCounts are the request object's counters (nil without --requests).
func (t *Tracer) RequestCounts() *requests.Counts {
	if t.requests == nil {
		return nil
	}
	c, err := t.requests.Counts()
	if err != nil {
		return nil
	}
	return &c
}
