//go:build ignore

/* requests: net/http server and client requests of a traced Go process,
 * from uprobes in its binary, and where a slow server request's time went.
 * Loaded by pkg/requests (--requests).
 *
 * Uprobes in the target, each on an instruction the kernel emulates
 * rather than single-steps (a CALL, or the NOP or Jcc that follows one;
 * see kernel-facts); never uretprobes:
 *   server_start: in net/http.(*conn).serve, CALL serverHandler.ServeHTTP
 *                 (w *response in the third argument register, req in the
 *                 fourth): the request was read, the handler starts. On
 *                 the syscall path only: on the sock path netpoll.bpf.c
 *                 starts HTTP/1 requests at their first read (requests.h).
 *   server_end:   in net/http.(*conn).serve, CALL (*response).finishRequest
 *                 (w in the first): the handler returned. On the sock
 *                 path, a uprobe per connection at the entry of
 *                 (*conn).serve instead, and the request ends at its
 *                 last send (serve_send below).
 *   h2 start/end: the same start at the entry of the HTTP/2 server's
 *                 runHandler (the JBE of its stack check), on the stream's
 *                 handler goroutine; h2_end at the CALL handlerDone of
 *                 its deferred function.
 *   client_start: in net/http.(*Transport).roundTrip, CALL
 *                 (*persistConn).roundTrip (pc, treq): an HTTP/1 round trip
 *                 on connection pc starts.
 *   client_end:   the first emulated instruction after that call, before
 *                 anything writes the result registers (resp, err).
 *   h2_client_start: in net/http.(*http2Transport).RoundTripOpt, CALL
 *                 (*http2ClientConn).roundTrip (cc, req); client_end after it.
 * Every program looks up its target's layout (by PID) before it reads a
 * register or memory. A request is kept by its serving goroutine
 * (requests.h), which netpoll.bpf.c adds waits to; at its end every
 * request counts in the route's histogram, and one over the target's
 * slow threshold is sent as an event, with the waits.
 */

#include "gonetscope.h"
#include "requests.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Offsets into net/http's structs of one target, from its DWARF or the
 * version table (pkg/goruntime), and its threshold. */
struct req_layout {
	__u64 slow_ns; /* requests at least this long are sent as events */
	__u16 g_goid;
	__u16 req_url;     /* Request.URL (Method at 0) */
	__u16 req_pattern; /* Request.Pattern; 0: the Go version has none */
	__u16 url_path;
	__u16 url_host;
	__u16 resp_req;     /* response.req (conn at 0) */
	__u16 resp_status;
	__u16 resp_written;
	__u16 conn_rwc;
	__u16 conn_raddr;
	__u16 pconn_conn;
	__u16 fd_sysfd;    /* *net.TCPConn -> netFD -> poll.FD.Sysfd */
	__u16 response_status_code;
	/* HTTP/2 (net/http's bundled server): http2responseWriterState's
	 * req, status, wroteBytes, conn (http2responseWriter.rws is at 0),
	 * http2serverConn's conn and remoteAddrStr; 0: no HTTP/2 probes. */
	__u16 h2rws_req;
	__u16 h2rws_status;
	__u16 h2rws_wrote;
	__u16 h2rws_conn;
	__u16 h2sc_conn;
	__u16 h2sc_raddr;
	__u16 req_content_length; /* Request.ContentLength; 0 unknown */
	__u16 g_parent_goid;      /* runtime.g.parentGoid (Go 1.21+); 0 unknown */
	__u16 h2cc_tconn;         /* http2ClientConn.tconn; 0: no HTTP/2 client probes */
	__u16 grpc_client;        /* 1: the gRPC client probes are attached (http_grpc_calls) */
	/* Go 1.27's HTTP/2 server holds an internal ServerRequest by value at
	 * h2rws_req: its Method's offset there, and its URL's and
	 * ContentLength's from Method; 0: a *http.Request is at h2rws_req. */
	__u16 h2req_method;
	__u16 h2req_url;
	__u16 h2req_content_length;
	/* conn.curReq's *response and response.handlerDone: HTTP/1
	 * requests end at a send (serve_conn); 0: at server_end. */
	__u16 conn_cur_req;
	__u16 resp_handler_done;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32); /* tgid */
	__type(value, struct req_layout);
} req_layouts SEC(".maps");

#define METHOD_LEN 8
#define ROUTE_LEN 64
#define PATH_LEN 128
#define RADDR_LEN 48

/* OpenTelemetry's default bucket bounds for http.server.request.duration
 * (seconds): 5ms .. 10s, and +Inf. */
#define REQ_BUCKETS 15

struct req_hist_key {
	__u32 pid;
	__u16 status; /* 0: the client request failed (no response) */
	__u8 client;  /* 0: server request (route); 1: client request (host) */
	__u8 flags;   /* REQ_* */
	char method[METHOD_LEN];
	char route[ROUTE_LEN]; /* the pattern, the collapsed path, or the client's host */
};

/* route holds Request.Pattern as the mux set it; else the path. */
#define REQ_PATTERN 1
/* The path or pattern was longer than route. */
#define REQ_TRUNCATED 2
/* Served over HTTP/2. */
#define REQ_H2 4

struct req_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[REQ_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct req_hist_key);
	__type(value, struct req_hist);
} req_hists SEC(".maps");

/* [0]: requests not counted in a histogram because req_hists (or
 * grpc_hists) was full;
 * [1]: requests whose start was not seen (begun before the attach);
 * [2]: client round trips whose start was not seen;
 * [3]: gRPC statuses written for a server call whose start was not seen
 * (begun before the attach, or a stream the transport refused);
 * [4]: HTTP/1 requests whose end was not seen where requests end at a
 * send: the handler sent its whole response itself, and the connection
 * closed with no read after (serve_conn, serve_recv);
 * [5]: HTTP/1 connections served_conns had no room for;
 * [6]: gRPC client calls and streams whose end was seen but not their
 * start (begun before the attach). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 7);
	__type(key, __u32);
	__type(value, __u64);
} req_counts SEC(".maps");

enum req_count {
	REQ_COUNT_HIST_FULL = 0,
	REQ_COUNT_NO_START = 1,
	REQ_COUNT_CLIENT_NO_START = 2,
	REQ_COUNT_GRPC_NO_START = 3,
	REQ_COUNT_END_UNSEEN = 4,
	REQ_COUNT_CONN_UNNOTED = 5, /* connections, not requests: served_conns was full */
	REQ_COUNT_GRPC_CLIENT_NO_START = 6,
};

static __always_inline void req_count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&req_counts, &i);
	if (n)
		(*n)++;
}

enum req_event_type {
	EVENT_HTTP_REQUEST = 6,
	EVENT_HTTP_CLIENT_REQUEST = 7,
	EVENT_GRPC_REQUEST = 9,
	EVENT_GRPC_CLIENT_REQUEST = 10,
};

/* A TCP connection's smoothed round-trip time and its retransmissions
 * over its life so far (tcp_sock.srtt_us >> 3, total_retrans); zero when
 * not TCP. */
struct tcp_info_lite {
	__u32 srtt_us;
	__u32 total_retrans;
};

static __always_inline void read_tcp_info(struct sock *sk, struct tcp_info_lite *ti)
{
	ti->srtt_us = 0;
	ti->total_retrans = 0;
	if (!sk || !is_tcp(sk))
		return;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	ti->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	ti->total_retrans = BPF_CORE_READ(tp, total_retrans);
}

#define GRPC_METHOD_LEN 128
#define GRPC_HIST_METHOD_LEN 96
#define GRPC_TARGET_LEN 64

/* The unary gRPC calls a server request made while it ran (its
 * goroutine's, or a goroutine's it started), and the slowest of them. */
struct grpc_calls {
	__u32 count;
	__u32 _pad;
	__u64 ns;
	__u64 slowest_ns;
	char slowest_method[GRPC_HIST_METHOD_LEN];
	char slowest_target[GRPC_TARGET_LEN];
};

/* The gRPC calls of an HTTP request, by its serving goroutine: the
 * entry outlives the request; since is the request's t_start. */
struct req_grpc_calls {
	__u64 since;
	struct grpc_calls calls;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct req_key);
	__type(value, struct req_grpc_calls);
} http_grpc_calls SEC(".maps");

struct http_request_event {
	struct event_header hdr;
	struct addrs addrs; /* of fd's socket (check against raddr: TLS has no fd here) */
	__u64 duration_ns;
	__u64 written;     /* response body bytes */
	__s64 content_length; /* Request.ContentLength: -1 unknown (chunked), 0 none */
	__s32 fd;          /* the connection's, read through conn.rwc; -1 unknown */
	__u16 status;
	__u8 flags;        /* REQ_* of route */
	__u8 _pad;
	char method[METHOD_LEN];
	char route[ROUTE_LEN];
	char path[PATH_LEN];
	char raddr[RADDR_LEN]; /* conn.remoteAddr, "ip:port" */
	struct req_state st;
	struct addrs slot_addrs[REQ_SLOTS];
	/* TCP underneath, read as the event is made: the request's own
	 * connection's, then each slot's. */
	struct tcp_info_lite tcp;
	struct tcp_info_lite slot_tcp[REQ_SLOTS];
	struct grpc_calls grpc;
};

