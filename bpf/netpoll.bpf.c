//go:build ignore

/* netpoll: how long a goroutine waits for a socket, and whether the peer or
 * the Go scheduler made it wait. Loaded by pkg/netpoll.
 *
 * A goroutine that parks in Go's netpoller leaves three marks in the syscalls:
 *   1. park:   read/write/accept4/connect/... returns EAGAIN (EINPROGRESS for
 *              connect) on a non-blocking socket: the goroutine parks.
 *   2. ready:  the netpoller's epoll_pwait returns that fd: the runtime makes
 *              the goroutine runnable.
 *   3. resume: the same goroutine's next syscall on that fd: it ran again.
 * park -> ready is I/O wait (the peer), ready -> resume is scheduling delay.
 * Keyed by (pid, fd, direction), never by thread: a goroutine often parks on
 * one thread and resumes on another.
 *
 * Two ways to see them, chosen at start-up (pkg/netpoll):
 *  - the sock path (Linux 6.3+): the socket tracepoints sock_recv_length
 *    and sock_send_length, as tp_btf, fire in the reading or writing
 *    goroutine's syscall for socket I/O only, EAGAIN included: park and
 *    resume. The kernel's own readiness of the socket, sk_data_ready (and
 *    a connect's end of handshake, inet_sock_set_state), is the ready.
 *    A read's or write's park lives in the socket's own storage
 *    (sock_waits), not in a map keyed by fd.
 *  - the syscall path: tracepoints on the syscalls above and epoll_pwait.
 *    Every read and write on the host runs the PID filter.
 * Accept4, connect and getsockopt, which no socket tracepoint sees, are
 * hooked on either path with fentry/fexit on the kernel functions they
 * call, or, where the kernel has no fentry, with their syscall tracepoints
 * (rare calls, but then every thread on the host pays, below).
 * While any syscall tracepoint is attached, every thread on the host takes
 * the slow syscall entry (TIF_SYSCALL_TRACEPOINT).
 */

#include "gonetscope.h"
#include "parks.h"
#include "hist.h"
#include "requests.h"
#include "calls.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define EPOLLIN 0x001
#define EPOLLOUT 0x004
#define EPOLLERR 0x008
#define EPOLLHUP 0x010
#define EPOLLRDHUP 0x2000

/* Go's netpoll reads at most 128 events per epoll_pwait. */
#define MAX_EPOLL_EVENTS 128

/* The PID filter every program here runs first (gonetscope.h pid_in),
 * set by user space beside the `targets` entry (pkg/netpoll AddTarget). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PID_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} traced_pids SEC(".maps");

/* The same filter for the targets on the sock path (below) is
 * sock_pids (requests.h), which requests' socket programs run too. */

/* Targets on the syscall tracepoint path. */
static __always_inline bool traced(__u32 tgid)
{
	return pid_in(&traced_pids, tgid);
}

/* Targets on the sock path. */
static __always_inline bool sock_path(__u32 tgid)
{
	return pid_in(&sock_pids, tgid);
}

/* The programs that only the syscall path needs (read, write, close,
 * epoll_pwait) serve its targets; accept4, connect and getsockopt serve
 * every target. */
static __always_inline bool serves(__u32 tgid, bool both_paths)
{
	return traced(tgid) || (both_paths && sock_path(tgid));
}

/* make bench's cost table only (cmd/bench): how much of each program
 * runs, so each part's cost can be measured alone. Set before load; the
 * verifier drops the code a stage cuts off. COST_ALL in normal use. Each
 * stage includes the ones before it. */
enum cost_stage {
	COST_ALL = 0,
	COST_DISPATCH = 1, /* programs attached, return at once */
	COST_FILTER = 2,   /* + the PID filter */
	COST_GOID = 3,     /* + target lookup, goroutine read and validation at each park */
	COST_RECORDS = 4,  /* + park/ready/resume records and histograms; no epoll events scan */
};
const volatile __u32 cost = COST_ALL;

/* The start of the programs on the targets' calls: the cost stages make
 * bench cuts them at, around the PID filter (serves). */
static __always_inline bool passes_filter(bool both_paths, __u64 *pid_tgid)
{
	if (cost == COST_DISPATCH)
		return false;
	*pid_tgid = bpf_get_current_pid_tgid();
	return serves(*pid_tgid >> 32, both_paths) && cost != COST_FILTER;
}

/* Whether a wait is worth a human's look. WAIT_IDLE: a server connection
 * waiting for the client's next request (a read on an accepted connection
 * that has received nothing yet, or whose last data went out after the
 * last data came in), or an accept finding the queue empty.
 * WAIT_IN_REQUEST: everything else (a partial request, a downstream call's
 * response, a write, a connect). */
enum wait_kind {
	WAIT_IN_REQUEST = 0,
	WAIT_IDLE = 1,
};

/* A park record's mode carries PARK_IDLE for an idle wait. struct park is
 * shared with acceptq.bpf.c, which compares mode with MODE_ACCEPT only;
 * accept parks never carry the flag (their kind follows from the mode). */
#define PARK_IDLE 0x80

/* The target's accepted connections, by (pid, fd): their TCP struct sock
 * (0 until it is looked up) and how many bytes the socket had received
 * when the server last sent on it. Added at accept4 and, for connections
 * accepted before attach, by user space (pkg/netpoll SeedAccepted);
 * updated by every successful send. The syscall path removes an entry at
 * close; the sock path, which does not hook close, finds a reused fd by
 * its socket's other inode. */
struct conn_key {
	__u32 pid;
	__s32 fd;
};

struct conn {
	__u64 sk;
	__u64 rcvd_at_send; /* tcp_sock.bytes_received at the last send */
	__u64 ino;          /* the socket's inode number: a freed sock's address is reused, its inode number is not */
};

/* The inode number of the file behind fd in the current process, or 0. */
static __always_inline __u64 fd_ino(int fd)
{
	struct file *f = file_of_fd(fd);
	return f ? BPF_CORE_READ(f, f_inode, i_ino) : 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn);
} accepted_fds SEC(".maps");

/* The accepted connection on fd, with its TCP sock, or NULL. sk is the
 * fd's socket when the caller knows it (the sock path), else NULL: then
 * the sock is looked up once through the fd table. */
