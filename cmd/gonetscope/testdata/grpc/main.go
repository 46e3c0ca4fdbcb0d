// grpctarget is a gRPC server (google.golang.org/grpc, a module of its own
// so that gonetscope's module does not depend on it) that is its own
// client: for each JSON line on stdin it calls one of its methods through
// a grpc.ClientConn to itself and prints what both ends saw, so a test can
// check gonetscope's grpc_request and grpc_client_request against what
// the target says about itself.
//
// The service is written by hand (no protoc): a grpc.ServiceDesc whose
// messages are JSON, through a codec registered as content-subtype "json".
// A line with "stream" set makes a server-streaming call of Watch
// instead (see request). It also serves HTTP: GET /call?sleep_ms=N makes one such call
// downstream (a gRPC call made by a net/http handler, as grpc-gateway's
// are) and answers with its goroutine.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// jsonCodec marshals the messages as JSON.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (jsonCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Name() string                    { return "json" }

// request is what a call asks the handler to do.
type request struct {
	// SleepMs: the handler sleeps this long; Code: then it returns this
	// gRPC status code (0: OK); Downstream: first it calls Call on the
	// downstream target with this request.
	SleepMs    int      `json:"sleep_ms"`
	Code       int      `json:"code"`
	Downstream *request `json:"downstream,omitempty"`
	// Fanout: the downstream call is made on a goroutine the handler
	// starts and waits for.
	Fanout bool `json:"fanout,omitempty"`
	// ID is echoed in what the caller prints; Background: the caller
	// makes the call on a goroutine of its own and reads the next line
	// at once.
	ID         int  `json:"id,omitempty"`
	Background bool `json:"background,omitempty"`
	// Hold: the handler waits for a line {"release": true} first.
	Hold    bool `json:"hold,omitempty"`
	Release bool `json:"release,omitempty"`
	// Stream: the call is Watch, whose handler sends this many
	// messages, SleepMs apart, then returns Code. CancelAfter: the
	// caller cancels the call after it received that many. Readers: the
	// caller opens this many such streams one after another (the j-th's
	// messages (j+1)*SleepMs apart, its code Code+j, its id ID*10+j), and
	// a goroutine of its own reads each to its end.
	Stream      int `json:"stream,omitempty"`
	CancelAfter int `json:"cancel_after,omitempty"`
	Readers     int `json:"readers,omitempty"`
}

// released is closed by the line {"release": true}.
var released = make(chan struct{})

// reply is what the handler says about itself.
type reply struct {
	Goid int64 `json:"goid"`
	// FanoutGoid: the goroutine that made the downstream call (Fanout).
	FanoutGoid int64 `json:"fanout_goid"`
	FD         int   `json:"fd"`
	HandlerNs  int64 `json:"handler_ns"`
	// Retrans: the retransmissions the kernel had counted on the
	// connection when the handler returned (TCP_INFO), or -1.
	Retrans int64 `json:"retrans"`
}

// retrans is the kernel's count of retransmissions on TCP connection fd
// (tcpi_total_retrans), or -1.
func retrans(fd int) int64 {
	var info syscall.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	if _, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
		return -1
	}
	return int64(info.Total_retrans)
}

type echoServer interface {
	Call(context.Context, *request) (*reply, error)
}

type server struct {
	fds        *fdListener
	downstream *grpc.ClientConn
}

func goid() int64 {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, _ := strconv.ParseInt(s[:strings.IndexByte(s, ' ')], 10, 64)
	return id
}