struct http_client_request_event {
	struct event_header hdr;
	struct addrs addrs; /* of fd's socket */
	__u64 duration_ns;
	__s32 fd;
	__u16 status;   /* 0: no response (an error) */
	__u8 _pad[2];
	char method[METHOD_LEN];
	char host[ROUTE_LEN];
};

/* A round trip in flight, by its goroutine. */
struct client_state {
	__u64 t_start; /* 0: no round trip in flight (the entry is reused) */
	__u64 treq;  /* *transportRequest (its *Request at 0), or the *Request (direct) */
	__u64 owner; /* the goroutine whose request it counts for (itself or its parent); 0: none */
	__s32 fd;
	__u32 direct; /* treq is the *Request itself (HTTP/2) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct req_key);
	__type(value, struct client_state);
} client_active SEC(".maps");

/* A *Request's fields that a request's end reads (Method, URL, Pattern:
 * 0xe8 + 16 in every Go version so far) in one user read where they took
 * two, as each user read (a helper call) costs more here than the rest of
 * the work between them; a layout with them further in reads them apart. */
#define REQ_HEAD 0x100

/* Scratch for a path being collapsed, and the collapse's state: kept in
 * map memory, which the verifier does not track value by value, so the
 * loops below verify in one pass per iteration instead of one per path
 * through all earlier ones. */
struct path_buf {
	/* The head of a *Request (REQ_HEAD bytes): Method, URL and Pattern
	 * read at once (read_req_head). */
	__u8 req[REQ_HEAD];
	char raw[ROUTE_LEN];
	char route[ROUTE_LEN];
	__u64 ids; /* bit s: segment s is an id */
	__u32 o;
	__u32 seg;
	__u32 seglen;
	__u8 digit;
	__u8 first_digit;
	__u8 skipping;
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} path_bufs SEC(".maps");

struct gostring {
	__u64 ptr;
	__s64 len;
};

/* The layout of the calling process, or NULL: the PID filter, before any
 * other read. */
static __always_inline struct req_layout *layout_of(__u32 *pid)
{
	*pid = bpf_get_current_pid_tgid() >> 32;
	return bpf_map_lookup_elem(&req_layouts, pid);
}

/* The calling goroutine's id, g.goid at g_goid: 0 when read. */
static __always_inline int read_goid_at(struct pt_regs *ctx, __u16 g_goid, __u64 *goid)
{
	__u64 g = GO_REG_G(ctx);
	return !g || bpf_probe_read_user(goid, sizeof(*goid), (void *)(g + g_goid));
}

/* Copies the Go string s into dst (n bytes, NUL-padded); returns its
 * length, or -1. */
static __always_inline long copy_gostring(void *dst, __u32 n, const struct gostring *s)
{
	__builtin_memset(dst, 0, n);
	if (s->len <= 0 || !s->ptr)
		return 0;
	__u32 m = s->len < n ? s->len : n;
	m &= 0xff;
	if (m > n)
		m = n;
	if (bpf_probe_read_user(dst, m, (void *)s->ptr))
		return -1;
	return s->len;
}

/* The same for the Go string at addr. */
static __always_inline long read_gostring(void *dst, __u32 n, __u64 addr)
{
	struct gostring s;
	if (bpf_probe_read_user(&s, sizeof(s), (void *)addr)) {
		__builtin_memset(dst, 0, n);
		return -1;
	}
	return copy_gostring(dst, n, &s);
}

/* Reads a *Request's method into method (METHOD_LEN bytes) and its URL
 * pointer: one read of Method and URL together where URL follows Method
 * (every Go version so far), as each user read costs more than the rest
 * of a probe's work. Returns -1 when req cannot be read. */
static __always_inline int read_method_url(const struct req_layout *l, __u64 req, char *method, __u64 *url)
{
	struct {
		struct gostring method;
		__u64 url;
	} h;
	__builtin_memset(method, 0, METHOD_LEN);
	*url = 0;
	if (l->req_url != sizeof(struct gostring)) {
		if (bpf_probe_read_user(url, sizeof(*url), (void *)(req + l->req_url)))
			return -1;
		read_gostring(method, METHOD_LEN, req);
		return 0;
	}
	if (bpf_probe_read_user(&h, sizeof(h), (void *)req))
		return -1;
	*url = h.url;
	if (h.method.len > 0 && h.method.ptr) {
		__u32 m = h.method.len < METHOD_LEN ? h.method.len : METHOD_LEN;
		m &= 0xff;
		if (m > METHOD_LEN)
			m = METHOD_LEN;
		bpf_probe_read_user(method, m, (void *)h.method.ptr);
	}
	return 0;
}

/* The 8 bytes at off of b, which holds size bytes read (REQ_HEAD at
 * most); 0 past them. */
static __always_inline __u64 buf_u64(const __u8 *b, __u64 size, __u64 off)
{
	__u64 v = 0;
	if (off + sizeof(v) > size)
		return 0;
	/* A bound of its own for the verifier, which the compiler would
	 * fold into the one above. */
	asm volatile("" : "+r"(off));
	if (off <= REQ_HEAD - sizeof(v))
		__builtin_memcpy(&v, &b[off], sizeof(v));
	return v;
}

/* read_method_url, and Request.Pattern's string header into *pattern
 * (zero where the layout has none): from one read of the request's head
 * into pb->req where Method, URL and Pattern lie in its first REQ_HEAD
 * bytes, else field by field. Returns -1 when req cannot be read. */
static __always_inline int read_req_head(const struct req_layout *l, __u64 req, struct path_buf *pb, char *method,
					 __u64 *url, struct gostring *pattern)
{
	__u64 need = l->req_url + sizeof(__u64);
	if (l->req_pattern && l->req_pattern + sizeof(struct gostring) > need)
		need = l->req_pattern + sizeof(struct gostring);
	pattern->ptr = 0;
	pattern->len = 0;
	if (need > REQ_HEAD || l->req_url < sizeof(struct gostring)) {
		if (read_method_url(l, req, method, url))
			return -1;
		if (l->req_pattern)
			bpf_probe_read_user(pattern, sizeof(*pattern), (void *)(req + l->req_pattern));
		return 0;
	}
	__builtin_memset(method, 0, METHOD_LEN);
	*url = 0;
	/* Bounds the verifier sees (the compiler drops a plain check as
	 * implied by the one above). */
	asm volatile("%0 &= %[mask]" : "+r"(need) : [mask] "i"(2 * REQ_HEAD - 1));
	if (need > REQ_HEAD)
		return -1;
	if (bpf_probe_read_user(pb->req, need, (void *)req))
		return -1;
	*url = buf_u64(pb->req, need, l->req_url);
	if (l->req_pattern) {
		pattern->ptr = buf_u64(pb->req, need, l->req_pattern);
		pattern->len = (__s64)buf_u64(pb->req, need, l->req_pattern + sizeof(__u64));
	}
	struct gostring m = {.ptr = buf_u64(pb->req, need, 0), .len = (__s64)buf_u64(pb->req, need, sizeof(__u64))};
	if (m.len > 0 && m.ptr) {
		__u32 n = m.len < METHOD_LEN ? m.len : METHOD_LEN;
		n &= 0xff;
		if (n > METHOD_LEN)
			n = METHOD_LEN;
		bpf_probe_read_user(method, n, (void *)m.ptr);
	}
	return 0;
}

/* The fd of a net.Conn interface at addr holding a *net.TCPConn (or
 * *net.UnixConn): data -> conn.fd (*netFD) -> pfd.Sysfd; -1 unknown. */
static __always_inline __s32 conn_fd(__u16 fd_sysfd, __u64 iface)
{
	__u64 data, nfd;
	__s64 fd;
	if (!fd_sysfd || bpf_probe_read_user(&data, sizeof(data), (void *)(iface + 8)) || !data)
		return -1;
	if (bpf_probe_read_user(&nfd, sizeof(nfd), (void *)data) || !nfd)
		return -1;
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(nfd + fd_sysfd)) || fd < 0 || fd > 0x7fffffff)
		return -1;
	return (__s32)fd;
}

/* The fd of the TCP connection under a net.Conn interface at iface:
 * a *net.TCPConn, or a *tls.Conn whose first field is the net.Conn under
 * it; -1 when neither leads to a TCP socket. *skp is its sock. */
