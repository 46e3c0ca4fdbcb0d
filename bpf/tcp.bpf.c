//go:build ignore

/* tcp: connects (SYN sent -> established or failed) and accepts (time in the
 * accept queue, the listener's backlog) of traced processes. Loaded by pkg/tcp.
 *
 * Two hook points have a better mechanism than tracepoints where the kernel
 * allows it; user space tries them in order and keeps the first that attaches:
 *   connect start: fentry/tcp_connect, kprobe/tcp_connect, or the
 *                  inet_sock_set_state tracepoint's move to SYN_SENT;
 *   accept:        fexit/inet_csk_accept, kretprobe/inet_csk_accept, or the
 *                  socket behind the fd that accept4 returned.
 * The ends of connect(2) and accept4(2) are fexit programs where the kernel
 * has fentry, else syscall tracepoints (see the end of this file).
 * Handshake completion always comes from sock:inet_sock_set_state, and the
 * events are sent from the same places on every path, so they are the same.
 */

#include "gonetscope.h"
#include "hist.h"
#include "calls.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define EINTR 4
#define ENFILE 23
#define EMFILE 24
#define EISCONN 106
#define EALREADY 114
#define ECANCELED 125

struct tcp_connect_event {
	struct event_header hdr;
	struct addrs addrs;
	__u64 handshake_ns; /* SYN sent -> established or failed; 0 if no SYN was sent */
	__s32 fd;           /* -1 when the SYN did not go out inside connect(2) */
	__s32 result;       /* 0, or the errno */
	struct user_stack stack; /* when the SYN went out, with --stacks */
};

struct tcp_accept_event {
	struct event_header hdr;
	struct addrs addrs;
	__u64 queue_wait_ns; /* handshake complete -> accepted */
	__s32 fd;
	__s32 listen_fd;
	__u32 backlog;       /* the listener's accept queue after this accept */
	__u32 backlog_max;
	__u8 queue_wait_known;
	__u8 _pad[7];
	struct user_stack stack; /* at accept4's return, with --stacks */
};

struct accept_error_event {
	struct event_header hdr;
	struct addrs addrs; /* the listener's */
	__s32 listen_fd;
	__s32 err;
};

/* Which program records the start of a connect. Set by user space after it
 * has chosen the mechanism. */
enum connect_start_hook {
	CONNECT_START_TRACEPOINT = 0,
	CONNECT_START_KERNEL_FUNC = 1, /* fentry or kprobe on tcp_connect */
};

volatile __u32 connect_start_with = CONNECT_START_TRACEPOINT;

struct connect_rec {
	struct tcp_connect_event ev; /* all but the outcome, which fills in later */
	__u64 t_syn;
	__u8 in_syscall; /* the connect(2) that sent the SYN has not returned yet */
	__u8 done;       /* outcome known, waiting for that connect(2) to return */
	__u8 _pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* struct sock * */
	__type(value, struct connect_rec);
} connects SEC(".maps");

/* Passive side: when each child socket completed its handshake. Written in
 * softirq context for every new connection on the host (the owner is not
 * known yet), hence an LRU. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); /* struct sock * */
	__type(value, __u64);
} established SEC(".maps");

struct accepted_sock {
	__u64 sk;
	__u64 t_accept;
};

/* The socket inet_csk_accept returned, until accept4 returns its fd. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct accepted_sock);
} accepted_socks SEC(".maps");

/* connect_rec is too big for the BPF stack with its user stack: it is
 * built here. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct connect_rec);
} connect_scratch SEC(".maps");

/* Events wake the reader at most every wakeup_interval_ns (set by user
 * space to its drain interval): a wake-up per connection, an irq_work and
 * a cross-CPU wake-up run inside the program, was 3-7 us of each accept's
 * and connect's return (make bench, connection churn). */
const volatile __u64 wakeup_interval_ns = 50000000;
__u64 last_wakeup_ns = 0;

static __always_inline void submit(void *e)
{
	submit_at_most_every(e, wakeup_interval_ns, &last_wakeup_ns);
}

