// Package requests loads bpf/requests.bpf.c: net/http server and client
// requests of the traced processes, from uprobes in their binaries on
// instructions the kernel emulates, with per-route latency histograms in
// the kernel, http_request and http_client_request events for requests
// over a threshold, and each slow request's breakdown: the netpoll waits
// of its serving goroutine and of its round trips' connections, which
// bpf/netpoll.bpf.c adds to the request as they end (bpf/requests.h).
package requests

import (
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strings"
	"structs"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// The functions the probes go in, and the calls they sit on.
const (
	serveFunc     = "net/http.(*conn).serve"
	serveHTTP     = "net/http.serverHandler.ServeHTTP"
	finishRequest = "net/http.(*response).finishRequest"
	rtFunc        = "net/http.(*Transport).roundTrip"
	pconnRT       = "net/http.(*persistConn).roundTrip"
)

// h2Funcs are the functions of net/http's HTTP/2 the probes go in, by
// where it lives: bundled into net/http (h2_bundle.go) until Go 1.26, in
// net/http/internal/http2 from Go 1.27 (the same code, without the http2
// prefix; goruntime reads its structs under either name).
type h2Funcs struct {
	runHandler, deferred, handlerDone, rtOpt string
	// roundTrips are the calls in rtOpt that make one HTTP/2 round trip
	// (cc, req): the unexported one where the exported one is inlined.
	roundTrips []string
	// clientWhyNot says why the client is not probed; nil: it is.
	clientWhyNot error
}

// ErrH2ClientRequest: Go 1.27's HTTP/2 client round-trips its own
// request struct, not the *http.Request the client probes read (a test
// read garbage methods and hosts there).
var ErrH2ClientRequest = errors.New("Go 1.27's HTTP/2 client (net/http/internal/http2) passes a request struct the probes do not read yet")

var h2Packages = []h2Funcs{
	{
		runHandler:  "net/http.(*http2serverConn).runHandler",
		deferred:    "net/http.(*http2serverConn).runHandler.func1",
		handlerDone: "net/http.(*http2responseWriter).handlerDone",
		rtOpt:       "net/http.(*http2Transport).RoundTripOpt",
		roundTrips:  []string{"net/http.(*http2ClientConn).roundTrip", "net/http.(*http2ClientConn).RoundTrip"},
	},
	{
		runHandler:   "net/http/internal/http2.(*serverConn).runHandler",
		deferred:     "net/http/internal/http2.(*serverConn).runHandler.func1",
		handlerDone:  "net/http/internal/http2.(*responseWriter).handlerDone",
		rtOpt:        "net/http/internal/http2.(*Transport).RoundTripOpt",
		clientWhyNot: ErrH2ClientRequest,
	},
}

// h2FuncsOf are the HTTP/2 functions of the binary whose functions funcs
// finds: the first of h2Packages whose server or client it has (the first
// if none, for the limits to name).
func h2FuncsOf(funcs goruntime.FuncLookup) h2Funcs {
	for _, h := range h2Packages {
		for _, fn := range []string{h.runHandler, h.rtOpt} {
			if _, _, ok := funcs(fn); ok {
				return h
			}
		}
	}
	return h2Packages[0]
}

// Options configure the object.
type Options struct {
	// Shared are netpoll's maps this object shares: "targets",
	// "req_active", "req_fds", "req_parent_off", "req_read_starts" and
	// "sock_pids" (netpoll.Objects.RequestMaps, Targets).
	Shared          map[string]*ebpf.Map
	RingBufferBytes uint32
	// WakeupInterval bounds the reader's wake-ups (zero: 50ms).
	WakeupInterval time.Duration
	// ReadStarts: netpoll is on the sock path, whose socket hooks start
	// each HTTP/1 server request at its first read (bpf/requests.h
	// req_read): no uprobe at ServeHTTP. There the request also ends at
	// a send (requests.bpf.c serve_send), on the same hook points: one
	// trap per connection, none per request.
	ReadStarts bool
	// SendmsgFunc: the sends are seen at the exit of this kernel
	// function (the fentry sock path: __sock_sendmsg or sock_sendmsg,
	// and the receives at sock_recvmsg's), not at the socket
	// tracepoints ("").
	SendmsgFunc string
}

// Objects are the loaded programs and maps, and the uprobes per target.
type Objects struct {
	coll       *ebpf.Collection
	readStarts bool
	// sendProgs are the programs that see sends and receives (tp_btf, or
	// fexit where SendmsgFunc is set), and serve_close.
	sendProgs []string
	// sendLinks are sendProgs' (global: they filter by PID), made at the
	// first target that needs them.
	sendLinks []link.Link
	mu        sync.Mutex
	links     map[int][]link.Link
	// grpcServers are the targets whose gRPC server probes are attached.
	grpcServers map[int]bool
	// warm are the targets whose server_end stays for connections
	// accepted before the attach (warmUp).
	warm map[int]warm
}

type warm struct {
	links []link.Link
	stop  chan struct{}
}

// Load loads the programs.
func Load(opts Options) (*Objects, error) {
	spec, err := loadRequests()
	if err != nil {
		return nil, err
	}
	if opts.RingBufferBytes != 0 {
		spec.Maps[requestsMapEvents].MaxEntries = opts.RingBufferBytes
	}
	if opts.WakeupInterval == 0 {
		opts.WakeupInterval = 50 * time.Millisecond
	}
	if err := spec.Variables["wakeup_interval_ns"].Set(uint64(opts.WakeupInterval.Nanoseconds())); err != nil {
		return nil, fmt.Errorf("setting wakeup_interval_ns: %w", err)
	}
	// The send and receive programs of this kernel's path; the others'
	// hook points may not exist on it.
	var sendProgs []string
	switch {
	case !opts.ReadStarts:
	case opts.SendmsgFunc != "":
		spec.Programs[requestsProgFexitServeSend].AttachTo = opts.SendmsgFunc
		sendProgs = []string{requestsProgServeClose, requestsProgFexitServeSend, requestsProgFexitServeRecv}
	default:
		sendProgs = []string{requestsProgServeClose, requestsProgServeSend, requestsProgServeRecv}
	}
	for _, p := range []string{requestsProgServeClose, requestsProgServeSend, requestsProgServeRecv, requestsProgFexitServeSend, requestsProgFexitServeRecv} {
		if !slices.Contains(sendProgs, p) {
			delete(spec.Programs, p)
		}
	}
	if opts.ReadStarts {
		// Memory for the open connections only: a full table drops
		// (and counts) the connections past it.
		spec.Maps[requestsMapServedConns].Flags |= unix.BPF_F_NO_PREALLOC
		spec.Maps[requestsMapServedConns].MaxEntries = servedConns
	}
	coll, err := bpfobj.NewCollection(spec, ebpf.CollectionOptions{MapReplacements: opts.Shared})
	if err != nil {
		return nil, bpfobj.LoadError("requests BPF object", err)
	}
	return &Objects{coll: coll, readStarts: opts.ReadStarts, sendProgs: sendProgs, links: map[int][]link.Link{}, grpcServers: map[int]bool{}, warm: map[int]warm{}}, nil
}

// servedConns is how many connections the targets can have served at
// once where requests end at a send: any Go server's fd limit (1M at most
// by default) fits.
const servedConns = 1 << 20

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	o.mu.Lock()
	pids := make([]int, 0, len(o.links))
	for pid := range o.links {
		pids = append(pids, pid)
	}
	o.mu.Unlock()
	for _, pid := range pids {
		o.Detach(pid)
	}
	bpfobj.CloseAll(o.sendLinks)
	o.coll.Close()
	return nil
}