static __always_inline __s32 tcp_conn_fd(__u16 fd_sysfd, __u64 iface, struct sock **skp)
{
	__s32 fd = conn_fd(fd_sysfd, iface);
	struct sock *sk = fd >= 0 ? tcp_sock_of(sock_from_fd(fd)) : NULL;
	__u64 data = 0;
	if ((!sk || !is_tcp(sk)) && !bpf_probe_read_user(&data, sizeof(data), (void *)(iface + 8)) && data) {
		fd = conn_fd(fd_sysfd, data);
		sk = fd >= 0 ? tcp_sock_of(sock_from_fd(fd)) : NULL;
	}
	if (!sk || !is_tcp(sk)) {
		*skp = NULL;
		return -1;
	}
	*skp = sk;
	return fd;
}

static __always_inline bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Writes pb->raw (a path, ROUTE_LEN bytes, NUL-padded) to pb->route with
 * every segment that looks like an id as {id}: one that holds a digit and
 * starts with one or is 8 bytes or longer (numbers, UUIDs, hashes; not
 * "v1"). Bounded: a route has at most ROUTE_LEN - 1 bytes. */
static __always_inline void collapse(struct path_buf *pbuf)
{
	volatile struct path_buf *pb = pbuf;
	pb->ids = 0;
	pb->seg = 0;
	pb->seglen = 0;
	pb->digit = 0;
	pb->first_digit = 0;
	for (int i = 0; i < ROUTE_LEN; i++) {
		char c = pb->raw[i];
		if (c == '/' || c == 0) {
			if (pb->digit && (pb->first_digit || pb->seglen >= 8) && pb->seg < 64)
				pb->ids |= 1ULL << (pb->seg & 63);
			if (c == 0)
				break;
			pb->seg++;
			pb->seglen = 0;
			pb->digit = 0;
			pb->first_digit = 0;
			continue;
		}
		if (is_digit(c)) {
			pb->digit = 1;
			if (pb->seglen == 0)
				pb->first_digit = 1;
		}
		pb->seglen++;
	}
	pb->o = 0;
	pb->seg = 0;
	pb->skipping = 0;
	for (int i = 0; i < ROUTE_LEN; i++) {
		char c = pb->raw[i];
		if (c == 0 || pb->o >= ROUTE_LEN - 1)
			break;
		if (c == '/') {
			pb->seg++;
			pb->skipping = 0;
			pb->route[pb->o & (ROUTE_LEN - 1)] = c;
			pb->o++;
			if (pb->seg < 64 && (pb->ids & (1ULL << (pb->seg & 63)))) {
				if (pb->o + 4 < ROUTE_LEN) {
					pb->route[pb->o & (ROUTE_LEN - 1)] = '{';
					pb->route[(pb->o + 1) & (ROUTE_LEN - 1)] = 'i';
					pb->route[(pb->o + 2) & (ROUTE_LEN - 1)] = 'd';
					pb->route[(pb->o + 3) & (ROUTE_LEN - 1)] = '}';
				}
				pb->o += 4;
				pb->skipping = 1;
			}
			continue;
		}
		if (pb->skipping)
			continue;
		pb->route[pb->o & (ROUTE_LEN - 1)] = c;
		pb->o++;
	}
	if (pb->o < ROUTE_LEN)
		pb->route[pb->o & (ROUTE_LEN - 1)] = 0;
	pb->route[ROUTE_LEN - 1] = 0;
}

static const struct req_hist req_hist_zero;

/* The histogram of key k in map, created if new; NULL (counted) when the
 * map is full. */