static __always_inline void connect_started(void *ctx, struct sock *sk)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct target *t = lookup_target(pid_tgid >> 32);
	if (!t)
		return;
	__u32 zero = 0;
	struct connect_rec *r = bpf_map_lookup_elem(&connect_scratch, &zero);
	if (!r)
		return;
	__builtin_memset(r, 0, sizeof(*r));
	fill_header(&r->ev.hdr, EVENT_TCP_CONNECT, pid_tgid);
	read_goid(t, (__u32)pid_tgid, &r->ev.hdr);
	r->in_syscall = USER_SYSCALL_NR() == NR_CONNECT;
	r->ev.fd = r->in_syscall ? (__s32)USER_ARG0() : -1;
	r->t_syn = bpf_ktime_get_boot_ns();
	capture_stack(ctx, t, &r->ev.hdr, &r->ev.stack);
	__u64 key = (__u64)sk;
	bpf_map_update_elem(&connects, &key, r, BPF_ANY);
}

static __always_inline void send_connect(struct connect_rec *r)
{
	struct tcp_connect_event *e = reserve_event(struct tcp_connect_event, EVENT_TCP_CONNECT);
	if (!e)
		return;
	*e = r->ev;
	submit(e);
}

SEC("fentry/tcp_connect")
int BPF_PROG(fentry_tcp_connect, struct sock *sk)
{
	connect_started(ctx, sk);
	return 0;
}

SEC("kprobe/tcp_connect")
int BPF_KPROBE(kprobe_tcp_connect, struct sock *sk)
{
	connect_started(ctx, sk);
	return 0;
}

static __always_inline void connect_finished(struct trace_event_raw_inet_sock_set_state *ctx,
					     struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct connect_rec *r = bpf_map_lookup_elem(&connects, &key);
	if (!r)
		return;
	__u64 now = bpf_ktime_get_boot_ns();
	r->ev.hdr.time_ns = now;
	r->ev.handshake_ns = now - r->t_syn;
	if (ctx->newstate == TCP_ESTABLISHED) {
		r->ev.result = 0;
	} else {
		/* A refusal or time-out sets sk_err before the socket closes;
		 * a bare close of a connecting socket is a cancelled dial. */
		int err = BPF_CORE_READ(sk, sk_err);
		if (!err)
			err = BPF_CORE_READ(sk, sk_err_soft);
		r->ev.result = err ? err : ECANCELED;
	}
	hist_record(r->ev.hdr.pid, HIST_CONNECT_HANDSHAKE, 0, 0, r->ev.result, r->ev.handshake_ns);
	hist_record(r->ev.hdr.pid, COUNT_CONNECT, 0, 0, r->ev.result, 0);
	struct addrs *a = &r->ev.addrs;
	a->family = ctx->family;
	a->sport = ctx->sport;
	a->dport = ctx->dport;
	/* The verifier allows only fixed-offset loads from a tracepoint's
	 * context; copy the address arrays with probe reads. */
	if (ctx->family == AF_INET6) {
		bpf_probe_read_kernel(a->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(a->daddr, 16, ctx->daddr_v6);
	} else {
		bpf_probe_read_kernel(a->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(a->daddr, 4, ctx->daddr);
	}
	if (r->in_syscall) {
		r->done = 1; /* exit_connect sends it, with the fd's final state */
		return;
	}
	send_connect(r);
	bpf_map_delete_elem(&connects, &key);
}

SEC("tracepoint/sock/inet_sock_set_state")
int sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	struct sock *sk = (struct sock *)ctx->skaddr;
	if (ctx->newstate == TCP_SYN_SENT) {
		if (connect_start_with == CONNECT_START_TRACEPOINT)
			connect_started(ctx, sk);
		return 0;
	}
	if (ctx->oldstate == TCP_SYN_RECV && ctx->newstate == TCP_ESTABLISHED) {
		__u64 key = (__u64)sk, now = bpf_ktime_get_boot_ns();
		bpf_map_update_elem(&established, &key, &now, BPF_ANY);
		return 0;
	}
	if (ctx->oldstate == TCP_SYN_SENT &&
	    (ctx->newstate == TCP_ESTABLISHED || ctx->newstate == TCP_CLOSE))
		connect_finished(ctx, sk);
	return 0;
}

/* Reads a user struct sockaddr_in/_in6 into the remote half of a. */
static __always_inline void read_user_sockaddr(__u64 uaddr, struct addrs *a)
{
	struct {
		__u16 family;
		__be16 port;
		__u32 flowinfo_or_v4;
		__u8 v6[16];
	} sa = {};
	if (bpf_probe_read_user(&sa, sizeof(sa), (void *)uaddr))
		return;
	a->family = sa.family;
	a->dport = bpf_ntohs(sa.port);
	if (sa.family == AF_INET6)
		__builtin_memcpy(a->daddr, sa.v6, 16);
	else
		__builtin_memcpy(a->daddr, &sa.flowinfo_or_v4, 4);
}

/* connect(2) of fd to the user sockaddr at addr returned ret: sends the
 * connect's event if its handshake ended inside the call, or a failure
 * before any SYN went out. */
static __always_inline int connect_returned(void *ctx, int fd, __u64 addr, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!lookup_target(pid_tgid >> 32))
		return 0;
	struct sock *sk = sock_from_fd(fd);
	if (!sk || !is_tcp(sk))
		return 0;
	sk = tcp_sock_of(sk);
	__u64 key = (__u64)sk;
	struct connect_rec *r = bpf_map_lookup_elem(&connects, &key);
	if (r) {
		if (r->done) {
			send_connect(r);
			bpf_map_delete_elem(&connects, &key);
		} else {
			r->in_syscall = 0;
		}
		return 0;
	}
	if (ret == 0 || ret == -EINPROGRESS || ret == -EALREADY || ret == -EISCONN ||
	    ret == -EINTR || ret == -EAGAIN)
		return 0;
	/* Failed before a SYN went out (no route, no local port, ...). */
	hist_record(pid_tgid >> 32, COUNT_CONNECT, 0, 0, (__s32)-ret, 0);
	struct tcp_connect_event *e = reserve_event(struct tcp_connect_event, EVENT_TCP_CONNECT);
	if (!e)
		return 0;
	struct target *t = lookup_target(pid_tgid >> 32);
	if (!t) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	fill_header(&e->hdr, EVENT_TCP_CONNECT, pid_tgid);
	read_goid(t, (__u32)pid_tgid, &e->hdr);
	__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
	read_sk_addrs(sk, &e->addrs);
	read_user_sockaddr(addr, &e->addrs);
	e->handshake_ns = 0;
	e->fd = fd;
	e->result = (__s32)-ret;
	capture_stack(ctx, t, &e->hdr, &e->stack);
	submit(e);
	return 0;
}