// Call serves a request; what it says about itself goes in the reply and,
// for an error too, in the trailer.
func (s *server) Call(ctx context.Context, r *request) (*reply, error) {
	start := time.Now()
	rep := &reply{Goid: goid(), FD: -1}
	if p, ok := peer.FromContext(ctx); ok {
		rep.FD = s.fds.fdOf(p.Addr.String())
	}
	defer func() {
		rep.Retrans = retrans(rep.FD)
		grpc.SetTrailer(ctx, metadata.Pairs("goid", strconv.FormatInt(rep.Goid, 10), "fd", strconv.Itoa(rep.FD),
			"handler-ns", strconv.FormatInt(rep.HandlerNs, 10), "fanout-goid", strconv.FormatInt(rep.FanoutGoid, 10),
			"retrans", strconv.FormatInt(rep.Retrans, 10)))
	}()
	if r.Hold {
		<-released
	}
	if r.Downstream != nil {
		down := func() error {
			var dr reply
			return s.downstream.Invoke(ctx, "/gonetscope.test.Echo/Call", r.Downstream, &dr, grpc.CallContentSubtype("json"))
		}
		if r.Fanout {
			done := make(chan error)
			go func() {
				rep.FanoutGoid = goid()
				done <- down()
			}()
			if err := <-done; err != nil {
				return nil, err
			}
		} else if err := down(); err != nil {
			return nil, err
		}
	}
	time.Sleep(time.Duration(r.SleepMs) * time.Millisecond)
	rep.HandlerNs = int64(time.Since(start))
	if r.Code != 0 {
		return nil, status.Error(codes.Code(r.Code), "asked for "+codes.Code(r.Code).String())
	}
	return rep, nil
}

// Watch serves a stream: the request, then r.Stream replies r.SleepMs
// apart; the trailer says what Call's does.
func (s *server) Watch(r *request, stream grpc.ServerStream) error {
	start := time.Now()
	ctx := stream.Context()
	rep := &reply{Goid: goid(), FD: -1}
	if p, ok := peer.FromContext(ctx); ok {
		rep.FD = s.fds.fdOf(p.Addr.String())
	}
	defer func() {
		rep.Retrans = retrans(rep.FD)
		stream.SetTrailer(metadata.Pairs("goid", strconv.FormatInt(rep.Goid, 10), "fd", strconv.Itoa(rep.FD),
			"handler-ns", strconv.FormatInt(rep.HandlerNs, 10), "retrans", strconv.FormatInt(rep.Retrans, 10)))
	}()
	for range r.Stream {
		select {
		case <-time.After(time.Duration(r.SleepMs) * time.Millisecond):
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		rep.HandlerNs = int64(time.Since(start))
		if err := stream.SendMsg(rep); err != nil {
			return err
		}
	}
	if r.Code != 0 {
		return status.Error(codes.Code(r.Code), "asked for "+codes.Code(r.Code).String())
	}
	return nil
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "gonetscope.test.Echo",
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var r request
			if err := dec(&r); err != nil {
				return nil, err
			}
			return srv.(echoServer).Call(ctx, &r)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			var r request
			if err := stream.RecvMsg(&r); err != nil {
				return err
			}
			return srv.(*server).Watch(&r, stream)
		},
	}},
}

// fdListener notes the fd of each accepted connection by its remote
// address.
type fdListener struct {
	net.Listener
	mu  sync.Mutex
	fds map[string]int
}

func (l *fdListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return nil, err
	}
	sc.Control(func(fd uintptr) {
		l.mu.Lock()
		l.fds[c.RemoteAddr().String()] = int(fd)
		l.mu.Unlock()
	})
	return c, nil
}

func (l *fdListener) fdOf(addr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fd, ok := l.fds[addr]; ok {
		return fd
	}
	return -1
}

func say(v map[string]any) {
	b, _ := json.Marshal(v)
	sayMu.Lock()
	defer sayMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func main() {
	downstream := flag.String("downstream", "", "address of the gRPC server Call's downstream calls go to (default: this one)")
	flag.Parse()
	encoding.RegisterCodec(jsonCodec{})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fl := &fdListener{Listener: ln, fds: map[string]int{}}
	srv := &server{fds: fl}
	gs := grpc.NewServer()
	gs.RegisterService(&serviceDesc, srv)
	go gs.Serve(fl)
	addr := ln.Addr().String()
	if *downstream == "" {
		*downstream = addr
	}
	if srv.downstream, err = grpc.NewClient(*downstream, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The client's own connection, whose local address the server sees.
	var local string
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp4", a)
			if err == nil {
				local = c.LocalAddr().String()
			}
			return c, err
		}))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go http.Serve(hl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("sleep_ms"))
		var rep reply
		err := srv.downstream.Invoke(r.Context(), "/gonetscope.test.Echo/Call", &request{SleepMs: ms}, &rep, grpc.CallContentSubtype("json"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Goid", strconv.FormatInt(goid(), 10))
	}))
	say(map[string]any{"op": "listening", "addr": addr, "target": cc.Target(), "http_addr": hl.Addr().String()})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if r.Release {
			close(released)
		} else if r.Stream > 0 {
			watch(cc, r, local)
		} else if r.Background {
			go call(cc, r, local)
		} else {
			call(cc, r, local)
		}
	}
}