static __always_inline struct tcp_sock *accepted_conn(__u32 pid, __s32 fd, struct sock *sk,
						      struct conn **cp)
{
	struct conn_key k = {.pid = pid, .fd = fd};
	struct conn *c = bpf_map_lookup_elem(&accepted_fds, &k);
	if (!c)
		return NULL;
	/* The sock path (sk given) has no close hook: the fd's socket now,
	 * by inode, since after a close the fd number and the sock's address
	 * can both come back for another socket. The syscall path forgets the
	 * entry at close. */
	if (sk) {
		__u64 ino = fd_ino(fd);
		if (c->ino && c->ino != ino) {
			bpf_map_delete_elem(&accepted_fds, &k);
			return NULL;
		}
		c->ino = ino;
	}
	if (!sk)
		sk = c->sk ? NULL : sock_from_fd(fd);
	if (sk) {
		struct sock *tsk = tcp_sock_of(sk);
		if (!is_tcp(tsk) || (c->sk && c->sk != (__u64)tsk)) {
			/* Not TCP, or the accepted socket was closed and its
			 * fd number reused. */
			bpf_map_delete_elem(&accepted_fds, &k);
			return NULL;
		}
		c->sk = (__u64)tsk;
	}
	*cp = c;
	return (struct tcp_sock *)c->sk;
}

/* A read about to park on fd: is it the idle wait of a server connection,
 * waiting for the client's next request? Exactly when the socket has
 * received no byte since the server last sent (or, before any send, no byte
 * at all): a partial request, however fast it came, is in_request. */
static __always_inline bool idle_read(__u32 pid, __s32 fd)
{
	struct conn *c = NULL;
	struct tcp_sock *tp = accepted_conn(pid, fd, NULL, &c);
	return tp && c && BPF_CORE_READ(tp, bytes_received) == c->rcvd_at_send;
}

/* A send on fd went out: note how much the connection had received then. */
static __always_inline void note_sent(__u32 pid, __s32 fd)
{
	struct conn *c = NULL;
	struct tcp_sock *tp = accepted_conn(pid, fd, NULL, &c);
	if (tp && c)
		c->rcvd_at_send = BPF_CORE_READ(tp, bytes_received);
}

/* Which events are sent to user space: bit (1 << enum event_type). Set
 * from --events before load; waits not sent still count in the
 * histograms. */
const volatile __u32 send_events = (1 << EVENT_NETPOLL_WAIT);
/* 1: idle netpoll waits are sent too (--waits all). */
const volatile __u32 send_idle = 0;
/* 1: request tracing is on: every wait is offered to the request its
 * goroutine serves (requests.h). Set before load. */
const volatile __u32 track_requests = 0;

/* Ring buffer notification. By default a submit wakes the reader only
 * when it last did so wakeup_interval_ns ago or more, or when wakeup_bytes
 * are waiting; other submits use BPF_RB_NO_WAKEUP. The reader (pkg/tracer)
 * drains once more wakeup_interval_ns after it is woken, which collects
 * every record submitted without a wake-up (each came less than an
 * interval after the last wake-up), and blocks with no timer once a drain
 * finds nothing. So a lone event is read at once, a stream costs at most
 * one wake-up per interval, and an idle tracer none. wakeup_each = 1 is
 * the kernel's default instead, a wake-up (irq_work) whenever the reader
 * has caught up: nearly every record under a steady trickle (make bench's
 * cost table). */
const volatile __u32 wakeup_each = 0;
const volatile __u64 wakeup_bytes = 256 << 10;
const volatile __u64 wakeup_interval_ns = 50000000;
__u64 last_wakeup_ns = 0;

/* Submits e as of now, a bpf_ktime_get_boot_ns() the caller has read
 * (the clock of last_wakeup_ns). */
static __always_inline void submit_at(void *e, __u64 now)
{
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (wakeup_each) {
		flags = 0;
	} else {
		if (now - last_wakeup_ns >= wakeup_interval_ns ||
		    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes) {
			last_wakeup_ns = now;
			flags = BPF_RB_FORCE_WAKEUP;
		}
	}
	bpf_ringbuf_submit(e, flags);
}

struct netpoll_wait_event {
	struct event_header hdr;
	struct addrs addrs;
	__u64 wait_ns;        /* parked -> running again */
	__u64 io_wait_ns;     /* parked -> the netpoller saw the fd ready */
	__u64 sched_delay_ns; /* ready -> running again */
	__s64 deadline_ns;    /* the deadline of the side it waited on, from the park (deadline DEADLINE_SET) */
	__s32 fd;
	__u32 park_tid;       /* the thread the goroutine parked on */
	__u8 mode;            /* enum mode */
	__u8 ready_seen;      /* the netpoller reported the fd; else woken otherwise (deadline) */
	__u8 kind;            /* enum wait_kind */
	__u8 deadline;        /* enum deadline */
	__u8 _pad[4];
	struct user_stack stack; /* at the resume, with --stacks */
};

struct epoll_wait_event {
	struct event_header hdr;
	__u64 block_ns;
	__s32 ready;      /* epoll_pwait's return value */
	__s32 timeout_ms;
	__s32 epfd;
	__u32 _pad;
};

struct epoll_call {
	__u64 t_enter;
	__u64 events; /* user address of the epoll_event array */
	__s32 timeout_ms;
	__s32 epfd;
};

/* One entry per netpoller thread, kept and rewritten in place at each
 * call (t_enter 0: none pending): an insert and a delete per call cost an
 * allocation and a free each where the kernel allocates hash elements on
 * use (pkg/bpfobj). LRU, so the entries of threads gone make room. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct epoll_call);
} epoll_calls SEC(".maps");

/* A call of the netpoller's epoll_pwait by thread tid begins. */
static __always_inline void epoll_called(__u32 tid, const struct epoll_call *c)
{
	struct epoll_call *cp = bpf_map_lookup_elem(&epoll_calls, &tid);
	if (cp)
		*cp = *c;
	else
		bpf_map_update_elem(&epoll_calls, &tid, c, BPF_ANY);
}

/* Which park waits on a socket, by the socket's struct sock and direction:
 * the kernel's readiness tracepoints (sock path) know the socket, not the
 * process. */
struct parked_sock_key {
	__u64 sk;
	__u32 dir; /* enum dir */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct parked_sock_key);
	__type(value, struct park_key);
} parked_socks SEC(".maps");

/* Step 1: an I/O call on fd said "would block" (ret); the goroutine is
 * about to park. Also keeps the accepted connections (accept4's result)
 * and their last send (a write's) for idle_read. For the syscall path,
 * and for accept4 and connect on both (the sock path's reads and writes
 * park in sock_io). */
