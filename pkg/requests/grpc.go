package requests

import (
	"debug/elf"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// gRPC flags (bpf/requests.bpf.c GRPC_*).
const (
	grpcTruncated = 1
	grpcBreakdown = 2
	grpcNoCode    = 4
)

// attachGRPC places the gRPC probes in p, if its program links grpc
// (google.golang.org/grpc): its links, and what is off for it. No links
// and no limits: the program has no grpc. servers, clients: the server
// and client probes are attached.
func (o *Objects) attachGRPC(p *goruntime.Process, f *elf.File, ex *link.Executable, slow time.Duration) (links []link.Link, limits []string, servers, clients bool, err error) {
	funcs := p.Syms.Func
	server, client := goruntime.HasGRPC(funcs)
	if !server && !client {
		return nil, nil, false, false, nil
	}
	probes, lay, err := goruntime.FindGRPC(f, funcs)
	if err == nil && p.Bin.Offsets.GGoid == 0 {
		err = fmt.Errorf("the offset of runtime.g.goid is not known")
	}
	if err != nil {
		return nil, []string{fmt.Sprintf("no grpc_request or grpc_client_request: %v", err)}, false, false, nil
	}
	if !server {
		probes.ServerWhyNot = nil
	} else if probes.ServerWhyNot != nil {
		limits = append(limits, fmt.Sprintf("no grpc_request: %v", probes.ServerWhyNot))
	}
	if !client {
		probes.ClientWhyNot = nil
	} else if probes.ClientWhyNot != nil {
		limits = append(limits, fmt.Sprintf("no grpc_client_request: %v", probes.ClientWhyNot))
	}
	if server && probes.ServerWhyNot == nil && (lay.ServerConn == 0 || p.Bin.Offsets.FDSysfd == 0) {
		limits = append(limits, "grpc_request has no fd, raddr or rport: the layout of grpc's http2Server.conn (or of net's netFD) is not known")
	}
	if client && probes.ClientWhyNot == nil && lay.ConnTarget == 0 {
		limits = append(limits, "grpc_client_request has no target: the program has no (*grpc.ClientConn).Target to read its layout from")
	}
	// The ends before the starts: a call is never opened without the
	// probe that closes it.
	type probe struct {
		prog string
		site goruntime.Site
	}
	var sites []probe
	if server && probes.ServerWhyNot == nil {
		sites = append(sites, probe{requestsProgGrpcServerEnd, probes.ServerEnd}, probe{requestsProgGrpcServerStart, probes.ServerStart})
	}
	if client && probes.ClientWhyNot == nil {
		sites = append(sites, probe{requestsProgGrpcClientEnd, probes.ClientEnd}, probe{requestsProgGrpcClientBind, probes.ClientBind},
			probe{requestsProgGrpcClientStart, probes.ClientStart})
	}
	if len(sites) == 0 {
		return nil, limits, false, false, nil
	}
	for _, s := range sites {
		up, err := ex.Uprobe("", o.coll.Programs[s.prog], &link.UprobeOptions{Address: s.site.FileOffset, PID: p.PID})
		if err != nil {
			bpfobj.CloseAll(links)
			return nil, nil, false, false, fmt.Errorf("attaching uprobe %s at %#x (%s): %w", s.prog, s.site.Addr, s.site.Inst, err)
		}
		links = append(links, up)
	}
	l := requestsGrpcLayout{
		SlowNs: uint64(slow.Nanoseconds()), G_goid: p.Bin.Offsets.GGoid,
		ErrorItab: lay.ErrorItab + p.Bias, Eof: lay.EOF + p.Bias,
		StreamMethod: lay.StreamMethod, StatusProto: lay.StatusProto, ProtoCode: lay.ProtoCode,
		ErrorStatus: lay.ErrorStatus, CcTarget: lay.ConnTarget, ServerConn: lay.ServerConn, FdSysfd: p.Bin.Offsets.FDSysfd,
		G_parentGoid: p.Bin.Offsets.GParentGoid,
	}
	if err := o.coll.Maps[requestsMapGrpcLayouts].Put(uint32(p.PID), &l); err != nil {
		bpfobj.CloseAll(links)
		return nil, nil, false, false, err
	}
	return links, limits, server && probes.ServerWhyNot == nil, client && probes.ClientWhyNot == nil, nil
}

// detachGRPC removes what the kernel keeps of pid's gRPC calls.
func (o *Objects) detachGRPC(pid int) {
	o.coll.Maps[requestsMapGrpcLayouts].Delete(uint32(pid))
	bpfobj.DeleteWhere[requestsReqKey, requestsGrpcServerState](o.coll.Maps[requestsMapGrpcServerActive],
		func(k *requestsReqKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[requestsReqKey, requestsGrpcClientState](o.coll.Maps[requestsMapGrpcClientActive],
		func(k *requestsReqKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[requestsGrpcStreamKey, requestsGrpcClientState](o.coll.Maps[requestsMapGrpcClientStreams],
		func(k *requestsGrpcStreamKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[requestsReqKey, requestsReqGrpcCalls](o.coll.Maps[requestsMapHttpGrpcCalls],
		func(k *requestsReqKey) bool { return k.Pid == uint32(pid) })
}

// grpcCodes are the gRPC status codes' names (as the gRPC spec and
// OpenTelemetry's rpc.response.status_code spell them).
var grpcCodes = []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// GRPCCodeName is the name of gRPC status code c; "" when it could not
// be read (c < 0), the number for a code gRPC does not define.
func GRPCCodeName(c int) string {
	switch {
	case c < 0:
		return ""
	case c < len(grpcCodes):
		return grpcCodes[c]
	}
	return fmt.Sprint(c)
}

// SplitGRPCMethod splits a full method name ("/pkg.Service/Method") into
// its service and method.
func SplitGRPCMethod(full string) (service, method string) {
	s := strings.TrimPrefix(full, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

// GRPCServerAddress is the host and port of a ClientConn's dial target
// ("dns:///host:port", "host:port", "unix:///path"); port "" when it has
// none.
func GRPCServerAddress(target string) (host, port string) {
	if scheme, rest, ok := strings.Cut(target, "://"); ok {
		// scheme://authority/endpoint; a unix socket's is its path.
		target = rest[strings.IndexByte(rest, '/')+1:]
		if scheme == "unix" {
			return "/" + target, ""
		}
	}
	if h, p, err := net.SplitHostPort(target); err == nil {
		return h, p
	}
	return target, ""
}

func decodeGRPC(raw []byte, typ requestsReqEventType, h *bpfobj.EventHeader, clock bpfobj.Clock) (event.Event, error) {
	if typ == requestsReqEventTypeEVENT_GRPC_CLIENT_REQUEST {
		r, err := bpfobj.View[requestsGrpcClientRequestEvent](raw)
		if err != nil {
			return nil, err
		}
		ev := &event.GRPCClientRequest{Header: h.Header("grpc_client_request", clock), DurationNs: r.DurationNs,
			Code: int(r.Code), Target: bpfobj.CString(r.Target[:]), Truncated: r.Flags&grpcTruncated != 0}
		ev.Service, ev.Method = SplitGRPCMethod(bpfobj.CString(r.Method[:]))
		ev.CodeName = GRPCCodeName(ev.Code)
		return ev, nil
	}
	r, err := bpfobj.View[requestsGrpcRequestEvent](raw)
	if err != nil {
		return nil, err
	}
	ev := &event.GRPCRequest{Header: h.Header("grpc_request", clock), DurationNs: r.DurationNs, Code: int(r.Code),
		Truncated: r.Flags&grpcTruncated != 0, FD: -1}
	ev.Service, ev.Method = SplitGRPCMethod(bpfobj.CString(r.Method[:]))
	ev.CodeName = GRPCCodeName(ev.Code)
	if conn := bpfobj.Addrs(r.Addrs.Family, r.Addrs.Saddr, r.Addrs.Daddr, r.Addrs.Sport, r.Addrs.Dport); r.Fd >= 0 && conn.Remote.IsValid() {
		ev.FD, ev.Addrs = r.Fd, conn
		ev.TCP = &event.TCPInfo{SrttUs: r.Tcp.SrttUs, Retrans: r.Tcp.TotalRetrans}
	}
	if r.Flags&grpcBreakdown != 0 {
		b := breakdown(&r.St, r.SlotAddrs, r.SlotTcp, r.DurationNs, ev.FD)
		ev.Breakdown = &b
		grpcCallsInto(&b, &r.Calls)
	}
	return ev, nil
}

// GRPCHist is one call-duration histogram: a target's server calls of
// one method and code, or its client calls of one method, target and
// code. Buckets follow Bounds.
type GRPCHist struct {
	PID    uint32
	Client bool
	// Method is the full method, "/pkg.Service/Method" ("…" ends one cut
	// in the kernel).
	Method, Target string
	// Code is the gRPC status code, -1 when it could not be read.
	Code    int
	Count   uint64
	SumNs   uint64
	Buckets []uint64
}

// GRPCHists reads the gRPC histograms; entries of PIDs keep refuses are
// deleted.
func (o *Objects) GRPCHists(keep func(pid uint32) bool) ([]GRPCHist, error) {
	return bpfobj.ReadHists(o.coll.Maps[requestsMapGrpcHists], func(k *requestsGrpcHistKey) uint32 { return k.Pid }, keep,
		func(k *requestsGrpcHistKey, v *requestsReqHist) GRPCHist {
			h := GRPCHist{PID: k.Pid, Client: k.Client != 0, Method: bpfobj.CString(k.Method[:]), Target: bpfobj.CString(k.Target[:]),
				Code: int(k.Code), Count: v.Count, SumNs: v.SumNs, Buckets: append([]uint64(nil), v.Buckets[:]...)}
			if k.Flags&grpcNoCode != 0 {
				h.Code = -1
			}
			if k.Flags&grpcTruncated != 0 {
				h.Method += "…"
			}
			return h
		})
}

// grpcCallsInto adds a request's downstream gRPC calls to its breakdown.
func grpcCallsInto(b *event.Breakdown, c *requestsGrpcCalls) {
	if c.Count == 0 {
		return
	}
	b.GRPCCalls, b.GRPCNs = c.Count, c.Ns
	b.GRPCSlowest = &event.GRPCCall{Target: bpfobj.CString(c.SlowestTarget[:]), DurationNs: c.SlowestNs}
	b.GRPCSlowest.Service, b.GRPCSlowest.Method = SplitGRPCMethod(bpfobj.CString(c.SlowestMethod[:]))
}