static __always_inline struct req_hist *hist_of(void *map, void *k)
{
	struct req_hist *h = bpf_map_lookup_elem(map, k);
	if (!h) {
		bpf_map_update_elem(map, k, &req_hist_zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(map, k);
		if (!h)
			req_count(REQ_COUNT_HIST_FULL);
	}
	return h;
}

static __always_inline void hist_add(struct req_hist *h, __u64 ns)
{
	__u32 b = REQ_BUCKETS - 1;
	/* v <= bound: Prometheus' le. */
	if (ns <= 5000000ULL)
		b = 0;
	else if (ns <= 10000000ULL)
		b = 1;
	else if (ns <= 25000000ULL)
		b = 2;
	else if (ns <= 50000000ULL)
		b = 3;
	else if (ns <= 75000000ULL)
		b = 4;
	else if (ns <= 100000000ULL)
		b = 5;
	else if (ns <= 250000000ULL)
		b = 6;
	else if (ns <= 500000000ULL)
		b = 7;
	else if (ns <= 750000000ULL)
		b = 8;
	else if (ns <= 1000000000ULL)
		b = 9;
	else if (ns <= 2500000000ULL)
		b = 10;
	else if (ns <= 5000000000ULL)
		b = 11;
	else if (ns <= 7500000000ULL)
		b = 12;
	else if (ns <= 10000000000ULL)
		b = 13;
	asm volatile("" : "+r"(ns));
	asm volatile("if %0 <= %[max] goto +1\n\t"
		     "%0 = %[max]"
		     : "+r"(b)
		     : [max] "i"(REQ_BUCKETS - 1));
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	__sync_fetch_and_add(&h->buckets[b], 1);
}

static __always_inline void req_hist_add(struct req_hist_key *k, __u64 ns)
{
	struct req_hist *h = hist_of(&req_hists, k);
	if (h)
		hist_add(h, ns);
}

/* Events of this object's ring buffer; submits wake the reader at most
 * every wakeup_interval_ns (as netpoll's do). */
const volatile __u64 wakeup_interval_ns = 50000000;
__u64 last_wakeup_ns = 0;

static __always_inline void submit(void *e)
{
	submit_at_most_every(e, wakeup_interval_ns, &last_wakeup_ns);
}

SEC("uprobe")
int server_start(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (!l)
		return 0;
	struct req_key k = {.pid = pid};
	if (read_goid_at(ctx, l->g_goid, &k.goid))
		return 0;
	req_open(&k, bpf_ktime_get_boot_ns(), NULL);
	return 0;
}

/* The endpoints and TCP state of each of st's connections, as a
 * request's event is made. */
static __always_inline void read_slots(const struct req_state *st, struct addrs *addrs, struct tcp_info_lite *tcp)
{
	for (int i = 0; i < REQ_SLOTS; i++) {
		__builtin_memset(&addrs[i], 0, sizeof(addrs[i]));
		struct sock *sk = st->slot[i].fd < 0 ? NULL : tcp_sock_of(sock_from_fd(st->slot[i].fd));
		if (sk)
			read_sk_addrs(sk, &addrs[i]);
		read_tcp_info(sk, &tcp[i]);
	}
}

/* The end of a request at now, whichever protocol: its histogram, and its
 * event if it was slow. req is the *Request; status and written_at where
 * the status and the body's bytes are; conn the server's connection
 * (http.conn or http2serverConn, 0 unknown), with its net.Conn at
 * conn + rwc_off and its remote address string at conn + raddr_off. */
static __always_inline void request_end(const struct req_layout *l, __u32 pid, __u64 goid, struct req_state *st,
					__u64 req, __s64 status, __u64 written_at, __u64 conn,
					__u16 rwc_off, __u16 raddr_off, __u8 flags, __u64 now)
{
	__u64 dur = now - st->t_start;
	/* Both protocols write a 200 header if the handler wrote none. */
	if (status == 0)
		status = 200;
	struct req_hist_key hk = {.pid = pid, .status = (__u16)status, .flags = flags};
	__u64 url = 0;
	__u32 zero = 0;
	struct path_buf *pb = bpf_map_lookup_elem(&path_bufs, &zero);
	struct gostring pattern;
	if (!pb || !req || read_req_head(l, req, pb, hk.method, &url, &pattern))
		return;
	long n = 0;
	if (l->req_pattern)
		n = copy_gostring(hk.route, sizeof(hk.route), &pattern);
	if (n > 0) {
		hk.flags |= REQ_PATTERN;
	} else {
		__builtin_memset(pb->route, 0, sizeof(pb->route));
		n = url ? read_gostring(pb->raw, sizeof(pb->raw), url + l->url_path) : 0;
		collapse(pb);
		__builtin_memcpy(hk.route, pb->route, sizeof(hk.route));
	}
	if (n >= ROUTE_LEN)
		hk.flags |= REQ_TRUNCATED;
	req_hist_add(&hk, dur);

	if (dur < l->slow_ns)
		return;
	struct http_request_event *e = reserve_event(struct http_request_event, (enum event_type)EVENT_HTTP_REQUEST);
	if (!e)
		return;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	fill_header(&e->hdr, (enum event_type)EVENT_HTTP_REQUEST, pid_tgid);
	e->hdr.goid = goid;
	e->hdr.goid_ok = 1;
	e->duration_ns = dur;
	e->status = (__u16)status;
	e->flags = hk.flags;
	e->_pad = 0;
	__builtin_memcpy(e->method, hk.method, sizeof(e->method));
	__builtin_memcpy(e->route, hk.route, sizeof(e->route));
	e->written = 0;
	bpf_probe_read_user(&e->written, sizeof(e->written), (void *)written_at);
	e->content_length = -1;
	if (l->req_content_length)
		bpf_probe_read_user(&e->content_length, sizeof(e->content_length), (void *)(req + l->req_content_length));
	if (url)
		read_gostring(e->path, sizeof(e->path), url + l->url_path);
	else
		__builtin_memset(e->path, 0, sizeof(e->path));
	e->fd = -1;
	__builtin_memset(e->raddr, 0, sizeof(e->raddr));
	struct sock *sk = NULL;
	if (conn) {
		read_gostring(e->raddr, sizeof(e->raddr), conn + raddr_off);
		/* User space checks the socket's peer against raddr. */
		e->fd = tcp_conn_fd(l->fd_sysfd, conn + rwc_off, &sk);
	}
	__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
	if (sk)
		read_sk_addrs(sk, &e->addrs);
	read_tcp_info(sk, &e->tcp);
	__builtin_memcpy(&e->st, st, sizeof(e->st));
	read_slots(&e->st, e->slot_addrs, e->slot_tcp);
	struct req_key k = {.pid = pid, .goid = goid};
	struct req_grpc_calls *gc = l->grpc_client ? bpf_map_lookup_elem(&http_grpc_calls, &k) : NULL;
	if (gc && gc->since == st->t_start)
		__builtin_memcpy(&e->grpc, &gc->calls, sizeof(e->grpc));
	else
		__builtin_memset(&e->grpc, 0, sizeof(e->grpc));
	submit(e);
}

/* The request goroutine k serves, or NULL (counted: its start was not
 * seen). On the sock path an HTTP/1 request whose bytes came before the
 * previous response went out (pipelined) has no read to start it
 * (requests.h req_read): it started when the previous one ended. */
static __always_inline struct req_state *open_request_of(struct req_key *k)
{
	struct req_state *st = bpf_map_lookup_elem(&req_active, k);
	if (st && !st->t_start && st->t_end)
		req_open(k, st->t_end, st);
	if (!st || !st->t_start) {
		req_count(REQ_COUNT_NO_START);
		return NULL;
	}
	return st;
}

/* The same for the goroutine a uprobe runs on. */
static __always_inline struct req_state *open_request(struct pt_regs *ctx, const struct req_layout *l, struct req_key *k)
{
	if (read_goid_at(ctx, l->g_goid, &k->goid))
		return NULL;
	return open_request_of(k);
}

/* The end of HTTP/1 request st, served by goroutine k, whose
 * *http.response is w, with w's request, status and connection as read
 * (req 0: unreadable): its histogram and event, then closed; the entry
 * stays for the connection's next request (LRU). */
static __always_inline void http1_end_as(const struct req_layout *l, const struct req_key *k, struct req_state *st, __u64 w,
					 __u64 req, __s64 status, __u64 c)
{
	__u64 now = bpf_ktime_get_boot_ns();
	if (req)
		request_end(l, k->pid, k->goid, st, req, status, w + l->resp_written, c, l->conn_rwc, l->conn_raddr, 0, now);
	st->t_start = 0;
	st->t_end = now;
}

/* The same, reading them from w. */
static __always_inline void http1_end(const struct req_layout *l, const struct req_key *k, struct req_state *st, __u64 w)
{
	__u64 req = 0, c = 0;
	__s64 status = 0;
	/* response.conn is at 0. */
	if (bpf_probe_read_user(&req, sizeof(req), (void *)(w + l->resp_req)) ||
	    bpf_probe_read_user(&status, sizeof(status), (void *)(w + l->resp_status)))
		req = 0;
	else
		bpf_probe_read_user(&c, sizeof(c), (void *)w);
	http1_end_as(l, k, st, w, req, status, c);
}

/* ---- HTTP/1 ends without a trap per request (the sock path: the
 * socket tracepoints of Linux 6.3+, or fexit on the functions they sit
 * in; pkg/requests chooses per target) ----
 *
 * net/http serves a connection's requests one after another on the
 * goroutine that runs (*conn).serve, the connection's *response in
 * conn.curReq while one is served. finishRequest, once the handler has
 * returned, sets response.handlerDone and then flushes what is left of
 * the response to the socket: the first send with handlerDone set is
 * the request's end. So a uprobe per connection (serve_conn, at the
 * entry of (*conn).serve) notes the connection by its socket, and
 * serve_send, on every socket send, ends its requests.
 *
 * A handler that sent its whole response itself (a Flush of a response
 * whose length was set) leaves finishRequest nothing to send: its
 * request ends at the connection's next read (serve_recv), which
 * (*conn).serve makes at once for the next request. Both programs run
 * for every socket send and receive on the host: the PID filter (an
 * array, netpoll's sock_pids) comes first, then one hash lookup by
 * socket.
 *
 * Connections accepted before the attach never ran serve_conn:
 * server_end stays attached (pkg/requests warmUp) until each of them is
 * noted at its first request's end, or closed. */

/* A connection net/http serves, by its socket (the key: the struct sock
 * the socket tracepoints see) and process. */
struct served_conn {
	__u64 conn;    /* the *http.conn */
	__u64 goid;    /* the goroutine running (*conn).serve: it serves each request */
	__u64 ino;     /* the socket's inode number: a freed sock's address is reused, its inode number is not */
	__u64 ended_w; /* the *response whose end was counted last: a final flush in two sends ends it once */
	__u64 sent_w;  /* a *response that sent bytes before its handler returned, and has not ended */
	__u32 pid;     /* the process that serves it */
	__u32 _pad;
	/* The process' layout as the connection was noted (pkg/requests
	 * sets it once per target, and note_conn runs only once it is
	 * there): a send that ends a request needs no req_layouts lookup. */
	struct req_layout l;
};

/* The connections being served, each deleted when its socket closes
 * (serve_close): no LRU, so a live connection is never dropped. Not
 * preallocated (pkg/requests sets the flag and the size, 1M, where
 * requests end at a send; 1 entry elsewhere): memory for the open ones
 * only. A connection that finds it full is counted
 * (REQ_COUNT_CONN_UNNOTED); its requests are not seen. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64); /* struct sock * */
	__type(value, struct served_conn);
} served_conns SEC(".maps");

/* The head of a *http.response: the fields a send needs (conn at 0,
 * req, status, handlerDone; pkg/requests checks that each of a target's
 * lies within) in one user read where they took four, as each costs
 * more than most of the rest of the program. Per CPU: too large for the
 * stack beside request_end's. */
#define RESP_HEAD 0xb0

struct resp_head {
	__u8 b[RESP_HEAD];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct resp_head);
} resp_heads SEC(".maps");

static __always_inline __u64 head_u64(const struct resp_head *h, __u32 off)
{
	__u64 v = 0;
	if (off <= RESP_HEAD - sizeof(v))
		__builtin_memcpy(&v, &h->b[off], sizeof(v));
	return v;
}

static __always_inline __u32 head_u32(const struct resp_head *h, __u32 off)
{
	__u32 v = 0;
	if (off <= RESP_HEAD - sizeof(v))
		__builtin_memcpy(&v, &h->b[off], sizeof(v));
	return v;
}

/* How many served_conns or served_socks entries have a sent_w: until one
 * does, a receive has nothing to end and returns after the PID filter. */
__s64 sent_pending = 0;

static __always_inline void set_sent(struct served_conn *sc, __u64 w)
{
	if (!sc->sent_w && w)
		__sync_fetch_and_add(&sent_pending, 1);
	else if (sc->sent_w && !w)
		__sync_fetch_and_add(&sent_pending, -1);
	sc->sent_w = w;
}

/* Before sc is dropped: a response its handler sent whole itself has
 * not been seen to end, and now will not be. */
static __always_inline void forget_served(struct served_conn *sc)
{
	if (sc->sent_w) {
		req_count(REQ_COUNT_END_UNSEEN);
		set_sent(sc, 0);
	}
}

/* The socket's inode number (0: none). */
static __always_inline __u64 sk_ino(struct sock *sk)
{
	return BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
}

/* Notes connection c (a *http.conn), served by the goroutine the uprobe
 * runs on, in served_conns; w: its request that ends at the probe (0:
 * none). Its socket comes from conn.rwc (the *net.TCPConn, or the one
 * under a *tls.Conn). Returns 1, noting nothing, when it is noted
 * already. */