// Events is the ring buffer of http_request and http_client_request records.
func (o *Objects) Events() *ebpf.Map { return o.coll.Maps[requestsMapEvents] }

// Probes are where the uprobes of a binary go.
type Probes struct {
	ServerStart, ServerEnd []goruntime.Site
	// ServeEntry is the entry of (*conn).serve: where a connection's
	// requests end at a send (Options.ReadStarts), its one probe.
	ServeEntry goruntime.Site
	// ClientStart and ClientEnd pair up; empty when the binary has no
	// net/http client (or its code is not the one known).
	ClientStart, ClientEnd []goruntime.Site
	// ClientWhyNot says why there are no client probes.
	ClientWhyNot error
	// H2Start and H2End are the HTTP/2 server's (net/http's bundled
	// one); H2WhyNot says why there are none.
	H2Start, H2End []goruntime.Site
	H2WhyNot       error
	// H2ClientStart and H2ClientEnd pair up: the HTTP/2 client's round
	// trips; H2ClientWhyNot says why there are none.
	H2ClientStart, H2ClientEnd []goruntime.Site
	H2ClientWhyNot             error
}

// FindProbes finds the probe sites in f, whose functions funcs finds.
func FindProbes(f *elf.File, funcs goruntime.FuncLookup) (Probes, error) {
	var p Probes
	var err error
	if p.ServerStart, err = goruntime.CallSites(f, funcs, serveFunc, serveHTTP); err != nil {
		return p, err
	}
	if p.ServerEnd, err = goruntime.CallSites(f, funcs, serveFunc, finishRequest); err != nil {
		return p, err
	}
	if p.ServeEntry, err = goruntime.EntryBranch(f, funcs, serveFunc); err != nil {
		return p, err
	}
	h2 := h2FuncsOf(funcs)
	if s, err := goruntime.EntryBranch(f, funcs, h2.runHandler); err != nil {
		p.H2WhyNot = err
	} else if p.H2End, err = goruntime.CallSites(f, funcs, h2.deferred, h2.handlerDone); err != nil {
		p.H2WhyNot = err
	} else {
		p.H2Start = []goruntime.Site{s}
	}
	if p.H2ClientWhyNot = h2.clientWhyNot; p.H2ClientWhyNot == nil {
		p.H2ClientStart, p.H2ClientEnd, p.H2ClientWhyNot = goruntime.CallsAndReturns(f, funcs, h2.rtOpt, h2.roundTrips...)
	}
	// (*Transport).roundTrip is (*persistConn).roundTrip's one caller:
	// on arm64 its round trips may end at that function's RETs.
	p.ClientStart, p.ClientEnd, p.ClientWhyNot = goruntime.CallsAndExits(f, funcs, rtFunc, pconnRT)
	return p, nil
}

