// httptarget is a net/http server for the request-tracing tests: a
// ServeMux with patterns, one handler that calls a downstream HTTP server
// (the test's, deliberately slow). Every response says which goroutine
// served it and on which fd, in the headers X-Goid and X-Fd, and the
// retransmissions the kernel had counted on that connection as the handler
// ran, in X-Retrans, so the test can check what gonetscope reports against
// what the target knows.
//
// It prints {"op":"listening","addr":"127.0.0.1:PORT"} once it serves.
//
//	GET  /items/{id}        200; ?downstream=1 first GETs -downstream,
//	                        ?fanout=N from N goroutines at once;
//	                        ?flush=1 sends the whole response (its
//	                        Content-Length set) before the handler returns
//	POST /fail              500
//	GET  /plain/...         a handler registered without a method or
//	                        wildcard ("/plain/"): 200
//	anything else           404 from the mux
//
// The routes are a ServeMux's, unless the program is built with a file
// that sets router to another (TestHTTPChi: testdata/chi/chirouter.go, a
// chi router).
//
// -tls serves HTTPS (HTTP/1.1 only, unless -h2) with a self-signed
// certificate made at start; -h2c serves HTTP/2 without TLS too (Go 1.24+). -burn N starts N goroutines that spin forever: with GOMAXPROCS=1 the
// handlers and net/http's own goroutines wait for the scheduler.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

type fdKey struct{}

// spun keeps the burners' loops from being optimized away.
var spun atomic.Int64

// goid is the calling goroutine's id, from its stack header.
func goid() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, _ := strconv.ParseInt(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	return id
}

// connFD is the fd of a server connection.
func connFD(c net.Conn) int {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// whoami puts the serving goroutine, the connection's fd and its
// retransmissions so far in the headers.
func whoami(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Goid", fmt.Sprint(goid()))
	fd, ok := r.Context().Value(fdKey{}).(int)
	if !ok {
		fd = -1
	}
	w.Header().Set("X-Fd", fmt.Sprint(fd))
	w.Header().Set("X-Retrans", fmt.Sprint(retrans(fd)))
}

// retrans is the kernel's count of retransmissions on TCP connection fd
// (TCP_INFO's tcpi_total_retrans), or -1.
func retrans(fd int) int64 {
	var info syscall.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	if _, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
		return -1
	}
	return int64(info.Total_retrans)
}

// unencryptedHTTP2 makes srv serve HTTP/2 without TLS (h2c.go); nil
// before Go 1.24.
var unencryptedHTTP2 func(srv *http.Server)

// router serves items, fail and plain on the routes above, and answers
// anything else 404 with whoami's headers too.
var router = func(items, fail, plain http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", items)
	mux.HandleFunc("POST /fail", fail)
	mux.HandleFunc("/plain/", plain)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, h := mux.Handler(r); h == "" {
			whoami(w, r) // the 404s say who served them too
		}
		mux.ServeHTTP(w, r)
	})
}

func main() {
	downstream := flag.String("downstream", "", "URL the ?downstream=1 requests GET first")
	burn := flag.Int("burn", 0, "goroutines that spin forever")
	useTLS := flag.Bool("tls", false, "serve HTTPS (HTTP/1.1) with a self-signed certificate")
	h2 := flag.Bool("h2", false, "with -tls: offer HTTP/2 too")
	h2c := flag.Bool("h2c", false, "without -tls: serve HTTP/2 with prior knowledge too (Go 1.24+)")
	insecure := flag.Bool("insecure", false, "accept any certificate from an https -downstream (HTTP/1.1)")
	insecureH2 := flag.Bool("insecure-h2", false, "as -insecure, over HTTP/2")
	unixSock := flag.String("unix", "", "also serve HTTP/1.1 on a unix socket at this path")
	flag.Parse()
	for range *burn {
		go func() {
			for n := 0; ; n++ {
				spun.Add(1)
			}
		}()
	}
	client := &http.Client{Transport: &http.Transport{}}
	if *insecure || *insecureH2 {
		// A TLS config of its own keeps the Transport on HTTP/1.1,
		// unless forced.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: *insecureH2}
	}
	items := func(w http.ResponseWriter, r *http.Request) {
		whoami(w, r)
		// ?fanout=N: N goroutines GET the downstream at once.
		if n, _ := strconv.Atoi(r.URL.Query().Get("fanout")); n > 0 {
			var wg sync.WaitGroup
			for range n {
				wg.Add(1) // not wg.Go: the target builds with go1.22 too
				go func() {
					defer wg.Done()
					if resp, err := client.Get(*downstream); err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
		}
		if r.URL.Query().Get("downstream") == "1" {
			resp, err := client.Get(*downstream)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		body := fmt.Sprintf("item %s\n", strings.TrimPrefix(r.URL.Path, "/items/"))
		if r.URL.Query().Get("flush") == "1" {
			// Nothing is left for net/http to send once the
			// handler returns.
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			io.WriteString(w, body)
			w.(http.Flusher).Flush()
			return
		}
		io.WriteString(w, body)
	}
	fail := func(w http.ResponseWriter, r *http.Request) {
		whoami(w, r)
		io.Copy(io.Discard, r.Body)
		http.Error(w, "failed", http.StatusInternalServerError)
	}
	plain := func(w http.ResponseWriter, r *http.Request) {
		whoami(w, r)
		io.WriteString(w, "plain\n")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv := &http.Server{
		Handler: router(items, fail, plain),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, fdKey{}, connFD(c))
		},
	}
	if *h2c {
		if unencryptedHTTP2 == nil {
			fmt.Fprintln(os.Stderr, "-h2c needs Go 1.24+")
			os.Exit(2)
		}
		unencryptedHTTP2(srv)
	}
	if *useTLS {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned()}, NextProtos: []string{"http/1.1"}}
		if *h2 {
			srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
		}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	listening := map[string]string{"op": "listening", "addr": ln.Addr().String()}
	if *unixSock != "" {
		uln, err := net.Listen("unix", *unixSock)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if rc, err := uln.(*net.UnixListener).SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { listening["unix_fd"] = fmt.Sprint(fd) })
		}
		go srv.Serve(uln)
	}
	json.NewEncoder(os.Stdout).Encode(listening)
	srv.Serve(ln)
}

// selfSigned makes a certificate for 127.0.0.1.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