static __always_inline int note_conn(struct pt_regs *ctx, const struct req_layout *l, __u32 pid, __u64 c, __u64 w)
{
	struct served_conn sc = {.conn = c, .ended_w = w, .pid = pid, .l = *l};
	if (read_goid_at(ctx, l->g_goid, &sc.goid))
		return 0;
	struct sock *tsk;
	__s32 fd = tcp_conn_fd(l->fd_sysfd, c + l->conn_rwc, &tsk);
	/* The socket the socket tracepoints see: an MPTCP one's own, not
	 * its subflow (tcp_sock_of). */
	struct sock *sk = fd >= 0 ? sock_from_fd(fd) : NULL;
	if (!sk)
		return 0;
	sc.ino = sk_ino(sk);
	__u64 k = (__u64)sk;
	struct served_conn *old = bpf_map_lookup_elem(&served_conns, &k);
	if (old && old->ino == sc.ino && old->pid == pid)
		return 1;
	/* Another process's, or a closed connection's whose close was not
	 * seen (serve_close): its pending end will not be. */
	if (old)
		forget_served(old);
	if (bpf_map_update_elem(&served_conns, &k, &sc, BPF_ANY))
		req_count(REQ_COUNT_CONN_UNNOTED);
	return 0;
}

/* At the entry of net/http.(*conn).serve (the conditional jump of its
 * stack check; c in the first argument register): a connection's first
 * request is about to be read. */
SEC("uprobe")
int serve_conn(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (l && l->conn_cur_req)
		note_conn(ctx, l, pid, GO_REG_ARG(ctx, 0), 0);
	return 0;
}

/* In net/http.(*conn).serve, CALL (*response).finishRequest (w in the
 * first argument register): the handler returned. Where requests end at
 * a send instead (serve_send), this probe is attached only while
 * connections accepted before the attach are open and not noted. */
SEC("uprobe")
int server_end(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (!l)
		return 0;
	__u64 w = GO_REG_ARG(ctx, 0);
	/* Where requests end at a send, this probe stays only while
	 * connections served since before the attach (which serve_conn did
	 * not see) are open: it notes such a connection at its first
	 * request's end, which is counted here; a noted one's requests
	 * end at their send. response.conn is at 0. */
	__u64 c = 0;
	if (l->conn_cur_req && !bpf_probe_read_user(&c, sizeof(c), (void *)w) && note_conn(ctx, l, pid, c, w))
		return 0;
	struct req_key k = {.pid = pid};
	struct req_state *st = open_request(ctx, l, &k);
	if (st)
		http1_end(l, &k, st, w);
	return 0;
}

/* The served connection of socket sk, if the calling process serves it;
 * sk is a tp_btf argument, read with plain loads. */
static __always_inline struct served_conn *served_of(struct sock *sk, __u32 pid)
{
	__u64 k = (__u64)sk;
	struct served_conn *sc = bpf_map_lookup_elem(&served_conns, &k);
	if (!sc || sc->pid != pid)
		return NULL;
	struct socket *so = sk->sk_socket;
	struct file *f = so ? so->file : NULL;
	if (!f || f->f_inode->i_ino != sc->ino)
		return NULL;
	return sc;
}

/* Each served connection's entry again, in its socket's own storage,
 * made from the served_conns entry at the connection's first send or
 * receive: later ones find it without a hash lookup (whose bucket and
 * element are cold lines by the next request) and without the chase to
 * the socket's inode number (the storage dies with the socket, so a
 * reused sock address cannot find it). The sends and receives keep
 * their state (ended_w, sent_w) here; served_conns stays the record of
 * which connections are noted (pkg/requests warmUp) and what note_conn
 * and serve_close look up. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct served_conn);
} served_socks SEC(".maps");

/* served_of through the socket's storage (served_socks), made or
 * refreshed from served_conns where missing or another process's.
 * Where no storage can be made, the served_conns entry itself. */
static __always_inline struct served_conn *served_sock(struct sock *sk, __u32 pid)
{
	struct served_conn *sc = bpf_sk_storage_get(&served_socks, sk, 0, 0);
	if (sc && sc->pid == pid)
		return sc;
	struct served_conn *hc = served_of(sk, pid);
	if (!hc)
		return NULL;
	/* Another process served it before (a socket passed on): its
	 * pending end will not be seen. */
	if (sc) {
		forget_served(sc);
		*sc = *hc;
	} else {
		sc = bpf_sk_storage_get(&served_socks, sk, hc, BPF_SK_STORAGE_GET_F_CREATE);
		if (!sc)
			return hc;
	}
	/* A pending end moves to the storage (sent_pending counts it once). */
	hc->sent_w = 0;
	return sc;
}

/* Reads response w's head into this CPU's scratch (resp_heads); NULL
 * when w cannot be read. One head at a time: a caller is done with one
 * before it reads the next. */
static __always_inline const struct resp_head *read_head(__u64 w)
{
	__u32 zero = 0;
	struct resp_head *h = bpf_map_lookup_elem(&resp_heads, &zero);
	if (!h || bpf_probe_read_user(h->b, sizeof(h->b), (void *)w))
		return NULL;
	return h;
}

/* Ends sc's request w, whose head is h (its handler has returned). */
static __always_inline void served_end(struct served_conn *sc, __u32 pid, __u64 w, const struct resp_head *h)
{
	sc->ended_w = w;
	set_sent(sc, 0);
	const struct req_layout *l = &sc->l;
	struct req_key k = {.pid = pid, .goid = sc->goid};
	struct req_state *st = open_request_of(&k);
	if (st)
		http1_end_as(l, &k, st, w, head_u64(h, l->resp_req), (__s64)head_u64(h, l->resp_status), head_u64(h, 0));
}

/* Ends sc's request that sent its response before its handler returned
 * (sent_w), if the handler has returned since. */
static __always_inline void end_sent(struct served_conn *sc, __u32 pid)
{
	__u64 w = sc->sent_w;
	const struct resp_head *h = read_head(w);
	/* Still the connection's? response.conn is at 0. */
	if (!h || head_u64(h, 0) != sc->conn) {
		set_sent(sc, 0);
		req_count(REQ_COUNT_END_UNSEEN);
		return;
	}
	if (head_u32(h, sc->l.resp_handler_done))
		served_end(sc, pid, w, h);
}

/* A send of ret bytes on sk by the calling process. */
static __always_inline int serve_sent(struct sock *sk, int ret)
{
	if (ret <= 0)
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (!pid_in(&sock_pids, pid))
		return 0;
	struct served_conn *sc = served_sock(sk, pid);
	if (!sc)
		return 0;
	__u64 w = 0;
	if (bpf_probe_read_user(&w, sizeof(w), (void *)(sc->conn + sc->l.conn_cur_req)) || !w || w == sc->ended_w)
		return 0;
	/* A request that sent its whole response itself, followed by one
	 * the client had pipelined (read with it, so no read came between). */
	if (sc->sent_w && sc->sent_w != w)
		end_sent(sc, pid);
	const struct resp_head *h = read_head(w);
	if (!h)
		return 0;
	if (head_u32(h, sc->l.resp_handler_done)) {
		served_end(sc, pid, w, h);
	} else if (sc->sent_w != w) {
		/* The handler sends before it returns: its request may end
		 * with no send after (serve_recv), and a read past this
		 * send is not the next request's start (req_read). */
		set_sent(sc, w);
		struct req_key k = {.pid = pid, .goid = sc->goid};
		struct req_state *st = bpf_map_lookup_elem(&req_active, &k);
		if (st && st->t_start)
			st->flushed = 1;
	}
	return 0;
}