// ErrNoServer means the program has no net/http server: nothing to trace.
var ErrNoServer = errors.New("no net/http server in the program")

// Attach places the uprobes in the running Go process p: net/http's and
// grpc's, whose requests of at least slow become events. The returned
// limits say what is off for it (the client probes, say); an error
// means none is attached (HTTPLimit says it as a limit).
func (o *Objects) Attach(p *goruntime.Process, slow time.Duration) (limits []string, err error) {
	f, err := p.OpenExe()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ex, err := link.OpenExecutable(p.ExePath())
	if err != nil {
		return nil, err
	}
	glinks, glimits, grpcServer, grpcClient, err := o.attachGRPC(p, f, ex, slow)
	if err != nil {
		return nil, err
	}
	links, limits, err := o.attachHTTP(p, f, ex, slow, grpcClient)
	if err != nil {
		if glinks == nil {
			o.detachGRPC(p.PID)
			return glimits, err
		}
		limits = []string{HTTPLimit(err)}
	}
	o.mu.Lock()
	o.links[p.PID] = append(links, glinks...)
	if grpcServer {
		o.grpcServers[p.PID] = true
	}
	o.mu.Unlock()
	return append(limits, glimits...), nil
}

// HTTPLimit is the attached event's limit for a target that Attach
// could not give net/http probes for err.
func HTTPLimit(err error) string {
	if errors.Is(err, ErrNoServer) {
		return "no http_request: " + ErrNoServer.Error()
	}
	return fmt.Sprintf("no http_request or http_client_request: %v", err)
}