static __always_inline void accept_returned(__u64 sk)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (!sk || !lookup_target(pid_tgid >> 32))
		return;
	__u32 tid = (__u32)pid_tgid;
	struct accepted_sock a = {.sk = sk, .t_accept = bpf_ktime_get_boot_ns()};
	bpf_map_update_elem(&accepted_socks, &tid, &a, BPF_ANY);
}

/* inet_csk_accept's arguments differ across kernels (6.10 folded three into
 * struct proto_accept_arg); bpf_get_func_ret finds the return value anyway. */
SEC("fexit/inet_csk_accept")
int fexit_inet_csk_accept(__u64 *ctx)
{
	__u64 ret = 0;
	bpf_get_func_ret(ctx, &ret);
	accept_returned(ret);
	return 0;
}

SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(kretprobe_inet_csk_accept, struct sock *ret)
{
	accept_returned((__u64)ret);
	return 0;
}

/* accept4(2) on listen_fd returned ret: the tcp_accept event, or
 * accept_error. */
static __always_inline int accept4_returned(void *ctx, int listen_fd, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct target *t = lookup_target(pid_tgid >> 32);
	if (!t)
		return 0;
	__u32 tid = (__u32)pid_tgid;
	struct accepted_sock a = {};
	struct accepted_sock *ap = bpf_map_lookup_elem(&accepted_socks, &tid);
	if (ap) {
		a = *ap;
		bpf_map_delete_elem(&accepted_socks, &tid);
	}
	struct sock *listener = sock_from_fd(listen_fd);
	if (!listener || !is_tcp(listener))
		return 0;
	listener = tcp_sock_of(listener);
	__u16 lport = BPF_CORE_READ(listener, __sk_common.skc_num);
	if (ret < 0 && ret != -EAGAIN)
		hist_record(pid_tgid >> 32, COUNT_ACCEPT_ERROR, 0, lport, (__s32)-ret, 0);

	if (ret == -EMFILE || ret == -ENFILE) {
		struct accept_error_event *e = reserve_event(struct accept_error_event, EVENT_ACCEPT_ERROR);
		if (!e)
			return 0;
		fill_header(&e->hdr, EVENT_ACCEPT_ERROR, pid_tgid);
		read_goid(t, tid, &e->hdr);
		__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
		read_sk_addrs(listener, &e->addrs);
		e->listen_fd = listen_fd;
		e->err = (__s32)-ret;
		submit(e);
		return 0;
	}
	if (ret < 0)
		return 0;

	struct sock *sk = tcp_sock_of(a.sk ? (struct sock *)a.sk : sock_from_fd((int)ret));
	if (!sk)
		return 0;
	__u64 now = a.t_accept ? a.t_accept : bpf_ktime_get_boot_ns();
	__u64 key = (__u64)sk;
	__u64 *est = bpf_map_lookup_elem(&established, &key);
	__u8 queue_wait_known = 0;
	__u64 queue_wait = 0;
	if (est) {
		if (*est <= now) {
			queue_wait_known = 1;
			queue_wait = now - *est;
		}
		bpf_map_delete_elem(&established, &key);
	}
	hist_record(pid_tgid >> 32, COUNT_ACCEPT, 0, lport, 0, 0);
	if (queue_wait_known)
		hist_record(pid_tgid >> 32, HIST_ACCEPT_QUEUE_WAIT, 0, lport, 0, queue_wait);

	struct tcp_accept_event *e = reserve_event(struct tcp_accept_event, EVENT_TCP_ACCEPT);
	if (!e)
		return 0;
	fill_header(&e->hdr, EVENT_TCP_ACCEPT, pid_tgid);
	read_goid(t, tid, &e->hdr);
	__builtin_memset(&e->addrs, 0, sizeof(e->addrs));
	read_sk_addrs(sk, &e->addrs);
	e->fd = (__s32)ret;
	e->listen_fd = listen_fd;
	e->backlog = BPF_CORE_READ(listener, sk_ack_backlog);
	e->backlog_max = BPF_CORE_READ(listener, sk_max_ack_backlog);
	e->queue_wait_known = queue_wait_known;
	e->queue_wait_ns = queue_wait;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	capture_stack(ctx, t, &e->hdr, &e->stack);
	submit(e);
	return 0;
}