/* A receive on sk by the calling process. */
static __always_inline int serve_received(struct sock *sk)
{
	/* The global first: nothing is pending on almost every receive. */
	if (sent_pending <= 0)
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (!pid_in(&sock_pids, pid))
		return 0;
	struct served_conn *sc = served_sock(sk, pid);
	if (sc && sc->sent_w)
		end_sent(sc, pid);
	return 0;
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(serve_send, struct sock *sk, int ret, int flags)
{
	return serve_sent(sk, ret);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(serve_recv, struct sock *sk, int ret, int flags)
{
	return serve_received(sk);
}

/* The same where the kernel has fentry but not the socket tracepoints
 * (the 6.1 path; pkg/requests attaches the send one to the function
 * netpoll's fexit_sock_sendmsg uses, __sock_sendmsg or sock_sendmsg). */
SEC("fexit/__sock_sendmsg")
int BPF_PROG(fexit_serve_send, struct socket *sock, struct msghdr *msg, int ret)
{
	return serve_sent(sock->sk, ret);
}

SEC("fexit/sock_recvmsg")
int BPF_PROG(fexit_serve_recv, struct socket *sock, struct msghdr *msg, int flags, int ret)
{
	return serve_received(sock->sk);
}

/* A TCP socket closed: its connection, if one was served, is forgotten.
 * Every TCP socket passes through TCP_CLOSE before it is freed; in
 * softirq or another process's context as often as not, so by socket
 * only (the key). One socket-storage and one hash lookup per TCP close on
 * the host. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(serve_close, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_CLOSE)
		return 0;
	struct served_conn *ss = bpf_sk_storage_get(&served_socks, sk, 0, 0);
	if (ss) {
		forget_served(ss);
		bpf_sk_storage_delete(&served_socks, sk);
	}
	__u64 k = (__u64)sk;
	struct served_conn *sc = bpf_map_lookup_elem(&served_conns, &k);
	if (!sc)
		return 0;
	forget_served(sc);
	bpf_map_delete_elem(&served_conns, &k);
	return 0;
}

/* HTTP/2: in the deferred function of http2serverConn.runHandler, CALL
 * (*http2responseWriter).handlerDone (rw in the first argument
 * register), on the stream's handler goroutine. Its start is
 * server_start on runHandler's entry. */
SEC("uprobe")
int h2_end(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (!l || !l->h2rws_req)
		return 0;
	struct req_key k = {.pid = pid};
	struct req_state *st = open_request(ctx, l, &k);
	if (!st)
		return 0;
	__u64 rw = GO_REG_ARG(ctx, 0), rws = 0, req = 0, sc = 0;
	__s64 status = 0;
	/* http2responseWriter.rws is at 0. */
	if (bpf_probe_read_user(&rws, sizeof(rws), (void *)rw) || !rws ||
	    bpf_probe_read_user(&status, sizeof(status), (void *)(rws + l->h2rws_status))) {
		st->t_start = 0;
		return 0;
	}
	bpf_probe_read_user(&sc, sizeof(sc), (void *)(rws + l->h2rws_conn));
	if (l->h2req_url) {
		/* Go 1.27: the request is in rws, laid out as a request whose
		 * Method is at 0 (read_method_url) and which has no Pattern. */
		struct req_layout il = *l;
		il.req_url = l->h2req_url;
		il.req_pattern = 0;
		il.req_content_length = l->h2req_content_length;
		req = rws + l->h2rws_req + l->h2req_method;
		request_end(&il, pid, k.goid, st, req, status, rws + l->h2rws_wrote, sc, l->h2sc_conn, l->h2sc_raddr, REQ_H2,
			    bpf_ktime_get_boot_ns());
	} else if (!bpf_probe_read_user(&req, sizeof(req), (void *)(rws + l->h2rws_req))) {
		request_end(l, pid, k.goid, st, req, status, rws + l->h2rws_wrote, sc, l->h2sc_conn, l->h2sc_raddr, REQ_H2,
			    bpf_ktime_get_boot_ns());
	}
	st->t_start = 0;
	return 0;
}

/* A round trip starts on connection conn (a net.Conn at conn_at) for
 * request treq (see struct client_state). */
static __always_inline int round_trip_start(struct pt_regs *ctx, const struct req_layout *l, __u32 pid,
					    __u64 conn_at, __u64 treq, __u32 direct)
{
	struct req_key k = {.pid = pid};
	if (read_goid_at(ctx, l->g_goid, &k.goid))
		return 0;
	struct client_state cs = {
		.t_start = bpf_ktime_get_boot_ns(),
		.treq = treq,
		.direct = direct,
	};
	struct sock *sk;
	cs.fd = tcp_conn_fd(l->fd_sysfd, conn_at, &sk);
	/* The request this round trip is for: the one this goroutine
	 * serves, or the one its parent serves (a handler that fans out
	 * with goroutines, as errgroup does); one generation only. */
	struct req_key owner = k;
	struct req_state *st = bpf_map_lookup_elem(&req_active, &owner);
	if ((!st || !st->t_start) && l->g_parent_goid) {
		__u64 g = GO_REG_G(ctx);
		if (!bpf_probe_read_user(&owner.goid, sizeof(owner.goid), (void *)(g + l->g_parent_goid)) && owner.goid)
			st = bpf_map_lookup_elem(&req_active, &owner);
	}
	if (st && st->t_start && cs.fd >= 0) {
		cs.owner = owner.goid;
		/* Waits on the connection count for that request, from now
		 * (requests.h). A kept-alive connection's entry is updated in
		 * place: LRU updates cost more than the rest of the probe. */
		struct req_fd_key fk = {.pid = pid, .fd = cs.fd};
		struct req_fd *fp = bpf_map_lookup_elem(&req_fds, &fk);
		if (fp) {
			fp->goid = owner.goid;
			fp->t_start = cs.t_start;
		} else {
			struct req_fd f = {.goid = owner.goid, .t_start = cs.t_start};
			bpf_map_update_elem(&req_fds, &fk, &f, BPF_ANY);
		}
	}
	/* A goroutine's round trips follow one another: its entry is
	 * reused, t_start 0 between them. */
	put_in_place(&client_active, &k, &cs);
	return 0;
}

SEC("uprobe")
int client_start(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (!l)
		return 0;
	return round_trip_start(ctx, l, pid, GO_REG_ARG(ctx, 0) + l->pconn_conn, GO_REG_ARG(ctx, 1), 0);
}

/* HTTP/2: in (*http2Transport).RoundTripOpt, CALL (*http2ClientConn).roundTrip
 * (cc, req); its end is client_end on the emulated instruction after it. */
SEC("uprobe")
int h2_client_start(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (!l || !l->h2cc_tconn)
		return 0;
	return round_trip_start(ctx, l, pid, GO_REG_ARG(ctx, 0) + l->h2cc_tconn, GO_REG_ARG(ctx, 1), 1);
}

SEC("uprobe")
int client_end(struct pt_regs *ctx)
{
	__u32 pid;
	struct req_layout *l = layout_of(&pid);
	if (!l)
		return 0;
	struct req_key k = {.pid = pid};
	if (read_goid_at(ctx, l->g_goid, &k.goid))
		return 0;
	struct client_state *csp = bpf_map_lookup_elem(&client_active, &k);
	if (!csp || !csp->t_start) {
		req_count(REQ_COUNT_CLIENT_NO_START);
		return 0;
	}
	struct client_state cs = *csp;
	csp->t_start = 0;
	__u64 dur = bpf_ktime_get_boot_ns() - cs.t_start;
	__u64 resp = GO_REG_ARG(ctx, 0), req = 0, url = 0;
	__s64 status = 0;
	if (resp)
		bpf_probe_read_user(&status, sizeof(status), (void *)(resp + l->response_status_code));
	struct req_hist_key hk = {.pid = pid, .status = (__u16)status, .client = 1};
	/* transportRequest embeds its *Request at 0. */
	if (cs.direct)
		req = cs.treq;
	else if (bpf_probe_read_user(&req, sizeof(req), (void *)cs.treq))
		req = 0;
	if (req && !read_method_url(l, req, hk.method, &url) && url)
		read_gostring(hk.route, sizeof(hk.route), url + l->url_host);
	req_hist_add(&hk, dur);

	/* The request it was for: its round trips on this fd. */
	struct req_key owner = {.pid = pid, .goid = cs.owner};
	struct req_state *st = cs.owner ? bpf_map_lookup_elem(&req_active, &owner) : NULL;
	if (st && st->t_start && cs.fd >= 0 && cs.t_start >= st->t_start) {
		struct req_wait *w = req_slot(st, cs.fd);
		if (w) {
			w->client_ns += dur;
			w->client_calls++;
			w->via_client = 1;
		}
	}
	if (dur < l->slow_ns)
		return 0;
	struct http_client_request_event *e = reserve_event(struct http_client_request_event, (enum event_type)EVENT_HTTP_CLIENT_REQUEST);
	if (!e)
		return 0;
	fill_header(&e->hdr, (enum event_type)EVENT_HTTP_CLIENT_REQUEST, bpf_get_current_pid_tgid());
	e->hdr.goid = k.goid;
	e->hdr.goid_ok = 1;
	e->duration_ns = dur;
	e->fd = cs.fd;
	e->status = (__u16)status;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	__builtin_memcpy(e->method, hk.method, sizeof(e->method));
	__builtin_memcpy(e->host, hk.route, sizeof(e->host));
	__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
	struct sock *sk = cs.fd >= 0 ? tcp_sock_of(sock_from_fd(cs.fd)) : NULL;
	if (sk)
		read_sk_addrs(sk, &e->addrs);
	submit(e);
	return 0;
}

/* gRPC (google.golang.org/grpc): each a uprobe on the conditional jump
 * of a function's stack check (emulated; the arguments still in their
 * registers), found and its layout read by pkg/goruntime (grpc.go):
 *   grpc_server_start: (*Server).handleStream(s, t, stream): a stream's
 *                 call starts on the goroutine that serves it.
 *   grpc_server_end: (*http2Server).writeStatus(t, stream, st): its
 *                 status is written, on that goroutine: the call ended;
 *                 t's conn is the connection.
 *   grpc_client_start: grpc.newClientStream(ctx, desc, cc, method, ...):
 *                 a client call starts, unary (grpc.invoke calls it) or
 *                 a stream; noted by its goroutine until
 *   grpc_client_bind: (*clientStream).newAttemptLocked(cs, ...): its
 *                 first attempt, on the same goroutine before
 *                 newClientStream returns: from here the call is known
 *                 by its clientStream (grpc_client_streams), because a
 *                 stream can end on any goroutine and one goroutine can
 *                 hold many streams open.
 *   grpc_client_end: (*clientStream).finish(cs, err): the call ends, on
 *                 whichever goroutine saw it end (a stream's reader, or
 *                 the one grpc starts to watch its context), err nil or
 *                 io.EOF when it went well, else (as grpc makes them) a
 *                 status error. grpc calls it more than once for a
 *                 stream (its context watcher does after the end):
 *                 only the first counts.
 * A call that fails before its stream is made (grpc waits for name
 * resolution in newClientStream) has no clientStream and is not seen.
 */

struct grpc_layout {
	__u64 slow_ns;    /* calls at least this long are sent as events */
	__u64 error_itab; /* run-time address of the itab (*status.Error, error) */
	__u64 eof;        /* run-time address of io.EOF */
	__u16 g_goid;
	__u16 stream_method; /* ServerStream: the method string */
	__u16 status_proto;  /* internal/status.Status: its *spb.Status */
	__u16 proto_code;    /* spb.Status.Code (int32) */
	__u16 error_status;  /* internal/status.Error: its *Status */
	__u16 cc_target;     /* ClientConn.target; 0 unknown */
	__u16 server_conn;   /* http2Server.conn (a net.Conn); 0 unknown */
	__u16 fd_sysfd;      /* *net.TCPConn -> netFD -> poll.FD.Sysfd */
	__u16 g_parent_goid; /* runtime.g.parentGoid (Go 1.21+); 0 unknown */
	__u16 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32); /* tgid */
	__type(value, struct grpc_layout);
} grpc_layouts SEC(".maps");


/* The method (or target) was longer than the room for it. */
#define GRPC_TRUNCATED 1
/* The event carries its serving goroutine's breakdown. */
#define GRPC_BREAKDOWN 2
/* code could not be read. */
#define GRPC_NO_CODE 4

struct grpc_hist_key {
	__u32 pid;
	__u16 code;   /* the gRPC status code */
	__u8 client;  /* 0: server call; 1: client call */
	__u8 flags;   /* GRPC_TRUNCATED, GRPC_NO_CODE */
	char method[GRPC_HIST_METHOD_LEN]; /* "/pkg.Service/Method" */
	char target[GRPC_TARGET_LEN];      /* client: the ClientConn's target */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct grpc_hist_key);
	__type(value, struct req_hist);
} grpc_hists SEC(".maps");