static __always_inline int park(void *ctx, __u64 pid_tgid, __s32 fd, long ret, enum dir dir,
				enum mode mode)
{
	struct sock *sk = NULL;
	if (mode == MODE_ACCEPT && ret >= 0 && cost == COST_ALL) {
		struct sock *nsk = tcp_sock_of(sock_from_fd((__s32)ret));
		if (nsk && !is_tcp(nsk))
			return 0;
		struct conn_key k = {.pid = pid_tgid >> 32, .fd = (__s32)ret};
		struct conn c = {.sk = (__u64)nsk, .ino = fd_ino((__s32)ret)};
		bpf_map_update_elem(&accepted_fds, &k, &c, BPF_ANY);
		return 0;
	}
	if (dir == DIR_WRITE && mode == MODE_WRITE && ret > 0 && cost == COST_ALL) {
		note_sent(pid_tgid >> 32, fd);
		return 0;
	}
	if (ret != -EAGAIN && !(mode == MODE_CONNECT && ret == -EINPROGRESS))
		return 0;
	struct target *t = lookup_target(pid_tgid >> 32);
	if (!t)
		return 0;
	struct event_header h = {};
	read_goid(t, (__u32)pid_tgid, &h);
	if (!h.goid_ok || cost == COST_GOID)
		return 0; /* a park we cannot attribute is not worth a record */
	struct park_key key = {
		.pid = pid_tgid >> 32,
		.fd = fd,
		.dir = dir,
	};
	struct park p = {
		.goid = h.goid,
		.t_park = bpf_ktime_get_boot_ns(),
		.tid = (__u32)pid_tgid,
		.mode = mode,
	};
	if (mode == MODE_READ && idle_read(key.pid, key.fd))
		p.mode |= PARK_IDLE;
	/* On the sock path, readiness comes from the kernel's socket
	 * tracepoints: for the listener's socket, or, for a connect, its TCP
	 * subflow's end of handshake. */
	if ((mode == MODE_ACCEPT || mode == MODE_CONNECT) && sock_path(key.pid)) {
		sk = sock_from_fd(fd);
		if (mode == MODE_CONNECT)
			sk = tcp_sock_of(sk);
	}
	if (sk) {
		p.sk = (__u64)sk;
		struct parked_sock_key sk_key = {.sk = p.sk, .dir = dir};
		bpf_map_update_elem(&parked_socks, &sk_key, &key, BPF_ANY);
	}
	bpf_map_update_elem(&parks, &key, &p, BPF_ANY);
	return 0;
}

/* park for a syscall exit tracepoint, where fd is the first argument. */
static __always_inline int park_at_exit(struct trace_event_raw_sys_exit *ctx, enum dir dir,
					enum mode mode, bool both_paths)
{
	__u64 pid_tgid;
	if (!passes_filter(both_paths, &pid_tgid))
		return 0;
	if (both_paths && calls_by_uprobe(pid_tgid >> 32))
		return 0;
	return park(ctx, pid_tgid, (__s32)USER_ARG0(), ctx->ret, dir, mode);
}

/* Netpoll profile (gonetscope profile --kind netpoll): the user stack of
 * the goroutine where it resumes, i.e. the call that waited, weighted by the
 * wait. Only for the PIDs in stack_pids; user space sizes
 * netpoll_stack_traces (1 entry unless profiling). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* unused */
} stack_pids SEC(".maps");

#define PROFILE_STACK_DEPTH 127

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PROFILE_STACK_DEPTH * sizeof(__u64));
} netpoll_stack_traces SEC(".maps");

struct netpoll_stack_key {
	__u32 pid;
	__s32 stack_id;
	__u32 mode; /* enum mode */
};

struct netpoll_stack_value {
	__u64 count;
	__u64 wait_ns;
	__u64 io_wait_ns;
	__u64 sched_delay_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netpoll_stack_key);
	__type(value, struct netpoll_stack_value);
} netpoll_stacks SEC(".maps");

/* Waits whose stack could not be kept (stack map full or collision). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} netpoll_stacks_lost SEC(".maps");

/* 1: this object records wait stacks (gonetscope profile); else every
 * wait would look up stack_pids for nothing. Set before load. */
const volatile __u32 stack_traces = 0;

static __always_inline void record_stack(void *ctx, __u32 pid, __u8 mode, __u64 wait,
					 __u64 io, __u64 sched)
{
	if (!stack_traces || !bpf_map_lookup_elem(&stack_pids, &pid))
		return;
	struct netpoll_stack_key k = {.pid = pid, .mode = mode};
	k.stack_id = bpf_get_stackid(ctx, &netpoll_stack_traces, BPF_F_USER_STACK);
	struct netpoll_stack_value *v = k.stack_id < 0 ? NULL : bpf_map_lookup_elem(&netpoll_stacks, &k);
	if (!v && k.stack_id >= 0) {
		struct netpoll_stack_value zero = {};
		bpf_map_update_elem(&netpoll_stacks, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&netpoll_stacks, &k);
	}
	if (!v) {
		__u32 z = 0;
		__u64 *n = bpf_map_lookup_elem(&netpoll_stacks_lost, &z);
		if (n)
			(*n)++;
		return;
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->wait_ns, wait);
	__sync_fetch_and_add(&v->io_wait_ns, io);
	__sync_fetch_and_add(&v->sched_delay_ns, sched);
}

/* The three histograms of a netpoll wait (parked -> running, parked ->
 * ready, ready -> running) of one process and mode, updated together: one
 * lookup per wait where hist_record makes three. User space reads each
 * entry as the three metrics HIST_NETPOLL_WAIT, _IO_WAIT and
 * _SCHED_DELAY (pkg/netpoll Hists). */
struct wait_hists_key {
	__u32 pid;
	__u8 mode; /* enum mode */
	__u8 _pad[3];
};

struct wait_hists {
	struct hist wait, io_wait, sched_delay;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct wait_hists_key);
	__type(value, struct wait_hists);
} netpoll_hists SEC(".maps");

static const struct wait_hists wait_hists_zero;

static __always_inline void wait_record(__u32 pid, __u8 mode, __u64 wait, __u64 io, __u64 sched)
{
	struct wait_hists_key k = {.pid = pid, .mode = mode};
	struct wait_hists *h = bpf_map_lookup_elem(&netpoll_hists, &k);
	if (!h) {
		bpf_map_update_elem(&netpoll_hists, &k, &wait_hists_zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&netpoll_hists, &k);
		if (!h)
			return;
	}
	hist_bump(&h->wait, wait);
	hist_bump(&h->io_wait, io);
	hist_bump(&h->sched_delay, sched);
}

enum deadline {
	DEADLINE_NONE = 0,    /* none set, or not read */
	DEADLINE_SET = 1,
	DEADLINE_EXPIRED = 2, /* it expired: what woke the goroutine, or before */
};

/* The *pollDesc of a tagged epoll_event.data as Go's netpoller registers
 * it (ptr = (data >> shr) << shl, tag = pollDesc.fdseq's low bits); 0
 * for a mismatch: the netpoll eventfd, registered with a plain address,
 * or a stale descriptor. */
static __always_inline __u64 poll_desc(const struct target *t, __u64 data)
{
	if (!t->pd_tag_shr)
		return data;
	__u64 tag = data & ((1ULL << t->pd_tag_shr) - 1);
	__u64 pd = (__u64)((__s64)data >> t->pd_tag_shr) << t->pd_tag_shl;
	__u64 fdseq = 0;
	if (bpf_probe_read_user(&fdseq, sizeof(fdseq), (void *)(pd + t->pd_fdseq)))
		return 0;
	return (fdseq & ((1ULL << t->pd_tag_shr) - 1)) == tag ? pd : 0;
}