var sayMu sync.Mutex

// call makes the call r asks for on cc (whose end is local) and says what
// both ends saw.
func call(cc *grpc.ClientConn, r request, local string) {
	var rep reply
	var trailer metadata.MD
	start := time.Now()
	err := cc.Invoke(context.Background(), "/gonetscope.test.Echo/Call", &r, &rep, grpc.CallContentSubtype("json"), grpc.Trailer(&trailer))
	took := time.Since(start)
	said := func(k string) int64 {
		v, _ := strconv.ParseInt(strings.Join(trailer.Get(k), ""), 10, 64)
		return v
	}
	st, _ := status.FromError(err)
	if err != nil && st.Code() == codes.Unknown {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	say(map[string]any{"op": "called", "id": r.ID, "method": "/gonetscope.test.Echo/Call", "code": int(st.Code()), "code_name": st.Code().String(),
		"client_ns": int64(took), "client_goid": goid(), "local": local, "server_goid": said("goid"), "server_fd": said("fd"), "handler_ns": said("handler-ns"),
		"fanout_goid": said("fanout-goid"), "server_retrans": said("retrans")})
}

const watchMethod = "/gonetscope.test.Echo/Watch"

// watch makes the streaming call r asks for on cc and says what both ends
// saw: with r.Readers, that many streams, opened by this goroutine and
// read to their ends by others.
func watch(cc *grpc.ClientConn, r request, local string) {
	if r.Readers == 0 {
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var trailer metadata.MD
		cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, watchMethod, grpc.CallContentSubtype("json"), grpc.Trailer(&trailer))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		readStream(cs, r, r.ID, start, goid(), cancel, &trailer, local)
		return
	}
	opener := goid()
	var wg sync.WaitGroup
	for j := range r.Readers {
		start := time.Now()
		trailer := new(metadata.MD)
		cs, err := cc.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, watchMethod,
			grpc.CallContentSubtype("json"), grpc.Trailer(trailer))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		rj := r
		rj.SleepMs, rj.Code = (j+1)*r.SleepMs, r.Code+j
		wg.Add(1)
		go func() {
			defer wg.Done()
			readStream(cs, rj, r.ID*10+j, start, opener, func() {}, trailer, local)
		}()
	}
	wg.Wait()
}

// readStream sends r on cs and reads its replies to the end (cancelling
// it after r.CancelAfter of them), then says what both ends saw: the
// stream was opened at start by goroutine opener.
func readStream(cs grpc.ClientStream, r request, id int, start time.Time, opener int64, cancel func(), trailer *metadata.MD, local string) {
	if err := cs.SendMsg(&r); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cs.CloseSend()
	got := 0
	var err error
	for {
		var rep reply
		if err = cs.RecvMsg(&rep); err != nil {
			break
		}
		if got++; got == r.CancelAfter {
			cancel()
		}
	}
	took := time.Since(start)
	st, _ := status.FromError(err)
	if err == io.EOF {
		st = status.New(codes.OK, "")
	}
	said := func(k string) int64 {
		v, _ := strconv.ParseInt(strings.Join(trailer.Get(k), ""), 10, 64)
		return v
	}
	say(map[string]any{"op": "called", "id": id, "method": watchMethod, "code": int(st.Code()), "code_name": st.Code().String(),
		"client_ns": int64(took), "client_goid": opener, "reader_goid": goid(), "local": local, "server_goid": said("goid"),
		"server_fd": said("fd"), "handler_ns": said("handler-ns"), "server_retrans": said("retrans"), "msgs": got})
}
