/* Requests in flight and where their time goes: shared by
 * bpf/requests.bpf.c (the net/http uprobes, pkg/requests), which opens and
 * closes them, and bpf/netpoll.bpf.c, which adds each netpoll wait of a
 * goroutine serving a request to it. The maps are netpoll's; user space
 * hands them to the requests object (pkg/tracer).
 *
 * A wait counts for a request in two ways:
 *  - own: the serving goroutine itself waited (reading the client's body,
 *    writing, or a downstream it talks to directly, such as most database
 *    drivers): found by (pid, goid) in req_active.
 *  - via a client call: net/http's Transport reads and writes a
 *    downstream connection on goroutines of its own (persistConn's
 *    readLoop and writeLoop), never on the caller's. The client probe
 *    notes which connection (fd) the serving goroutine's round trip uses
 *    and since when (req_fds); a wait on that fd by any goroutine of the
 *    process counts for the request, clipped to the round trip's start.
 *    A round trip made by a goroutine the serving one started (its
 *    g.parentGoid, one generation) counts for the parent's request too.
 * Each wait is clipped to the request's start too, so a keep-alive
 * connection's idle wait before the request is not counted.
 *
 * Where an HTTP/1 request starts: on the sock path (netpoll's socket
 * tracepoints or fexit) at the serving goroutine's first read of a byte
 * the client sent after the server's last send on the connection
 * (req_read); no uprobe runs for it (nor for its end there: serve_send).
 * On the syscall path, where reads are not seen that cheaply, at
 * requests.bpf.c's server_start uprobe (CALL ServeHTTP). HTTP/2 streams
 * start at server_start on runHandler either way (their goroutines read
 * no socket).
 */
#pragma once

/* Connections (fds) kept per request with their own sums; waits on more
 * fds count in the totals and in `unslotted`. */
#define REQ_SLOTS 4

struct req_key {
	__u32 pid;
	__u32 _pad;
	__u64 goid;
};

/* The waits on one fd during a request. */
struct req_wait {
	__u64 io_ns;    /* parked -> ready: waiting for the peer */
	__u64 sched_ns; /* ready -> running: waiting for the Go scheduler */
	__u64 client_ns; /* round trips of the serving goroutine on this fd (client probe) */
	__s32 fd;       /* -1: slot free */
	__u16 waits;
	__u8 via_client; /* waited on by a Transport goroutine for the serving goroutine's round trip */
	__u8 client_calls;
};

/* A request being served, by its serving goroutine. The entry outlives
 * the request (reset at the connection's next one); t_start 0: no request
 * in flight. */
struct req_state {
	__u64 t_start; /* bpf_ktime_get_boot_ns at its start; 0 between requests */
	__u64 t_end;   /* when this goroutine's last request ended; 0: none yet */
	__u64 io_ns;    /* every counted wait's parts, slotted or not */
	__u64 sched_ns;
	__u32 waits;
	__u32 unslotted; /* waits on fds that found no free slot */
	__u64 connect_ns; /* of those, connects' waits (a dial the request started) */
	struct req_wait slot[REQ_SLOTS];
	/* 1: the handler sent bytes of its response before it returned
	 * (a Flush, or a 100 Continue) and the request ends at a send or a
	 * read after it returned (requests.bpf.c serve_send, serve_recv):
	 * a read of the client's bytes past that send does not start the
	 * next request (req_read). */
	__u64 flushed;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192); /* 1 unless request tracing is on (pkg/netpoll) */
	__type(key, struct req_key);
	__type(value, struct req_state);
} req_active SEC(".maps");

struct req_fd_key {
	__u32 pid;
	__s32 fd;
};

/* A downstream connection in use by a serving goroutine's round trip. */
struct req_fd {
	__u64 goid;    /* the goroutine that called RoundTrip */
	__u64 t_start; /* when the round trip started */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192); /* 1 unless request tracing is on */
	__type(key, struct req_fd_key);
	__type(value, struct req_fd);
} req_fds SEC(".maps");

/* Per target: where a goroutine's parent id is, for connects
 * (runtime.g.parentGoid; 0 unknown). Set by pkg/requests. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* 1 unless request tracing is on */
	__type(key, __u32);        /* tgid */
	__type(value, __u16);
} req_parent_off SEC(".maps");

/* The targets whose HTTP/1 server requests start at a read on the sock
 * path (req_read; netpoll.bpf.c looks a target up before it calls it):
 * pkg/requests adds one once its server_end probe is attached, so no
 * request is opened that nothing would close. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); /* 1 unless request tracing is on */
	__type(key, __u32);        /* tgid */
	__type(value, __u8);
} req_read_starts SEC(".maps");

/* The PID filter (gonetscope.h pid_in) of the targets on netpoll's sock
 * path, set by pkg/netpoll: netpoll's socket programs run it first, and
 * so do requests.bpf.c's (serve_send, serve_recv; a target without
 * net/http has no served_conns entries). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} sock_pids SEC(".maps");

/* Sets map's entry for key k to *v: in place where it exists (an LRU
 * update costs more than the rest of a probe), else a new one. */
#define put_in_place(map, k, v)                                      \
	({                                                           \
		typeof(*(v)) *__p = bpf_map_lookup_elem(map, k);     \
		if (__p)                                             \
			*__p = *(v);                                 \
		else                                                 \
			bpf_map_update_elem(map, k, v, BPF_ANY);     \
	})