// attachHTTP places net/http's uprobes in p (its executable f, ex);
// grpcClient: the gRPC client probes are attached, so a request's gRPC
// calls are summed for its event.
func (o *Objects) attachHTTP(p *goruntime.Process, f *elf.File, ex *link.Executable, slow time.Duration, grpcClient bool) (links []link.Link, limits []string, err error) {
	pid, off := p.PID, p.Bin.Offsets
	if _, _, ok := p.Syms.Func(serveFunc); !ok {
		return nil, nil, ErrNoServer
	}
	for _, o := range []struct {
		name string
		off  uint16
	}{{"runtime.g.goid", off.GGoid}, {"Request.URL", off.HttpReqURL}, {"url.URL.Path", off.URLPath},
		{"response.req", off.HttpRespReq}, {"response.status", off.HttpRespStatus}, {"conn.remoteAddr", off.HttpConnRemoteAddr}} {
		if o.off == 0 {
			// net/http's offsets come from the version table (a
			// binary's DWARF is read for the runtime's structs only).
			return nil, nil, fmt.Errorf("%s: the offset of %s is not known: %s is not in gonetscope's version table (%s)",
				p.Bin.GoVersion, o.name, p.Bin.GoVersion, strings.Join(goruntime.TableVersions(), ", "))
		}
	}
	probes, err := FindProbes(f, p.Syms.Func)
	if err != nil {
		return nil, nil, err
	}
	if off.HttpReqPattern == 0 {
		limits = append(limits, fmt.Sprintf("http_request routes are paths with ids collapsed: %s has no Request.Pattern (Go 1.23+)", p.Bin.GoVersion))
	}
	if probes.ClientWhyNot == nil && (off.HttpPconnConn == 0 || off.HttpRespStatusCode == 0 || off.URLHost == 0) {
		probes.ClientWhyNot = errors.New("the offsets of persistConn.conn, Response.StatusCode or url.URL.Host are not known")
	}
	if probes.H2WhyNot == nil && (off.H2RwsReq == 0 || off.H2RwsStatus == 0 || off.H2RwsConn == 0 || off.H2ScConn == 0 || off.H2ScRaddr == 0) {
		probes.H2WhyNot = errors.New("the offsets of net/http's HTTP/2 server structs are not known")
	}
	if probes.H2WhyNot == nil && off.H2ReqURL != 0 && (off.H2ReqURL <= off.H2ReqMethod || off.H2ReqContentLength <= off.H2ReqMethod) {
		probes.H2WhyNot = errors.New("its HTTP/2 server's request is laid out in a way gonetscope does not know")
	}
	if probes.H2WhyNot != nil {
		limits = append(limits, fmt.Sprintf("no http_request for HTTP/2: %v", probes.H2WhyNot))
		probes.H2Start, probes.H2End = nil, nil
	} else if off.H2ReqURL != 0 && off.HttpReqPattern != 0 {
		// The mux sets Pattern on the *http.Request that net/http
		// makes from the HTTP/2 server's own request, which the
		// probes do not see.
		limits = append(limits, fmt.Sprintf("HTTP/2 http_request routes are paths with ids collapsed: %s's HTTP/2 server request has no Pattern", p.Bin.GoVersion))
	}
	if probes.H2ClientWhyNot == nil && probes.ClientWhyNot == nil && off.H2CcTconn == 0 {
		probes.H2ClientWhyNot = errors.New("the offset of http2ClientConn.tconn is not known")
	}
	if probes.H2ClientWhyNot != nil && probes.ClientWhyNot == nil {
		limits = append(limits, fmt.Sprintf("no http_client_request for HTTP/2: %v", probes.H2ClientWhyNot))
		probes.H2ClientStart, probes.H2ClientEnd = nil, nil
	}
	if probes.ClientWhyNot != nil {
		limits = append(limits, fmt.Sprintf("no http_client_request and no downstream waits in http_request breakdowns: %v", probes.ClientWhyNot))
		probes.ClientStart, probes.ClientEnd = nil, nil
		probes.H2ClientStart, probes.H2ClientEnd = nil, nil
	}
	l := requestsReqLayout{
		SlowNs: uint64(slow.Nanoseconds()), G_goid: off.GGoid,
		ReqUrl: off.HttpReqURL, ReqPattern: off.HttpReqPattern, UrlPath: off.URLPath, UrlHost: off.URLHost,
		RespReq: off.HttpRespReq, RespStatus: off.HttpRespStatus, RespWritten: off.HttpRespWritten,
		ConnRwc: off.HttpConnRwc, ConnRaddr: off.HttpConnRemoteAddr, PconnConn: off.HttpPconnConn,
		FdSysfd: off.FDSysfd, ResponseStatusCode: off.HttpRespStatusCode, ReqContentLength: off.HttpReqContentLength,
		G_parentGoid: off.GParentGoid,
	}
	if probes.H2ClientStart != nil {
		l.H2ccTconn = off.H2CcTconn
	}
	if grpcClient {
		l.GrpcClient = 1
	}
	if probes.H2End != nil {
		l.H2rwsReq, l.H2rwsStatus, l.H2rwsWrote, l.H2rwsConn = off.H2RwsReq, off.H2RwsStatus, off.H2RwsWrote, off.H2RwsConn
		l.H2scConn, l.H2scRaddr = off.H2ScConn, off.H2ScRaddr
		if off.H2ReqURL != 0 { // Go 1.27: a ServerRequest at H2RwsReq, offsets from its Method
			l.H2reqMethod, l.H2reqUrl, l.H2reqContentLength = off.H2ReqMethod, off.H2ReqURL-off.H2ReqMethod, off.H2ReqContentLength-off.H2ReqMethod
		}
	}
	attach := func(dst *[]link.Link, prog string, sites []goruntime.Site) error {
		for _, s := range sites {
			up, err := ex.Uprobe("", o.coll.Programs[prog], &link.UprobeOptions{Address: s.FileOffset, PID: pid})
			if err != nil {
				return fmt.Errorf("attaching uprobe %s at %#x (%s): %w", prog, s.Addr, s.Inst, err)
			}
			*dst = append(*dst, up)
		}
		return nil
	}
	// The sock path's reads start requests on the TCP connections the
	// target accepts; one with a unix-socket listener (behind a proxy
	// on the same host, say) keeps the ServeHTTP uprobe.
	readStarts := o.readStarts
	if readStarts {
		if unix := proc.UnixListeners(pid); len(unix) > 0 {
			readStarts = false
			limits = append(limits, fmt.Sprintf("it listens on a unix socket (fd %d): its HTTP/1 requests start at a uprobe at ServeHTTP, a second trap per request (the sock path's reads start them on TCP connections only)", unix[0]))
		}
	}
	serverStarts := probes.ServerStart
	if readStarts {
		serverStarts = nil
	}
	// Where reads start a TCP server's requests, they end at their last
	// send: a trap per connection, none per request. server_end (ends)
	// stays only while connections it accepted before the attach are
	// open (warmUp).
	serverEnds := probes.ServerEnd
	var serveEntry []goruntime.Site
	var before map[uint64]int32
	var ends []link.Link
	if readStarts {
		// serve_send reads a response's fields in one read of its head.
		head := uint16(len(requestsRespHead{}.B))
		if off.HttpConnCurReq == 0 || off.HttpRespHandlerDone == 0 {
			limits = append(limits, fmt.Sprintf("http_request ends at a uprobe, a trap per request: the offsets of conn.curReq and response.handlerDone are not known for %s", p.Bin.GoVersion))
		} else if off.HttpRespReq+8 > head || off.HttpRespStatus+8 > head || off.HttpRespHandlerDone+4 > head {
			limits = append(limits, fmt.Sprintf("http_request ends at a uprobe, a trap per request: %s's http.response has its req, status or handlerDone past the %d bytes gonetscope reads at a send", p.Bin.GoVersion, head))
		} else {
			if err := o.attachSendEnds(); err != nil {
				return nil, nil, err
			}
			l.ConnCurReq, l.RespHandlerDone = off.HttpConnCurReq, off.HttpRespHandlerDone
			serveEntry, serverEnds = []goruntime.Site{probes.ServeEntry}, nil
			if before = proc.AcceptedInodes(pid); len(before) > 0 {
				if err := attach(&ends, requestsProgServerEnd, probes.ServerEnd); err != nil {
					bpfobj.CloseAll(ends)
					return nil, nil, err
				}
			}
		}
	}
	// The ends before the starts: a request is never opened without the
	// probe that closes it.
	for _, a := range []struct {
		prog  string
		sites []goruntime.Site
	}{
		{requestsProgServeConn, serveEntry},
		{requestsProgServerEnd, serverEnds}, {requestsProgH2End, probes.H2End},
		{requestsProgClientEnd, probes.ClientEnd}, {requestsProgClientEnd, probes.H2ClientEnd},
		{requestsProgServerStart, serverStarts}, {requestsProgServerStart, probes.H2Start},
		{requestsProgClientStart, probes.ClientStart}, {requestsProgH2ClientStart, probes.H2ClientStart},
	} {
		if err := attach(&links, a.prog, a.sites); err != nil {
			bpfobj.CloseAll(append(links, ends...))
			return nil, nil, err
		}
	}
	// The per-target entries; on a failure none stays (deleting one
	// not put yet is no harm).
	type entry struct {
		m string
		v any
	}
	entries := []entry{{requestsMapReqLayouts, &l}, {requestsMapReqParentOff, off.GParentGoid}}
	if readStarts {
		entries = append(entries, entry{requestsMapReqReadStarts, uint8(1)})
	}
	for _, e := range entries {
		if err := o.coll.Maps[e.m].Put(uint32(pid), e.v); err != nil {
			o.deleteTarget(uint32(pid))
			bpfobj.CloseAll(append(links, ends...))
			return nil, nil, err
		}
	}
	if ends != nil {
		o.warmUp(pid, before, ends)
	}
	return links, limits, nil
}