/* A server call in flight, by its goroutine. */
struct grpc_server_state {
	__u64 t_start; /* 0: none (the entry is reused) */
	__u64 stream;  /* its *ServerStream */
	struct grpc_calls calls;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct req_key);
	__type(value, struct grpc_server_state);
} grpc_server_active SEC(".maps");

/* A client call in flight: begun by the goroutine goid (whose parent
 * is parent), not yet ended. */
struct grpc_client_state {
	__u64 t_start; /* 0: none (the entry is reused) */
	struct gostring method;
	__u64 cc; /* its *ClientConn */
	__u64 goid;
	__u64 parent; /* goid's runtime.g.parentGoid; 0 unknown */
};

/* Calls begun and not yet bound to their clientStream, by goroutine
 * (grpc_client_start to grpc_client_bind). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct req_key);
	__type(value, struct grpc_client_state);
} grpc_client_active SEC(".maps");

struct grpc_stream_key {
	__u32 pid;
	__u32 _pad;
	__u64 cs; /* the *clientStream */
};

/* Calls by their clientStream (grpc_client_bind to grpc_client_end). An
 * ended one stays, t_start 0, so the finish grpc calls again is known as
 * such (and not counted as a call begun before the attach) until the LRU
 * takes it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct grpc_stream_key);
	__type(value, struct grpc_client_state);
} grpc_client_streams SEC(".maps");

struct grpc_request_event {
	struct event_header hdr;
	struct addrs addrs; /* of fd's socket */
	__u64 duration_ns;
	__s32 code;
	__s32 fd;   /* the connection's, read through http2Server.conn; -1 unknown */
	__u8 flags; /* GRPC_* */
	__u8 _pad[7];
	struct tcp_info_lite tcp;
	char method[GRPC_METHOD_LEN];
	struct req_state st; /* with GRPC_BREAKDOWN */
	struct addrs slot_addrs[REQ_SLOTS];
	struct tcp_info_lite slot_tcp[REQ_SLOTS];
	struct grpc_calls calls;
};

struct grpc_client_request_event {
	struct event_header hdr;
	__u64 duration_ns;
	__s32 code;
	__u8 flags;
	__u8 _pad[3];
	char method[GRPC_METHOD_LEN];
	char target[GRPC_TARGET_LEN];
};

/* The calling process' layout, with the calling goroutine in k; NULL
 * when it is not traced (the PID filter, before any other read) or the
 * goroutine cannot be read. */
static __always_inline struct grpc_layout *grpc_caller(struct pt_regs *ctx, struct req_key *k)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct grpc_layout *l = bpf_map_lookup_elem(&grpc_layouts, &pid);
	k->pid = pid;
	if (!l || read_goid_at(ctx, l->g_goid, &k->goid))
		return NULL;
	return l;
}

/* The code of a *status.Status; -1 when it cannot be read. A nil one
 * (or one without its message) is OK, as grpc has it. */
static __always_inline __s32 grpc_status_code(const struct grpc_layout *l, __u64 st)
{
	__u64 proto = 0;
	__s32 code = 0;
	if (!st)
		return 0;
	if (bpf_probe_read_user(&proto, sizeof(proto), (void *)(st + l->status_proto)))
		return -1;
	if (!proto)
		return 0;
	if (bpf_probe_read_user(&code, sizeof(code), (void *)(proto + l->proto_code)))
		return -1;
	return code;
}

SEC("uprobe")
int grpc_server_start(struct pt_regs *ctx)
{
	struct req_key k = {};
	struct grpc_layout *l = grpc_caller(ctx, &k);
	if (!l)
		return 0;
	/* A goroutine that serves an HTTP request already serves a stream of
	 * grpc's ServeHTTP, whose end is not probed: that call is the HTTP
	 * request. */
	struct req_state *st = bpf_map_lookup_elem(&req_active, &k);
	if (st && st->t_start)
		return 0;
	struct grpc_server_state s = {.t_start = bpf_ktime_get_boot_ns(), .stream = GO_REG_ARG(ctx, 3)};
	/* Its goroutine's waits count for it. */
	req_open(&k, s.t_start, st);
	put_in_place(&grpc_server_active, &k, &s);
	return 0;
}

static __always_inline void grpc_hist_add(struct grpc_hist_key *k, __u64 ns)
{
	struct req_hist *h = hist_of(&grpc_hists, k);
	if (h)
		hist_add(h, ns);
}

SEC("uprobe")
int grpc_server_end(struct pt_regs *ctx)
{
	struct req_key k = {};
	struct grpc_layout *l = grpc_caller(ctx, &k);
	if (!l)
		return 0;
	struct grpc_server_state *sp = bpf_map_lookup_elem(&grpc_server_active, &k);
	__u64 stream = GO_REG_ARG(ctx, 1);
	/* The transport's own writes (a stream it refused) run on
	 * goroutines that serve no call. A status written again for the
	 * call just closed (or this probe fired again after a stack growth)
	 * counts once. */
	if (!sp || sp->stream != stream) {
		req_count(REQ_COUNT_GRPC_NO_START);
		return 0;
	}
	if (!sp->t_start)
		return 0;
	__u64 t_start = sp->t_start;
	__u64 dur = bpf_ktime_get_boot_ns() - t_start;
	sp->t_start = 0;
	__s32 code = grpc_status_code(l, GO_REG_ARG(ctx, 2));
	struct grpc_hist_key hk = {.pid = k.pid, .code = (__u16)code};
	if (code < 0)
		hk.flags |= GRPC_NO_CODE;
	long n = read_gostring(hk.method, sizeof(hk.method), stream + l->stream_method);
	if (n >= GRPC_HIST_METHOD_LEN)
		hk.flags |= GRPC_TRUNCATED;
	grpc_hist_add(&hk, dur);

	/* Its goroutine's request entry (gone if the LRU evicted it). */
	struct req_state *st = bpf_map_lookup_elem(&req_active, &k);
	if (st && st->t_start != t_start)
		st = NULL;
	if (dur >= l->slow_ns) {
		struct grpc_request_event *e = reserve_event(struct grpc_request_event, (enum event_type)EVENT_GRPC_REQUEST);
		if (e) {
			fill_header(&e->hdr, (enum event_type)EVENT_GRPC_REQUEST, bpf_get_current_pid_tgid());
			e->hdr.goid = k.goid;
			e->hdr.goid_ok = 1;
			e->duration_ns = dur;
			e->code = code;
			e->flags = hk.flags & GRPC_NO_CODE;
			__builtin_memset(e->_pad, 0, sizeof(e->_pad));
			/* The transport (writeStatus' receiver) and its connection. */
			struct sock *sk = NULL;
			e->fd = l->server_conn ? tcp_conn_fd(l->fd_sysfd, GO_REG_ARG(ctx, 0) + l->server_conn, &sk) : -1;
			__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
			if (sk)
				read_sk_addrs(sk, &e->addrs);
			read_tcp_info(sk, &e->tcp);
			n = read_gostring(e->method, sizeof(e->method), stream + l->stream_method);
			if (n >= GRPC_METHOD_LEN)
				e->flags |= GRPC_TRUNCATED;
			if (st) {
				e->flags |= GRPC_BREAKDOWN;
				__builtin_memcpy(&e->st, st, sizeof(e->st));
			} else {
				__builtin_memset(&e->st, 0, sizeof(e->st));
				for (int i = 0; i < REQ_SLOTS; i++)
					e->st.slot[i].fd = -1;
			}
			read_slots(&e->st, e->slot_addrs, e->slot_tcp);
			__builtin_memcpy(&e->calls, &sp->calls, sizeof(e->calls));
			submit(e);
		}
	}
	/* Closed; the entry stays for the goroutine's next call (LRU). */
	if (st)
		st->t_start = 0;
	return 0;
}