/* The ends of connect(2) and accept4(2): fexit on the kernel functions the
 * syscalls call where the kernel has fentry (pkg/tcp chooses); else uprobes
 * in the target after the syscall package's calls (calls.h); else, for a
 * target that cannot have those, the syscall tracepoints, which put every
 * thread on the host on the slow syscall entry while attached. */
SEC("fexit/__sys_connect")
int BPF_PROG(fexit_sys_connect, int fd, void *addr, int addrlen, int ret)
{
	return connect_returned(ctx, fd, (__u64)addr, ret);
}

SEC("uprobe")
int uprobe_connect_return(struct pt_regs *ctx)
{
	long ret;
	struct call_args args;
	if (!call_returned(ctx, bpf_get_current_pid_tgid() >> 32, &ret, &args))
		return 0;
	return connect_returned(ctx, (int)args.fd, args.arg1, ret);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	if (calls_by_uprobe(bpf_get_current_pid_tgid() >> 32))
		return 0;
	return connect_returned(ctx, (int)USER_ARG0(), USER_ARG1(), ctx->ret);
}

SEC("fexit/__sys_accept4")
int BPF_PROG(fexit_sys_accept4, int fd, void *addr, void *addrlen, int flags, int ret)
{
	return accept4_returned(ctx, fd, ret);
}

SEC("uprobe")
int uprobe_accept4_return(struct pt_regs *ctx)
{
	long ret;
	struct call_args args;
	if (!call_returned(ctx, bpf_get_current_pid_tgid() >> 32, &ret, &args))
		return 0;
	return accept4_returned(ctx, (int)args.fd, ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (calls_by_uprobe(bpf_get_current_pid_tgid() >> 32))
		return 0;
	return accept4_returned(ctx, (int)USER_ARG0(), ctx->ret);
}

/* Keep the event types in BTF so bpf2go can generate their Go twins. */
const struct tcp_connect_event *unused_tcp_connect_event __attribute__((unused));
const struct tcp_accept_event *unused_tcp_accept_event __attribute__((unused));
const struct accept_error_event *unused_accept_error_event __attribute__((unused));
const enum connect_start_hook *unused_connect_start_hook __attribute__((unused));