/* fd_deadline from the socket's wait queue wq and its first entry. */
static __always_inline __s64 wq_deadline(const struct target *t, struct socket_wq *wq, struct list_head *first,
					 __s32 fd, bool write)
{
	if (!first || (void *)first == (void *)wq + bpf_core_field_offset(struct socket_wq, wait.head))
		return 0;
	struct eppoll_entry *pwq = (void *)first - bpf_core_field_offset(struct eppoll_entry, wait.entry);
	struct epitem *epi = BPF_CORE_READ(pwq, base);
	if (!epi || BPF_CORE_READ(epi, ffd.fd) != fd)
		return 0;
	__u64 pd = poll_desc(t, BPF_CORE_READ(epi, event.data));
	__s32 pd_fd;
	__s64 deadline;
	if (!pd || bpf_probe_read_user(&pd_fd, sizeof(pd_fd), (void *)(pd + t->pd_fd)) || pd_fd != fd ||
	    bpf_probe_read_user(&deadline, sizeof(deadline), (void *)(pd + (write ? t->pd_wd : t->pd_rd))))
		return 0;
	return deadline;
}

/* The deadline of fd's read (or write) side now, a nanotime (the
 * runtime's CLOCK_MONOTONIC, as bpf_ktime_get_ns): 0 for none or not
 * found, negative once expired. The netpoller's registration of the
 * socket is the one entry on its wait queue: an epitem whose data is the
 * tagged *pollDesc (what epoll_pwait returns), checked against fd twice:
 * the epitem's own fd and the pollDesc's. */
static __always_inline __s64 fd_deadline(const struct target *t, struct sock *sk, __s32 fd, bool write)
{
	if (!sk || !t->pd_rd || !t->pd_wd)
		return 0;
	struct socket_wq *wq = BPF_CORE_READ(sk, sk_wq);
	if (!wq)
		return 0;
	return wq_deadline(t, wq, BPF_CORE_READ(wq, wait.head.next), fd, write);
}

/* fd_deadline for a BTF-typed sk: its wait queue's head by plain loads. */
static __always_inline __s64 sk_deadline(const struct target *t, struct sock *sk, __s32 fd, bool write)
{
	if (!t->pd_rd || !t->pd_wd)
		return 0;
	struct socket_wq *wq = sk->sk_wq;
	if (!wq)
		return 0;
	return wq_deadline(t, wq, wq->wait.head.next, fd, write);
}

/* A wait ended: the parked goroutine runs again (both paths). Records it
 * in the histograms and the netpoll profile, and sends a netpoll_wait
 * event if it is worth a look. btf_sk is the wait's socket where the
 * caller has it as a BTF-typed pointer (the sock path), read with plain
 * loads; NULL where the event finds it from the fd. */
static __always_inline int wait_done(void *ctx, const struct target *t, __u64 pid_tgid,
				     struct park_key key, struct park parked, struct sock *btf_sk)
{
	__u64 now = bpf_ktime_get_boot_ns();
	__u8 kind = (parked.mode & PARK_IDLE) || parked.mode == MODE_ACCEPT ? WAIT_IDLE : WAIT_IN_REQUEST;
	parked.mode &= ~PARK_IDLE;
	__u64 wait = now - parked.t_park;
	/* Metrics and profiles see every wait, before the --min-wait filter. */
	__u64 io = wait, sched = 0;
	if (parked.t_ready && parked.t_ready >= parked.t_park && parked.t_ready <= now) {
		io = parked.t_ready - parked.t_park;
		sched = now - parked.t_ready;
	}
	wait_record(key.pid, parked.mode, wait, io, sched);
	record_stack(ctx, key.pid, parked.mode, wait, io, sched);
	if (track_requests)
		req_account(key.pid, parked.goid, key.fd, parked.t_park, parked.t_ready, now, parked.mode == MODE_CONNECT);
	if (wait < t->min_wait_ns || !(send_events & (1 << EVENT_NETPOLL_WAIT)) ||
	    (kind == WAIT_IDLE && !send_idle))
		return 0;

	struct netpoll_wait_event *e = reserve_event(struct netpoll_wait_event, EVENT_NETPOLL_WAIT);
	if (!e)
		return 0;
	fill_header_at(&e->hdr, EVENT_NETPOLL_WAIT, pid_tgid, now);
	e->hdr.goid = parked.goid;
	e->hdr.goid_ok = 1;
	e->hdr.ns_tid = ns_tid(t, (__u32)pid_tgid);
	e->fd = key.fd;
	e->park_tid = parked.tid;
	e->mode = parked.mode;
	e->kind = kind;
	e->wait_ns = wait;
	e->ready_seen = parked.t_ready && parked.t_ready >= parked.t_park && parked.t_ready <= now;
	e->io_wait_ns = io;
	e->sched_delay_ns = sched;
	__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
	/* Read now, as the goroutine runs again: what it waited with. */
	bool write = parked.mode == MODE_WRITE || parked.mode == MODE_CONNECT;
	__s64 deadline;
	if (btf_sk) {
		if (btf_sk->sk_protocol != IPPROTO_MPTCP)
			sk_addrs(btf_sk, &e->addrs);
		else
			read_sk_addrs(tcp_sock_of(btf_sk), &e->addrs);
		deadline = sk_deadline(t, btf_sk, key.fd, write);
	} else {
		struct sock *fsk = sock_from_fd(key.fd);
		struct sock *sk = tcp_sock_of(fsk);
		if (sk)
			read_sk_addrs(sk, &e->addrs);
		deadline = fd_deadline(t, fsk, key.fd, write);
	}
	e->deadline = deadline > 0 ? DEADLINE_SET : deadline < 0 ? DEADLINE_EXPIRED : DEADLINE_NONE;
	e->deadline_ns = deadline > 0 ? deadline - (__s64)(bpf_ktime_get_ns() - wait) : 0;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	capture_stack(ctx, t, &e->hdr, &e->stack);
	submit_at(e, now);
	return 0;
}

/* Step 3: an I/O call on fd by the parked goroutine: it ran again. For
 * the syscall path, and accept4 and connect on both. */
static __always_inline int resume(void *ctx, __u64 pid_tgid, __s32 fd, enum dir dir)
{
	struct park_key key = {
		.pid = pid_tgid >> 32,
		.fd = fd,
		.dir = dir,
	};
	struct park *p = bpf_map_lookup_elem(&parks, &key);
	if (!p)
		return 0;
	struct target *t = lookup_target(key.pid);
	if (!t)
		return 0;
	__u64 goid;
	if (!peek_goid(t, &goid) || goid != p->goid)
		return 0; /* another goroutine uses the fd; the parked one has not run yet */
	struct park parked = *p;
	bpf_map_delete_elem(&parks, &key);
	if (parked.sk) {
		struct parked_sock_key sk_key = {.sk = parked.sk, .dir = dir};
		bpf_map_delete_elem(&parked_socks, &sk_key);
	}
	return wait_done(ctx, t, pid_tgid, key, parked, NULL);
}

