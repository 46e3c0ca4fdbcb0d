package tracer

import (
	"time"

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
	rq, err := requests.Load(requests.Options{Shared: shared, RingBufferBytes: t.opts.RingBufferBytes, WakeupInterval: t.opts.DrainInterval})
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
		hooks:    map[string]string{"http": "uprobe", "grpc": "uprobe"},
		streams:  []source{{"requests", rq.Events(), requests.Decode, rq.Lost}},
		attach:   r.attach,
		detach:   func(tg *target) { rq.Detach(tg.proc.PID) },
		close:    rq.Close,
	})
	return nil
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