SEC("uprobe")
int grpc_client_start(struct pt_regs *ctx)
{
	struct req_key k = {};
	struct grpc_layout *l = grpc_caller(ctx, &k);
	if (!l)
		return 0;
	struct grpc_client_state c = {
		.t_start = bpf_ktime_get_boot_ns(),
		.method = {.ptr = GO_REG_ARG(ctx, 4), .len = (__s64)GO_REG_ARG(ctx, 5)},
		.cc = GO_REG_ARG(ctx, 3),
		.goid = k.goid,
	};
	/* Whose request a call of a goroutine the serving one started
	 * counts for (grpc_call_made): read while it runs. */
	if (l->g_parent_goid)
		bpf_probe_read_user(&c.parent, sizeof(c.parent), (void *)(GO_REG_G(ctx) + l->g_parent_goid));
	put_in_place(&grpc_client_active, &k, &c);
	return 0;
}

SEC("uprobe")
int grpc_client_bind(struct pt_regs *ctx)
{
	struct req_key k = {};
	struct grpc_layout *l = grpc_caller(ctx, &k);
	if (!l)
		return 0;
	/* Only a first attempt has a call begun on its goroutine: a retry
	 * (on whichever goroutine sends or receives) does not. */
	struct grpc_client_state *cp = bpf_map_lookup_elem(&grpc_client_active, &k);
	if (!cp || !cp->t_start)
		return 0;
	struct grpc_stream_key sk = {.pid = k.pid, .cs = GO_REG_ARG(ctx, 0)};
	struct grpc_client_state *sp = bpf_map_lookup_elem(&grpc_client_streams, &sk);
	/* A stream in flight keeps its start (a begun call left unbound by
	 * a newClientStream that failed early does not take it over). */
	if (sp && sp->t_start)
		return 0;
	put_in_place(&grpc_client_streams, &sk, cp);
	cp->t_start = 0;
	return 0;
}

/* Where the calls of the request goroutine owner serves are summed, if
 * it serves one that began by t_start: a gRPC server call's state, or
 * an HTTP request's entry in http_grpc_calls (made, or reset for a new
 * request, here). */
static __always_inline struct grpc_calls *grpc_calls_of(const struct req_key *owner, __u64 t_start)
{
	struct grpc_server_state *sp = bpf_map_lookup_elem(&grpc_server_active, owner);
	if (sp && sp->t_start && t_start >= sp->t_start)
		return &sp->calls;
	struct req_state *st = bpf_map_lookup_elem(&req_active, owner);
	if (!st || !st->t_start || t_start < st->t_start)
		return NULL;
	struct req_grpc_calls *h = bpf_map_lookup_elem(&http_grpc_calls, owner);
	if (!h) {
		struct req_grpc_calls fresh = {.since = st->t_start};
		bpf_map_update_elem(&http_grpc_calls, owner, &fresh, BPF_ANY);
		h = bpf_map_lookup_elem(&http_grpc_calls, owner);
		if (!h)
			return NULL;
	}
	if (h->since != st->t_start) {
		__builtin_memset(&h->calls, 0, sizeof(h->calls));
		h->since = st->t_start;
	}
	return &h->calls;
}

/* Client call cs, which took dur: it counts for the request (gRPC or
 * HTTP) that the goroutine which began it serves, or else the one its
 * parent serves (a handler that fans out, one generation). */
static __always_inline void grpc_call_made(__u32 pid, const struct grpc_client_state *cs, __u64 dur,
					   const struct grpc_hist_key *hk)
{
	struct req_key owner = {.pid = pid, .goid = cs->goid};
	struct grpc_calls *c = grpc_calls_of(&owner, cs->t_start);
	if (!c && cs->parent) {
		owner.goid = cs->parent;
		c = grpc_calls_of(&owner, cs->t_start);
	}
	if (!c)
		return;
	c->count++;
	c->ns += dur;
	if (dur > c->slowest_ns) {
		c->slowest_ns = dur;
		__builtin_memcpy(c->slowest_method, hk->method, sizeof(c->slowest_method));
		__builtin_memcpy(c->slowest_target, hk->target, sizeof(c->slowest_target));
	}
}

SEC("uprobe")
int grpc_client_end(struct pt_regs *ctx)
{
	/* The PID filter first; no goroutine is read: the call's is the one
	 * that began it. */
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct grpc_layout *l = bpf_map_lookup_elem(&grpc_layouts, &pid);
	if (!l)
		return 0;
	struct grpc_stream_key sk = {.pid = pid, .cs = GO_REG_ARG(ctx, 0)};
	struct grpc_client_state *cp = bpf_map_lookup_elem(&grpc_client_streams, &sk);
	if (!cp) {
		req_count(REQ_COUNT_GRPC_CLIENT_NO_START);
		return 0;
	}
	/* Ended already: grpc's own second finish. */
	if (!cp->t_start)
		return 0;
	struct grpc_client_state c = *cp;
	cp->t_start = 0;
	__u64 dur = bpf_ktime_get_boot_ns() - c.t_start;
	__u64 itab = GO_REG_ARG(ctx, 1), data = GO_REG_ARG(ctx, 2);
	__s32 code = 0;
	struct gostring eof = {};
	if (itab == l->error_itab && data) {
		__u64 st = 0;
		code = bpf_probe_read_user(&st, sizeof(st), (void *)(data + l->error_status)) ? -1 : grpc_status_code(l, st);
	} else if (itab && (bpf_probe_read_user(&eof, sizeof(eof), (void *)l->eof) || itab != eof.ptr || data != (__u64)eof.len)) {
		/* Not io.EOF, and not a status: grpc's status.Code says Unknown. */
		code = 2;
	}
	struct grpc_hist_key hk = {.pid = pid, .code = (__u16)code, .client = 1};
	if (code < 0)
		hk.flags |= GRPC_NO_CODE;
	long n = copy_gostring(hk.method, sizeof(hk.method), &c.method);
	if (n >= GRPC_HIST_METHOD_LEN)
		hk.flags |= GRPC_TRUNCATED;
	if (l->cc_target && c.cc && read_gostring(hk.target, sizeof(hk.target), c.cc + l->cc_target) >= GRPC_TARGET_LEN)
		hk.flags |= GRPC_TRUNCATED;
	grpc_hist_add(&hk, dur);
	grpc_call_made(pid, &c, dur, &hk);
	if (dur < l->slow_ns)
		return 0;
	struct grpc_client_request_event *e = reserve_event(struct grpc_client_request_event, (enum event_type)EVENT_GRPC_CLIENT_REQUEST);
	if (!e)
		return 0;
	fill_header(&e->hdr, (enum event_type)EVENT_GRPC_CLIENT_REQUEST, bpf_get_current_pid_tgid());
	e->hdr.goid = c.goid;
	e->hdr.goid_ok = 1;
	e->duration_ns = dur;
	e->code = code;
	e->flags = hk.flags & (GRPC_NO_CODE | GRPC_TRUNCATED);
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	n = copy_gostring(e->method, sizeof(e->method), &c.method);
	if (n >= GRPC_METHOD_LEN)
		e->flags |= GRPC_TRUNCATED;
	__builtin_memcpy(e->target, hk.target, sizeof(e->target));
	submit(e);
	return 0;
}

const struct http_request_event *unused_http_request_event __attribute__((unused));
const struct http_client_request_event *unused_http_client_request_event __attribute__((unused));
const enum req_event_type *unused_req_event_type __attribute__((unused));
const enum req_count *unused_req_count __attribute__((unused));
const struct grpc_request_event *unused_grpc_request_event __attribute__((unused));
const struct grpc_client_request_event *unused_grpc_client_request_event __attribute__((unused));