/* resume for a syscall entry tracepoint, where fd is the first argument. */
static __always_inline int resume_at_enter(struct trace_event_raw_sys_enter *ctx, enum dir dir,
					   bool both_paths)
{
	__u64 pid_tgid;
	if (!passes_filter(both_paths, &pid_tgid))
		return 0;
	if (both_paths && calls_by_uprobe(pid_tgid >> 32))
		return 0;
	return resume(ctx, pid_tgid, (__s32)ctx->args[0], dir);
}

/* both: the program serves the sock path's targets too (see serves). */
#define PARK_ON_EXIT(sys, dir, mode, both)                                 \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                          \
	int exit_##sys(struct trace_event_raw_sys_exit *ctx)               \
	{                                                                  \
		return park_at_exit(ctx, dir, mode, both);                 \
	}

#define RESUME_ON_ENTER(sys, dir, both)                                    \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                         \
	int enter_##sys(struct trace_event_raw_sys_enter *ctx)             \
	{                                                                  \
		return resume_at_enter(ctx, dir, both);                    \
	}

PARK_ON_EXIT(read, DIR_READ, MODE_READ, false)
PARK_ON_EXIT(readv, DIR_READ, MODE_READ, false)
PARK_ON_EXIT(recvfrom, DIR_READ, MODE_READ, false)
PARK_ON_EXIT(recvmsg, DIR_READ, MODE_READ, false)
PARK_ON_EXIT(accept4, DIR_READ, MODE_ACCEPT, true)
PARK_ON_EXIT(write, DIR_WRITE, MODE_WRITE, false)
PARK_ON_EXIT(writev, DIR_WRITE, MODE_WRITE, false)
PARK_ON_EXIT(sendto, DIR_WRITE, MODE_WRITE, false)
PARK_ON_EXIT(sendmsg, DIR_WRITE, MODE_WRITE, false)
PARK_ON_EXIT(connect, DIR_WRITE, MODE_CONNECT, true)

RESUME_ON_ENTER(read, DIR_READ, false)
RESUME_ON_ENTER(readv, DIR_READ, false)
RESUME_ON_ENTER(recvfrom, DIR_READ, false)
RESUME_ON_ENTER(recvmsg, DIR_READ, false)
RESUME_ON_ENTER(accept4, DIR_READ, true)
RESUME_ON_ENTER(write, DIR_WRITE, false)
RESUME_ON_ENTER(writev, DIR_WRITE, false)
RESUME_ON_ENTER(sendto, DIR_WRITE, false)
RESUME_ON_ENTER(sendmsg, DIR_WRITE, false)
/* After connect's EINPROGRESS, Go waits for writability and then asks for the
 * result with getsockopt(SO_ERROR): that call is the resume. */
RESUME_ON_ENTER(getsockopt, DIR_WRITE, true)
RESUME_ON_ENTER(connect, DIR_WRITE, true)

/* A closed fd's number is reused: forget what was parked on it. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	if (cost == COST_DISPATCH)
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	if (!traced(pid) || cost == COST_FILTER)
		return 0;
	struct park_key key = {
		.pid = pid,
		.fd = (__s32)ctx->args[0],
		.dir = DIR_READ,
	};
	bpf_map_delete_elem(&parks, &key);
	key.dir = DIR_WRITE;
	bpf_map_delete_elem(&parks, &key);
	struct conn_key ck = {.pid = pid, .fd = key.fd};
	bpf_map_delete_elem(&accepted_fds, &ck);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_epoll_pwait")
int enter_epoll_pwait(struct trace_event_raw_sys_enter *ctx)
{
	if (cost == COST_DISPATCH)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!traced(pid_tgid >> 32) || cost == COST_FILTER)
		return 0;
	if (!lookup_target(pid_tgid >> 32) || cost == COST_GOID)
		return 0;
	__u32 tid = (__u32)pid_tgid;
	struct epoll_call c = {
		.t_enter = bpf_ktime_get_boot_ns(),
		.events = ctx->args[1],
		.timeout_ms = (__s32)ctx->args[3],
		.epfd = (__s32)ctx->args[0],
	};
	epoll_called(tid, &c);
	return 0;
}

/* struct epoll_event as the target's kernel ABI lays it out: packed on
 * x86-64 (4 bytes of events, 8 of data: __EPOLL_PACKED), naturally aligned
 * elsewhere (16 bytes on arm64). */
#if defined(__TARGET_ARCH_x86)
struct epoll_event_go {
	__u32 events;
	__u64 data;
} __attribute__((packed));
#else
struct epoll_event_go {
	__u32 events;
	__u32 _pad;
	__u64 data;
};
#endif

/* The events epoll_pwait returned, copied from user memory in one read. */
struct epoll_events {
	struct epoll_event_go ev[MAX_EPOLL_EVENTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct epoll_events);
} epoll_buf SEC(".maps");

/* Step 2: the netpoller got fds back from epoll_pwait; their goroutines become runnable now. */
static __always_inline void mark_ready(const struct target *t, __u32 pid, __u64 now,
				       struct epoll_event_go *ev)
{
	__u64 pd = poll_desc(t, ev->data);
	if (!pd)
		return;
	__s32 fd;
	if (bpf_probe_read_user(&fd, sizeof(fd), (void *)(pd + t->pd_fd)))
		return;
	struct park_key key = {.pid = pid, .fd = fd};
	struct park *p;
	if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		key.dir = DIR_READ;
		p = bpf_map_lookup_elem(&parks, &key);
		if (p && !p->t_ready)
			p->t_ready = now;
	}
	if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
		key.dir = DIR_WRITE;
		p = bpf_map_lookup_elem(&parks, &key);
		if (p && !p->t_ready)
			p->t_ready = now;
	}
}

/* The netpoller's epoll_pwait returned n (or -errno) to thread tid: on
 * the syscall path, the ready fds' parks are marked (scan); on both, the
 * block's histogram and its epoll_wait event. uprobe_g is the g register
 * at the uprobe path's return site (scan false), in the runtime's Go code. */