// attachSendEnds attaches the programs that see sends and receives, and
// serve_close (global programs; the first two filter by PID), once.
func (o *Objects) attachSendEnds() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sendLinks != nil {
		return nil
	}
	var links []link.Link
	for _, prog := range o.sendProgs {
		l, err := link.AttachTracing(link.TracingOptions{Program: o.coll.Programs[prog]})
		if err != nil {
			bpfobj.CloseAll(links)
			return fmt.Errorf("attaching %s: %w", prog, err)
		}
		links = append(links, l)
	}
	o.sendLinks = links
	return nil
}

// warmUpEvery is how often warmUp looks at the connections.
const warmUpEvery = time.Second

// warmUp keeps server_end's links (ends) in pid while a TCP connection it
// had accepted before the attach (before, by inode) is open and not yet
// noted in served_conns: serve_conn never ran for those, so their
// requests end at server_end, which notes each connection at its first
// request's end (requests.bpf.c). Then it detaches them: from there on
// the process pays no trap per request.
func (o *Objects) warmUp(pid int, before map[uint64]int32, ends []link.Link) {
	stop := make(chan struct{})
	o.mu.Lock()
	o.warm[pid] = warm{links: ends, stop: stop}
	o.mu.Unlock()
	go func() {
		t := time.NewTicker(warmUpEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if o.pendingBefore(pid, before) > 0 {
				continue
			}
			o.mu.Lock()
			if w, ok := o.warm[pid]; ok && w.stop == stop {
				delete(o.warm, pid)
				bpfobj.CloseAll(w.links)
			}
			o.mu.Unlock()
			return
		}
	}()
}