/* Opens a request served by goroutine k at now: netpoll adds the
 * goroutine's waits to it from now on. A connection's requests are
 * served one after another by one goroutine: its entry is reset in place
 * (an LRU update and delete per request cost more than the rest of the
 * probe), and made only for its first request. st: the entry, if already
 * looked up. */
static __always_inline void req_open(struct req_key *k, __u64 now, struct req_state *st)
{
	struct req_state fresh = {.t_start = now};
	for (int i = 0; i < REQ_SLOTS; i++)
		fresh.slot[i].fd = -1;
	if (st) {
		fresh.t_end = st->t_end;
		*st = fresh;
	} else {
		put_in_place(&req_active, k, &fresh);
	}
}

/* A server request's start on the sock path: a connection that pid
 * accepted has just had read the first byte the client sent after the
 * server's last send, by goroutine goid or for it (goid made that send;
 * netpoll.bpf.c). That begins the
 * connection's next request, unless one is in flight: then it is a body
 * the client sent after an interim response (100 Continue). A first
 * request is the exception: until a request of the goroutine has ended,
 * each such read starts it again, so a TLS handshake's round trips
 * before the request are not counted as the request; but not once its
 * handler has sent part of its response (flushed): then the read is a
 * body after 100 Continue, or the next request's, read before the
 * flushed request was seen to end (requests.bpf.c serve_recv ends it,
 * and the next one starts where it ended). */
static __always_inline void req_read(__u32 pid, __u64 goid, __u64 now)
{
	struct req_key k = {.pid = pid, .goid = goid};
	struct req_state *st = bpf_map_lookup_elem(&req_active, &k);
	if (st && st->t_start && (st->t_end || st->flushed))
		return;
	req_open(&k, now, st);
}

/* The slot of st for fd, claimed if fd has none yet; NULL when all are
 * taken by other fds. */
static __always_inline struct req_wait *req_slot(struct req_state *st, __s32 fd)
{
	for (int i = 0; i < REQ_SLOTS; i++) {
		struct req_wait *w = &st->slot[i];
		if (w->fd == fd || w->fd == -1) {
			w->fd = fd;
			return w;
		}
	}
	return NULL;
}

/* Adds a wait on fd to its slot of st, creating the slot. */
static __always_inline void req_slot_add(struct req_state *st, __s32 fd, __u64 io, __u64 sched, __u8 via_client)
{
	__sync_fetch_and_add(&st->io_ns, io);
	__sync_fetch_and_add(&st->sched_ns, sched);
	__sync_fetch_and_add(&st->waits, 1);
	struct req_wait *w = req_slot(st, fd);
	if (!w) {
		__sync_fetch_and_add(&st->unslotted, 1);
		return;
	}
	w->io_ns += io;
	w->sched_ns += sched;
	w->waits++;
	w->via_client |= via_client;
}

/* A netpoll wait of goid on fd ended at now (netpoll.bpf.c wait_done):
 * counts it for the request it served, or the request whose round trip
 * it waited for, if any. t_ready 0: no ready seen (all of it I/O). */
static __always_inline void req_account(__u32 pid, __u64 goid, __s32 fd, __u64 t_park, __u64 t_ready, __u64 now,
					bool connect)
{
	struct req_key k = {.pid = pid, .goid = goid};
	__u64 since = 0;
	__u8 via = 0;
	struct req_state *st = bpf_map_lookup_elem(&req_active, &k);
	/* A connect by a goroutine the serving one started: net/http dials
	 * a new downstream connection on a goroutine of its own. At the
	 * connect's end the thread runs that goroutine: its g is in the
	 * saved user registers. Connects are rare; one read each. */
	if (!st && connect) {
		__u16 *off = bpf_map_lookup_elem(&req_parent_off, &pid);
		__u64 g = USER_GO_G(), parent = 0;
		if (off && *off && g && !bpf_probe_read_user(&parent, sizeof(parent), (void *)(g + *off)) && parent) {
			k.goid = parent;
			st = bpf_map_lookup_elem(&req_active, &k);
			if (st && st->t_start)
				via = 1;
			else
				st = NULL;
		}
	}
	if (st) {
		/* Between two requests of its connection. */
		if (!st->t_start)
			return;
		since = st->t_start;
	} else {
		struct req_fd_key fk = {.pid = pid, .fd = fd};
		struct req_fd *f = bpf_map_lookup_elem(&req_fds, &fk);
		if (!f)
			return;
		k.goid = f->goid;
		since = f->t_start;
		st = bpf_map_lookup_elem(&req_active, &k);
		/* A round trip of an earlier request of that goroutine. */
		if (!st || !st->t_start || since < st->t_start)
			return;
		via = 1;
	}
	if (t_park > since)
		since = t_park;
	if (now <= since)
		return;
	__u64 io = now - since, sched = 0;
	if (t_ready && t_ready >= t_park && t_ready <= now) {
		io = t_ready > since ? t_ready - since : 0;
		sched = now - since - io;
	}
	if (connect)
		__sync_fetch_and_add(&st->connect_ns, io + sched);
	req_slot_add(st, fd, io, sched, via);
}