static __always_inline int epoll_returned(void *ctx, __u64 pid_tgid, long n, bool scan, __u64 uprobe_g)
{
	__u32 tid = (__u32)pid_tgid;
	struct epoll_call *cp = bpf_map_lookup_elem(&epoll_calls, &tid);
	if (!cp || !cp->t_enter)
		return 0;
	struct epoll_call c = *cp;
	cp->t_enter = 0;
	struct target *t = lookup_target(pid_tgid >> 32);
	if (!t)
		return 0;

	__u64 now = bpf_ktime_get_boot_ns();
	__u32 zero = 0;
	struct epoll_events *buf = bpf_map_lookup_elem(&epoll_buf, &zero);
	long nscan = n;
	if (scan && t->pd_fd && nscan > 0 && buf && cost != COST_RECORDS) {
		if (nscan > MAX_EPOLL_EVENTS)
			nscan = MAX_EPOLL_EVENTS;
		/* One copy of the whole array instead of one per event. */
		__u32 size = (__u32)nscan * sizeof(struct epoll_event_go);
		if (size > sizeof(*buf))
			size = sizeof(*buf);
		if (bpf_probe_read_user(buf, size, (void *)c.events) == 0) {
			for (int i = 0; i < MAX_EPOLL_EVENTS; i++) {
				if (i >= nscan)
					break;
				mark_ready(t, pid_tgid >> 32, now, &buf->ev[i]);
			}
		}
	}

	__u64 block = now - c.t_enter;
	hist_record(pid_tgid >> 32, HIST_EPOLL_BLOCK, 0, 0, 0, block);
	if (block < t->min_wait_ns || !(send_events & (1 << EVENT_EPOLL_WAIT)))
		return 0;
	struct epoll_wait_event *e = reserve_event(struct epoll_wait_event, EVENT_EPOLL_WAIT);
	if (!e)
		return 0;
	fill_header_at(&e->hdr, EVENT_EPOLL_WAIT, pid_tgid, now);
	if (scan)
		read_goid(t, (__u32)pid_tgid, &e->hdr);
	else
		read_goid_of(t, (__u32)pid_tgid, uprobe_g, &e->hdr);
	e->block_ns = block;
	e->ready = (__s32)n;
	e->timeout_ms = c.timeout_ms;
	e->epfd = c.epfd;
	e->_pad = 0;
	submit_at(e, now);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_epoll_pwait")
int exit_epoll_pwait(struct trace_event_raw_sys_exit *ctx)
{
	if (cost == COST_DISPATCH)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!traced(pid_tgid >> 32) || cost == COST_FILTER)
		return 0;
	return epoll_returned(ctx, pid_tgid, ctx->ret, true, 0);
}

/* The netpoller's epoll_pwait on the sock path, where epoll_wait events
 * are asked for: uprobes in the target at runtime.netpoll's call of the
 * runtime's EpollWait and right after it (pkg/goruntime's
 * EpollWaitSites), so that no syscall tracepoint is needed. The sock path
 * has the readiness already: nothing to scan. The netpoller's thread
 * makes the raw syscall itself, so the call and its return are on one
 * thread. */
SEC("uprobe")
int uprobe_epoll_wait(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!sock_path(pid_tgid >> 32))
		return 0;
	__u32 tid = (__u32)pid_tgid;
	struct epoll_call c = {
		.t_enter = bpf_ktime_get_boot_ns(),
		.timeout_ms = (__s32)GO_REG_ARG(ctx, 5),
		.epfd = (__s32)GO_REG_ARG(ctx, 0),
	};
	epoll_called(tid, &c);
	return 0;
}

SEC("uprobe")
int uprobe_epoll_wait_return(struct pt_regs *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!sock_path(pid_tgid >> 32))
		return 0;
	__u64 errno = GO_REG_ARG(ctx, 1);
	long n = errno ? -(long)errno : (long)(__s32)GO_REG_ARG(ctx, 0);
	return epoll_returned(ctx, pid_tgid, n, false, GO_REG_G(ctx));
}

/* ---- The sock path ---- */

/* A socket's waits on the sock path, in the socket's own storage: found
 * without hashing, and freed with the socket, so a socket closed under
 * its parked goroutine (by another goroutine, with no syscall of the
 * parked one) leaves nothing that a new socket under the same fd number
 * could be taken for. Only the traced processes' sockets get one. */
struct sock_waits {
	struct park park[2]; /* by enum dir; t_park == 0: no goroutine parked */
	__u64 rcvd_at_send;  /* tcp_sock.bytes_received at the last send */
	__u64 sender_g;      /* the g (Go's g register) of the goroutine that made it */
	__u32 pid;           /* the process the socket's fds are in */
	__u32 pid_checked;   /* pid, once lookup_target passed for it here */
	__s32 fd[2];         /* the fd of each direction's park */
	__u8 accepted;       /* enum accepted */
	/* 1: a byte the client sent after rcvd_at_send was read since (the
	 * connection's next request began: requests.h req_read). */
	__u8 req_seen;
	__u8 _pad[6];
};

enum accepted {
	ACCEPTED_UNKNOWN = 0,
	ACCEPTED_YES = 1,
	ACCEPTED_NO = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_waits);
} sock_waits SEC(".maps");

/* pid's target entry, for a park or resume on the socket of w:
 * lookup_target's check that pid is still the process it was attached as
 * once per socket and process (pid_checked), then the entry alone: the
 * socket's storage goes with the process's socket. */
static __always_inline struct target *sock_target(struct sock_waits *w, __u32 pid)
{
	if (w->pid_checked == pid)
		return bpf_map_lookup_elem(&targets, &pid);
	struct target *t = lookup_target(pid);
	if (t)
		w->pid_checked = pid;
	return t;
}

/* Whether the socket is a connection the process accepted: looked up in
 * accepted_fds once per socket (by the fd of the call, its first
 * argument), then kept. */
static __always_inline bool sock_accepted(struct sock_waits *w, __u32 pid, struct sock *sk)
{
	if (w->accepted == ACCEPTED_UNKNOWN) {
		struct conn *c = NULL;
		w->accepted = accepted_conn(pid, (__s32)USER_ARG0(), sk, &c) ? ACCEPTED_YES : ACCEPTED_NO;
	}
	return w->accepted == ACCEPTED_YES;
}

/* The plain TCP socket behind sk, a BTF-typed socket (the sock path's
 * argument): its fields are then plain loads behind one helper call, where
 * BPF_CORE_READ makes a call per field (each costs more than the rest of
 * a read of them). NULL for others (MPTCP: read its first subflow's with
 * tcp_sock_of). */
static __always_inline struct tcp_sock *plain_tcp(struct sock *sk)
{
	return sk->sk_protocol == IPPROTO_TCP ? bpf_skc_to_tcp_sock(sk) : NULL;
}

/* What the connection of BTF-typed socket sk has received, in bytes. */
static __always_inline __u64 bytes_received(struct sock *sk)
{
	struct tcp_sock *t = plain_tcp(sk);
	if (t)
		return t->bytes_received;
	return BPF_CORE_READ((struct tcp_sock *)tcp_sock_of(sk), bytes_received);
}