// pendingBefore counts the connections of before that are still open and
// not noted in served_conns; it drops the closed and noted ones.
func (o *Objects) pendingBefore(pid int, before map[uint64]int32) int {
	open := proc.AcceptedInodes(pid)
	noted := NotedConns(o.coll.Maps[requestsMapServedConns], pid)
	maps.DeleteFunc(before, func(ino uint64, _ int32) bool {
		_, isOpen := open[ino]
		return !isOpen || noted[ino]
	})
	return len(before)
}

// NotedConns are the socket inodes of pid's connections in m (the
// served_conns map): the ones whose requests end at a send.
func NotedConns(m *ebpf.Map, pid int) map[uint64]bool {
	noted := map[uint64]bool{}
	var (
		k uint64
		v requestsServedConn
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v.Pid == uint32(pid) {
			noted[v.Ino] = true
		}
	}
	return noted
}

// Detach removes pid's uprobes and what the kernel keeps for it.
func (o *Objects) Detach(pid int) {
	o.mu.Lock()
	links, ok := o.links[pid]
	delete(o.links, pid)
	delete(o.grpcServers, pid)
	w, warming := o.warm[pid]
	delete(o.warm, pid)
	o.mu.Unlock()
	if warming {
		close(w.stop)
		bpfobj.CloseAll(w.links)
	}
	if !ok {
		return
	}
	o.deleteTarget(uint32(pid))
	bpfobj.CloseAll(links)
	o.detachGRPC(pid)
	bpfobj.DeleteWhere[requestsReqKey, requestsReqState](o.coll.Maps[requestsMapReqActive],
		func(k *requestsReqKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[requestsReqFdKey, requestsReqFd](o.coll.Maps[requestsMapReqFds],
		func(k *requestsReqFdKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[requestsReqKey, requestsClientState](o.coll.Maps[requestsMapClientActive],
		func(k *requestsReqKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteEntriesWhere(o.coll.Maps[requestsMapServedConns],
		func(_ *uint64, v *requestsServedConn) bool { return v.Pid == uint32(pid) })
}

// deleteTarget removes pid's per-target entries: its layout, its
// goroutines' parent offset and its read starts.
func (o *Objects) deleteTarget(pid uint32) {
	for _, m := range []string{requestsMapReqLayouts, requestsMapReqParentOff, requestsMapReqReadStarts} {
		o.coll.Maps[m].Delete(pid)
	}
}

// Attached says whether pid has the probes.
func (o *Objects) Attached(pid int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.links[pid]
	return ok
}

// ServesGRPC says whether pid has the gRPC server probes.
func (o *Objects) ServesGRPC(pid int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.grpcServers[pid]
}

// Lost counts the events the BPF side could not submit, by event name.
func (o *Objects) Lost() (map[string]uint64, error) {
	return bpfobj.LostCounts(o.coll.Maps[requestsMapLost], eventNames)
}

// Counts are the kernel side's counters: requests not in a histogram
// because the map was full, and ends whose start was not seen (requests
// begun before the attach).
type Counts struct {
	HistFull, NoStart, ClientNoStart uint64
	// GRPCNoStart: gRPC statuses written for a server call whose start
	// was not seen (begun before the attach, or a stream grpc's transport
	// refused before a handler).
	GRPCNoStart uint64
	// EndUnseen: HTTP/1 requests whose end was not seen where requests
	// end at a send: the handler sent its whole response itself, and
	// the connection closed before its next read.
	EndUnseen uint64
	// ConnUnnoted: HTTP/1 connections (not requests) whose requests go
	// unseen where requests end at a send: served_conns was full.
	ConnUnnoted uint64
	// GRPCClientNoStart: gRPC client calls and streams that ended, begun
	// before the attach.
	GRPCClientNoStart uint64
}

// Counts reads the counters.
func (o *Objects) Counts() (Counts, error) {
	var c Counts
	for i, dst := range []*uint64{&c.HistFull, &c.NoStart, &c.ClientNoStart, &c.GRPCNoStart, &c.EndUnseen, &c.ConnUnnoted, &c.GRPCClientNoStart} {
		n, err := bpfobj.SumPerCPU(o.coll.Maps[requestsMapReqCounts], uint32(i))
		if err != nil {
			return c, err
		}
		*dst = n
	}
	return c, nil
}

var eventNames = map[requestsReqEventType]string{
	requestsReqEventTypeEVENT_HTTP_REQUEST:        "http_request",
	requestsReqEventTypeEVENT_HTTP_CLIENT_REQUEST: "http_client_request",
	requestsReqEventTypeEVENT_GRPC_REQUEST:        "grpc_request",
	requestsReqEventTypeEVENT_GRPC_CLIENT_REQUEST: "grpc_client_request",
}

// Route flags (struct req_hist_key).
const (
	flagPattern   = 1
	flagTruncated = 2
	flagH2        = 4
)

// Route is the http.route of a request: the mux pattern without its
// method and host ("GET example.com/items/{id}" -> "/items/{id}"), or the
// collapsed path; "…" marks one cut at the kernel's 63 bytes.
func Route(raw string, flags uint8) string {
	if flags&flagPattern != 0 {
		if m, rest, ok := strings.Cut(raw, " "); ok && m != "" && !strings.Contains(m, "/") {
			raw = strings.TrimLeft(rest, " \t")
		}
		if i := strings.IndexByte(raw, '/'); i > 0 {
			raw = raw[i:]
		}
	}
	if flags&flagTruncated != 0 {
		raw += "…"
	}
	return raw
}

// Method is an HTTP method as OpenTelemetry's http.request.method has it:
// a known one, or _OTHER (which bounds the label).
func Method(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return m
	}
	return "_OTHER"
}

// Decode turns a record of the ring buffer into an event.
func Decode(raw []byte, clock bpfobj.Clock) (event.Event, error) {
	h, err := bpfobj.View[bpfobj.EventHeader](raw)
	if err != nil {
		return nil, err
	}
	switch requestsReqEventType(h.Type) {
	case requestsReqEventTypeEVENT_HTTP_REQUEST:
		r, err := bpfobj.View[requestsHttpRequestEvent](raw)
		if err != nil {
			return nil, err
		}
		return decodeRequest(r, h.Header("http_request", clock)), nil
	case requestsReqEventTypeEVENT_HTTP_CLIENT_REQUEST:
		r, err := bpfobj.View[requestsHttpClientRequestEvent](raw)
		if err != nil {
			return nil, err
		}
		return &event.HTTPClientRequest{
			Header:     h.Header("http_client_request", clock),
			Method:     bpfobj.CString(r.Method[:]),
			Host:       bpfobj.CString(r.Host[:]),
			Status:     int(r.Status),
			DurationNs: r.DurationNs,
			FD:         r.Fd,
			Addrs:      bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport),
		}, nil
	case requestsReqEventTypeEVENT_GRPC_REQUEST, requestsReqEventTypeEVENT_GRPC_CLIENT_REQUEST:
		return decodeGRPC(raw, requestsReqEventType(h.Type), h, clock)
	}
	return nil, fmt.Errorf("requests: unknown event type %d", h.Type)
}

func decodeRequest(r *requestsHttpRequestEvent, hdr event.Header) *event.HTTPRequest {
	ev := &event.HTTPRequest{
		Header:     hdr,
		Method:     bpfobj.CString(r.Method[:]),
		Route:      Route(bpfobj.CString(r.Route[:]), r.Flags),
		RouteFrom:  "path",
		Path:       bpfobj.CString(r.Path[:]),
		Status:     int(r.Status),
		Written:    r.Written,
		RequestLen: r.ContentLength,
		DurationNs: r.DurationNs,
		FD:         -1,
	}
	if r.Flags&flagPattern != 0 {
		ev.RouteFrom = "pattern"
	}
	ev.Protocol = "HTTP/1.1"
	if r.Flags&flagH2 != 0 {
		ev.Protocol = "HTTP/2"
	}
	ap, err := netip.ParseAddrPort(bpfobj.CString(r.Raddr[:]))
	if err == nil {
		ev.RemoteAddr, ev.RemotePort = ap.Addr().Unmap().String(), ap.Port()
	}
	// The fd read through conn.rwc counts only if its socket's peer is
	// the connection's remote address (a TLS connection's rwc leads
	// elsewhere).
	conn := bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport)
	if err == nil && conn.Remote.IsValid() && conn.Remote == ap.Addr().Unmap() && conn.RemotePort == ap.Port() {
		ev.FD = r.Fd
		ev.TCP = &event.TCPInfo{SrttUs: r.Tcp.SrttUs, Retrans: r.Tcp.TotalRetrans}
	}
	ev.Breakdown = breakdown(&r.St, r.SlotAddrs, r.SlotTcp, r.DurationNs, ev.FD)
	grpcCallsInto(&ev.Breakdown, &r.Grpc)
	return ev
}

// slotTCP is the TCP state of a request's connections in its event.
type slotTCP = [4]struct {
	_            structs.HostLayout
	SrttUs       uint32
	TotalRetrans uint32
}

// breakdown is where a request of duration dur went, from its
// accumulator st (bpf/requests.h) and its connections' endpoints and TCP
// state; ownFD is the request's own connection (-1 unknown).
func breakdown(st *requestsReqState, addrs [4]requestsAddrs, tcp slotTCP, dur uint64, ownFD int32) event.Breakdown {
	var b event.Breakdown
	b.NetworkNs, b.SchedNs, b.Waits, b.Unslotted, b.ConnectNs = st.IoNs, st.SchedNs, st.Waits, st.Unslotted, st.ConnectNs
	if dur > st.IoNs+st.SchedNs {
		b.OtherNs = dur - st.IoNs - st.SchedNs
	}
	for i, s := range st.Slot {
		if s.Fd < 0 {
			continue
		}
		a := addrs[i]
		c := event.BreakdownConn{
			FD: s.Fd, Role: "downstream",
			Addrs:    bpfobj.Addrs(a.Family, a.Saddr, a.Daddr, a.Sport, a.Dport),
			IoWaitNs: s.IoNs, SchedDelayNs: s.SchedNs, Waits: uint32(s.Waits),
			ClientCalls: uint32(s.ClientCalls), ClientNs: s.ClientNs,
		}
		if c.Addrs.Remote.IsValid() {
			c.TCP = &event.TCPInfo{SrttUs: tcp[i].SrttUs, Retrans: tcp[i].TotalRetrans}
		}
		if s.Fd == ownFD && s.ViaClient == 0 {
			c.Role = "client"
		}
		b.Conns = append(b.Conns, c)
	}
	return b
}

// Hist is one request-duration histogram: a target's server requests of
// one method, route and status, or its client requests of one method,
// host and status. Buckets follow Bounds.
type Hist struct {
	PID    uint32
	Client bool
	Method string
	// Route is the server's http.route, or the client's host.
	Route   string
	Status  int
	Count   uint64
	SumNs   uint64
	Buckets []uint64 // len(Bounds)+1, the last +Inf; not cumulative
}

// Bounds are the buckets' upper bounds in seconds: OpenTelemetry's
// defaults for http.server.request.duration.
var Bounds = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// Hists reads the histograms; entries of PIDs keep refuses are deleted.
func (o *Objects) Hists(keep func(pid uint32) bool) ([]Hist, error) {
	return bpfobj.ReadHists(o.coll.Maps[requestsMapReqHists], func(k *requestsReqHistKey) uint32 { return k.Pid }, keep,
		func(k *requestsReqHistKey, v *requestsReqHist) Hist {
			route := Route(bpfobj.CString(k.Route[:]), k.Flags)
			return Hist{PID: k.Pid, Client: k.Client != 0, Method: Method(bpfobj.CString(k.Method[:])), Route: route,
				Status: int(k.Status), Count: v.Count, SumNs: v.SumNs, Buckets: append([]uint64(nil), v.Buckets[:]...)}
		})
}

// Percentile finds the bucket of buckets (counts per Bounds, +Inf last)
// holding the q-quantile (nearest rank): the value lies in (gt, le], in
// ns; le is 0 for the +Inf bucket.
func Percentile(buckets []uint64, q float64) (gt, le uint64) {
	var total uint64
	for _, n := range buckets {
		total += n
	}
	if total == 0 {
		return 0, 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var cum uint64
	for i, n := range buckets {
		cum += n
		if cum < rank {
			continue
		}
		if i > 0 {
			gt = uint64(Bounds[i-1] * 1e9)
		}
		if i < len(Bounds) {
			le = uint64(Bounds[i] * 1e9)
		}
		return gt, le
	}
	return uint64(Bounds[len(Bounds)-1] * 1e9), 0
}

// StatusClass is "2xx" for 200..299, and so on; "failed" for 0.
func StatusClass(status int) string {
	if status <= 0 {
		return "failed"
	}
	return fmt.Sprintf("%dxx", status/100)
}