/* Whether the read that just returned on accepted socket sk consumed a
 * byte the client sent after the server's last send: the bytes the
 * process has read (received, less those still queued) go past what the
 * connection had received at that send. A handler that left the body
 * unread has it drained after the response: those bytes came before the
 * send, so they do not pass for the next request's. */
static __always_inline bool read_past_send(const struct sock_waits *w, struct sock *sk)
{
	struct tcp_sock *t = plain_tcp(sk);
	if (t) {
		__u32 queued = t->rcv_nxt - t->copied_seq;
		return t->bytes_received - queued > w->rcvd_at_send;
	}
	struct tcp_sock *tp = (struct tcp_sock *)tcp_sock_of(sk);
	__u64 rcvd = BPF_CORE_READ(tp, bytes_received);
	__u32 queued = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	return rcvd - queued > w->rcvd_at_send;
}

/* Steps 1 and 3 on the sock path: a read or write on a socket by a
 * traced process, in its syscall: the fd is the syscall's first argument
 * (read, readv, recvfrom, recvmsg and their writing twins). Resume first:
 * a wait that ends in another EAGAIN (woken by a deadline, or spuriously)
 * ends and the next begins. The socket is sk, or, where sk is NULL, the
 * sock of the struct socket sock: read after the PID filter. */
static __always_inline int sock_io(void *ctx, struct sock *sk, struct socket *sock, int ret, enum dir dir)
{
	if (cost == COST_DISPATCH)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	if (!sock_path(pid) || cost == COST_FILTER)
		return 0;
	if (!sk)
		sk = sock->sk;
	/* Storage is made at a park, and at a send (an accepted
	 * connection's last send tells its idle reads); with request
	 * tracing at a read too (a connection's first request starts at
	 * one). */
	bool keep = ret == -EAGAIN || (ret > 0 && (dir == DIR_WRITE || track_requests));
	struct sock_waits *w = bpf_sk_storage_get(&sock_waits, sk, 0, keep ? BPF_SK_STORAGE_GET_F_CREATE : 0);
	if (!w)
		return 0;
	__u32 d = dir == DIR_READ ? DIR_READ : DIR_WRITE;
	struct target *t = NULL;
	struct park *p = &w->park[d];
	/* The calling goroutine's g and id, where the resume read them: a
	 * request's start below reads them again only for another g. */
	__u64 peek_g = 0, peek_id = 0;
	if (p->t_park && w->pid == pid && (t = sock_target(w, pid))) {
		__u64 g = t->g_goid ? USER_GO_G() : 0, goid;
		if (g && !bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + t->g_goid))) {
			peek_g = g;
			peek_id = goid;
		}
		if (peek_g && goid == p->goid) {
			struct park parked = *p;
			p->t_park = 0;
			struct park_key key = {.pid = pid, .fd = w->fd[d], .dir = d};
			wait_done(ctx, t, pid_tgid, key, parked, sk);
		}
	}
	w->pid = pid;
	if (d == DIR_WRITE && ret > 0) {
		if (cost == COST_ALL && sock_accepted(w, pid, sk)) {
			w->rcvd_at_send = bytes_received(sk);
			w->req_seen = 0;
			w->sender_g = USER_GO_G();
		}
		return 0;
	}
	/* The next request is the one of the goroutine that sent the last
	 * response, whichever goroutine reads its first bytes: net/http's
	 * background read (a goroutine of its own, parked on the connection
	 * while the handler runs) can take them, and over TLS the whole
	 * request with them. Before any send, the reader's. */
	if (track_requests && ret > 0) {
		if (w->req_seen || cost != COST_ALL || !sock_accepted(w, pid, sk) || !read_past_send(w, sk))
			return 0;
		w->req_seen = 1;
		/* The target's HTTP/1 requests start here (requests.h), before
		 * any user memory is read. */
		if (!bpf_map_lookup_elem(&req_read_starts, &pid) || (!t && !(t = lookup_target(pid))) || !t->g_goid)
			return 0;
		__u64 g = w->sender_g ? w->sender_g : peek_g ? peek_g : USER_GO_G(), goid = peek_id;
		if (g && (g == peek_g || !bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + t->g_goid))))
			req_read(pid, goid, bpf_ktime_get_boot_ns());
		return 0;
	}
	if (ret != -EAGAIN)
		return 0;
	if (!t && !(t = sock_target(w, pid)))
		return 0;
	struct event_header h = {};
	read_goid(t, (__u32)pid_tgid, &h);
	if (!h.goid_ok || cost == COST_GOID)
		return 0;
	struct park np = {
		.goid = h.goid,
		.t_park = bpf_ktime_get_boot_ns(),
		.tid = (__u32)pid_tgid,
		.mode = d == DIR_READ ? MODE_READ : MODE_WRITE,
	};
	if (d == DIR_READ && sock_accepted(w, pid, sk) &&
	    bytes_received(sk) == w->rcvd_at_send)
		np.mode |= PARK_IDLE;
	/* The call's first argument: read only here, for the park. */
	w->fd[d] = (__s32)USER_ARG0();
	*p = np;
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_recv, struct sock *sk, int ret, int flags)
{
	return sock_io(ctx, sk, NULL, ret, DIR_READ);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_send, struct sock *sk, int ret, int flags)
{
	return sock_io(ctx, sk, NULL, ret, DIR_WRITE);
}

/* The sock path where the kernel has fentry but not the socket
 * tracepoints (Linux 5.11 to 6.5, e.g. Debian 12's 6.1; pkg/netpoll
 * chooses): the same work on the kernel functions those tracepoints sit
 * in, so no syscall tracepoint is needed. fexit on sock_recvmsg sees what
 * sock_recv_length sees (read, readv, recvfrom and recvmsg call it);
 * fexit on __sock_sendmsg, or sock_sendmsg where the kernel has no
 * __sock_sendmsg (pkg/netpoll sets the target), what sock_send_length
 * sees; fentry on sock_def_readable (below) what sk_data_ready sees for
 * the sockets whose data-ready callback nothing replaced: TCP and unix. */
SEC("fexit/sock_recvmsg")
int BPF_PROG(fexit_sock_recvmsg, struct socket *sock, struct msghdr *msg, int flags, int ret)
{
	return sock_io(ctx, NULL, sock, ret, DIR_READ);
}

SEC("fexit/__sock_sendmsg")
int BPF_PROG(fexit_sock_sendmsg, struct socket *sock, struct msghdr *msg, int ret)
{
	return sock_io(ctx, NULL, sock, ret, DIR_WRITE);
}

/* Step 2 for accept4 and connect on the sock path: the socket of a park
 * (by pid, fd) became ready. */
static __always_inline void sock_ready(const void *sk, __u32 dir)
{
	struct parked_sock_key k = {.sk = (__u64)sk, .dir = dir};
	struct park_key *pk = bpf_map_lookup_elem(&parked_socks, &k);
	if (!pk)
		return;
	struct park *p = bpf_map_lookup_elem(&parks, pk);
	if (p && p->sk == k.sk && !p->t_ready)
		p->t_ready = bpf_ktime_get_boot_ns();
}

/* Step 2 on the sock path: data (or, on a listener, a connection)
 * arrived for a socket. In the context of whatever delivered it (softirq,
 * or the sender on loopback): only sockets with storage (a traced
 * process's) or a parked accept are looked at. The goroutine is runnable
 * once the netpoller sees it: what comes after this is the Go
 * scheduler's. */
static __always_inline int sk_ready(const struct sock *sk)
{
	if (cost == COST_DISPATCH || cost == COST_FILTER || cost == COST_GOID)
		return 0;
	if (sk->__sk_common.skc_state == TCP_LISTEN) {
		sock_ready(sk, DIR_READ);
		return 0;
	}
	/* A socket with no BPF storage at all (none of a traced process's:
	 * the other end of a loopback connection, say) ends here, before
	 * the helper call. */
	if (bpf_core_field_exists(sk->sk_bpf_storage) && !sk->sk_bpf_storage)
		return 0;
	struct sock_waits *w = bpf_sk_storage_get(&sock_waits, (struct sock *)sk, 0, 0);
	if (w && w->park[DIR_READ].t_park && !w->park[DIR_READ].t_ready)
		w->park[DIR_READ].t_ready = bpf_ktime_get_boot_ns();
	return 0;
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(data_ready, const struct sock *sk)
{
	return sk_ready(sk);
}

SEC("fentry/sock_def_readable")
int BPF_PROG(fentry_sock_readable, struct sock *sk)
{
	return sk_ready(sk);
}

/* A connect's handshake ended (established or failed): Go's wait for
 * writability ends. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(sock_state, struct sock *sk, int oldstate, int newstate)
{
	if (cost == COST_DISPATCH || cost == COST_FILTER || cost == COST_GOID || oldstate != TCP_SYN_SENT)
		return 0;
	sock_ready(sk, DIR_WRITE);
	return 0;
}

/* accept4, connect and getsockopt where the kernel has fentry (pkg/netpoll
 * Load), on both paths: the same park and resume as their syscall
 * tracepoints, on the kernel functions those syscalls call. On the sock
 * path, no thread on the host then takes the slow syscall entry. */
static __always_inline int call_park(void *ctx, __s32 fd, long ret, enum dir dir, enum mode mode)
{
	__u64 pid_tgid;
	if (!passes_filter(true, &pid_tgid))
		return 0;
	return park(ctx, pid_tgid, fd, ret, dir, mode);
}

static __always_inline int call_resume(void *ctx, __s32 fd, enum dir dir)
{
	__u64 pid_tgid;
	if (!passes_filter(true, &pid_tgid))
		return 0;
	return resume(ctx, pid_tgid, fd, dir);
}

SEC("fentry/__sys_accept4")
int BPF_PROG(fentry_accept4, int fd)
{
	return call_resume(ctx, fd, DIR_READ);
}

SEC("fexit/__sys_accept4")
int BPF_PROG(fexit_accept4, int fd, void *addr, void *addrlen, int flags, int ret)
{
	return call_park(ctx, fd, ret, DIR_READ, MODE_ACCEPT);
}

SEC("fentry/__sys_connect")
int BPF_PROG(fentry_connect, int fd)
{
	return call_resume(ctx, fd, DIR_WRITE);
}

SEC("fexit/__sys_connect")
int BPF_PROG(fexit_connect, int fd, void *addr, int addrlen, int ret)
{
	return call_park(ctx, fd, ret, DIR_WRITE, MODE_CONNECT);
}

/* After connect's EINPROGRESS, Go's getsockopt(SO_ERROR) is the resume. */
SEC("fentry/__sys_getsockopt")
int BPF_PROG(fentry_getsockopt, int fd)
{
	return call_resume(ctx, fd, DIR_WRITE);
}

/* accept4, connect and getsockopt by uprobes in the target where the kernel
 * has no fentry (calls.h): the same resume at the call and park at the
 * return. The programs at the calls save the arguments for every object's
 * programs at the returns. */
SEC("uprobe")
int uprobe_accept4(struct pt_regs *ctx)
{
	__u64 pid_tgid;
	if (!passes_filter(true, &pid_tgid))
		return 0;
	return resume(ctx, pid_tgid, save_call_args(ctx, pid_tgid >> 32), DIR_READ);
}

SEC("uprobe")
int uprobe_connect(struct pt_regs *ctx)
{
	__u64 pid_tgid;
	if (!passes_filter(true, &pid_tgid))
		return 0;
	return resume(ctx, pid_tgid, save_call_args(ctx, pid_tgid >> 32), DIR_WRITE);
}

/* After connect's EINPROGRESS, Go's getsockopt(SO_ERROR) is the resume;
 * nothing at its return needs its arguments. */
SEC("uprobe")
int uprobe_getsockopt(struct pt_regs *ctx)
{
	return call_resume(ctx, (__s32)GO_REG_ARG(ctx, 1), DIR_WRITE);
}

static __always_inline int uprobe_park(struct pt_regs *ctx, enum dir dir, enum mode mode)
{
	__u64 pid_tgid;
	if (!passes_filter(true, &pid_tgid))
		return 0;
	long ret;
	struct call_args args;
	if (!call_returned(ctx, pid_tgid >> 32, &ret, &args))
		return 0;
	return park(ctx, pid_tgid, (__s32)args.fd, ret, dir, mode);
}

SEC("uprobe")
int uprobe_accept4_return(struct pt_regs *ctx)
{
	return uprobe_park(ctx, DIR_READ, MODE_ACCEPT);
}

SEC("uprobe")
int uprobe_connect_return(struct pt_regs *ctx)
{
	return uprobe_park(ctx, DIR_WRITE, MODE_CONNECT);
}

/* Keep the event types in BTF so bpf2go can generate their Go twins. */
const struct netpoll_wait_event *unused_netpoll_wait_event __attribute__((unused));
const struct epoll_wait_event *unused_epoll_wait_event __attribute__((unused));
const enum mode *unused_mode __attribute__((unused));
const enum cost_stage *unused_cost_stage __attribute__((unused));
const enum wait_kind *unused_wait_kind __attribute__((unused));
const enum deadline *unused_deadline __attribute__((unused));
const struct conn_key *unused_conn_key __attribute__((unused));
const struct parked_sock_key *unused_parked_sock_key __attribute__((unused));
const struct netpoll_stack_key *unused_netpoll_stack_key __attribute__((unused));
const struct netpoll_stack_value *unused_netpoll_stack_value __attribute__((unused));
