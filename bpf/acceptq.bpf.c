//go:build ignore

/* acceptq: the accept queues of traced listeners: their overflows and
 * drops, depth and limit, and what their acceptors were doing. Loaded by
 * pkg/acceptq. Its task_file iterator is the one listener iterator: the
 * listen_overflow events and the listener metrics both read it.
 *
 * This kernel has no fentry/kprobe to hook the drop itself
 * (tcp_conn_request, tcp_v4/v6_syn_recv_sock), and skb:kfree_skb does not see
 * it, so the drop is counted where the kernel counts it: every accept-queue
 * overflow increments LINUX_MIB_LISTENOVERFLOWS and then, through
 * tcp_listendrop(), the listener's own sk_drops. A BPF task_file iterator,
 * run by user space every interval, walks the fds of the traced processes
 * and reports each TCP listener's sk_drops, its accept-queue depth and the
 * accept counters below. It sees listeners in any network namespace: it
 * walks processes, not a namespace's socket table.
 *
 * Where the kernel allows fentry or kprobes, the drop itself is hooked too:
 * tcp_conn_request (a SYN) and tcp_v4/v6_syn_recv_sock (the handshake's last
 * ACK) drop the packet when the accept queue is full, and check that first;
 * a call that finds the queue of a traced listener full is one overflow,
 * counted per listener in `hook_drops`. User space attaches one mechanism
 * (fentry, else kprobe) or none, and says which in the attached event.
 *
 * Between samples, syscall and socket tracepoints count per listener:
 *   - accept4 results (accepted, EAGAIN = the acceptor is about to park,
 *     EMFILE/ENFILE) per (pid, listen fd) and per accepting goroutine;
 *   - completed handshakes (a child moving SYN_RECV -> ESTABLISHED) per
 *     (network namespace, port), for the listeners the iterator has seen.
 */

#include "gonetscope.h"
#include "parks.h"
#include "calls.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define ENFILE 23
#define EMFILE 24
#define TCP_LISTEN_STATE 10

/* One TCP listener of a traced process, written by the iterator. */
struct listener_rec {
	struct addrs addrs;
	__u64 sk;          /* the TCP listener (an MPTCP socket's first subflow) */
	__u64 drops;       /* the listener's sk_drops: accept-queue overflows and other listen drops */
	__u64 handshakes;  /* completed handshakes on (netns, port) since first seen */
	__u64 accepts;     /* successful accept4 on this fd */
	__u64 eagains;     /* accept4 -> EAGAIN on this fd: an acceptor parked */
	__u64 accept_errors; /* accept4 -> EMFILE/ENFILE */
	__u64 t_last_accept;
	__u64 t_last_eagain;
	/* netpoll's park record for (pid, fd, read), if an acceptor is parked. */
	__u64 park_goid;
	__u64 t_park;
	__u64 t_ready;
	__u64 now;         /* bpf_ktime_get_boot_ns() when read */
	__u64 hook_drops;  /* overflows counted by the drop hook since first seen */
	__u32 pid;
	__s32 fd;
	__u32 backlog;     /* sk_ack_backlog: connections waiting to be accepted */
	__u32 backlog_max; /* sk_max_ack_backlog */
	__s32 last_err;    /* last accept4 errno of EMFILE/ENFILE, 0 if none */
	__u8 mptcp;        /* the fd is an MPTCP socket */
	__u8 parked;       /* park_goid, t_park, t_ready are valid */
	__u8 _pad[2];
};

struct listen_key {
	__u32 pid;
	__s32 fd;
};

struct listen_stats {
	__u64 accepts;
	__u64 eagains;
	__u64 errors;
	__u64 t_last_accept;
	__u64 t_last_eagain;
	__s32 last_err;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct listen_key);
	__type(value, struct listen_stats);
} listener_stats SEC(".maps");

/* One goroutine that called accept4 on a listener. */
struct acceptor_key {
	__u64 goid;
	__u32 pid;
	__s32 fd;
};

struct acceptor {
	__u64 accepts;
	__u64 t_last_accept; /* its last accept4 that returned a connection */
	__u64 t_last_eagain; /* its last accept4 that returned EAGAIN (then it parks) */
	__u64 t_last_call;   /* its last accept4 of any result */
	__u32 tid;           /* the thread of that call */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct acceptor_key);
	__type(value, struct acceptor);
} acceptors SEC(".maps");

/* Completed handshakes per listening (netns, port). Keys are inserted by the
 * iterator for traced listeners only; the tracepoint counts existing keys. */
struct port_key {
	__u64 net; /* struct net * */
	__u16 port;
	__u16 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct port_key);
	__type(value, __u64);
} handshakes SEC(".maps");

/* Overflows per traced listener (struct sock *), counted by the drop hook.
 * Keys are inserted by the iterator for traced listeners only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u64);
} hook_drops SEC(".maps");

/* The accept queue is full: sk_acceptq_is_full(). */
static __always_inline void count_overflow(struct sock *sk)
{
	__u64 key = (__u64)sk;
	__u64 *n = bpf_map_lookup_elem(&hook_drops, &key);
	if (!n)
		return;
	if (BPF_CORE_READ(sk, sk_ack_backlog) > BPF_CORE_READ(sk, sk_max_ack_backlog))
		__sync_fetch_and_add(n, 1);
}

#define ETH_P_IP 0x0800

/* tcp_v6_syn_recv_sock hands an IPv4 packet (a v4-mapped peer on a
 * dual-stack listener) to tcp_v4_syn_recv_sock, which counts it. */
static __always_inline void count_overflow_v6(struct sock *sk, struct sk_buff *skb)
{
	if (BPF_CORE_READ(skb, protocol) == bpf_htons(ETH_P_IP))
		return;
	count_overflow(sk);
}

SEC("fentry/tcp_conn_request")
int BPF_PROG(fentry_tcp_conn_request, void *rsk_ops, void *af_ops, struct sock *sk)
{
	count_overflow(sk);
	return 0;
}

SEC("fentry/tcp_v4_syn_recv_sock")
int BPF_PROG(fentry_tcp_v4_syn_recv_sock, struct sock *sk)
{
	count_overflow(sk);
	return 0;
}

SEC("fentry/tcp_v6_syn_recv_sock")
int BPF_PROG(fentry_tcp_v6_syn_recv_sock, struct sock *sk, struct sk_buff *skb)
{
	count_overflow_v6(sk, skb);
	return 0;
}

SEC("kprobe/tcp_conn_request")
int BPF_KPROBE(kprobe_tcp_conn_request, void *rsk_ops, void *af_ops, struct sock *sk)
{
	count_overflow(sk);
	return 0;
}

SEC("kprobe/tcp_v4_syn_recv_sock")
int BPF_KPROBE(kprobe_tcp_v4_syn_recv_sock, struct sock *sk)
{
	count_overflow(sk);
	return 0;
}

SEC("kprobe/tcp_v6_syn_recv_sock")
int BPF_KPROBE(kprobe_tcp_v6_syn_recv_sock, struct sock *sk, struct sk_buff *skb)
{
	count_overflow_v6(sk, skb);
	return 0;
}


/* accept4(2) on listen_fd returned ret: the listener's and the acceptor
 * goroutine's accept record. */
static __always_inline int accept4_returned(int listen_fd, long ret)
{
	if (ret < 0 && ret != -EAGAIN && ret != -EMFILE && ret != -ENFILE)
		return 0;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct target *t = lookup_target(pid_tgid >> 32);
	if (!t)
		return 0;
	struct listen_key k = {.pid = pid_tgid >> 32, .fd = listen_fd};
	__u64 now = bpf_ktime_get_boot_ns();
	struct listen_stats *s = bpf_map_lookup_elem(&listener_stats, &k);
	if (!s) {
		struct listen_stats zero = {};
		bpf_map_update_elem(&listener_stats, &k, &zero, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&listener_stats, &k);
		if (!s)
			return 0;
	}
	if (ret >= 0) {
		__sync_fetch_and_add(&s->accepts, 1);
		s->t_last_accept = now;
	} else if (ret == -EAGAIN) {
		__sync_fetch_and_add(&s->eagains, 1);
		s->t_last_eagain = now;
	} else {
		__sync_fetch_and_add(&s->errors, 1);
		s->last_err = (__s32)-ret;
	}

	struct event_header h = {};
	read_goid(t, (__u32)pid_tgid, &h);
	if (!h.goid_ok)
		return 0;
	struct acceptor_key ak = {.goid = h.goid, .pid = k.pid, .fd = k.fd};
	struct acceptor *a = bpf_map_lookup_elem(&acceptors, &ak);
	if (!a) {
		struct acceptor zero = {};
		bpf_map_update_elem(&acceptors, &ak, &zero, BPF_NOEXIST);
		a = bpf_map_lookup_elem(&acceptors, &ak);
		if (!a)
			return 0;
	}
	a->t_last_call = now;
	a->tid = (__u32)pid_tgid;
	if (ret >= 0) {
		a->accepts++;
		a->t_last_accept = now;
	} else if (ret == -EAGAIN) {
		a->t_last_eagain = now;
	}
	return 0;
}

/* fexit where the kernel has fentry (pkg/acceptq chooses); else a uprobe
 * in the target after the syscall package's call (calls.h); else, for a
 * target that cannot have that, the syscall tracepoint, which puts every
 * thread on the host on the slow syscall entry while attached. */
SEC("fexit/__sys_accept4")
int BPF_PROG(acceptq_fexit_sys_accept4, int fd, void *addr, void *addrlen, int flags, int ret)
{
	return accept4_returned(fd, ret);
}

SEC("uprobe")
int acceptq_uprobe_accept4_return(struct pt_regs *ctx)
{
	long ret;
	struct call_args args;
	if (!call_returned(ctx, bpf_get_current_pid_tgid() >> 32, &ret, &args))
		return 0;
	return accept4_returned((int)args.fd, ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int acceptq_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	if (calls_by_uprobe(bpf_get_current_pid_tgid() >> 32))
		return 0;
	return accept4_returned((int)USER_ARG0(), ctx->ret);
}

SEC("tracepoint/sock/inet_sock_set_state")
int acceptq_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || ctx->oldstate != TCP_SYN_RECV ||
	    ctx->newstate != TCP_ESTABLISHED)
		return 0;
	struct sock *sk = (struct sock *)ctx->skaddr;
	struct port_key k = {
		.net = (__u64)BPF_CORE_READ(sk, __sk_common.skc_net.net),
		.port = ctx->sport,
	};
	__u64 *n = bpf_map_lookup_elem(&handshakes, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	return 0;
}

/* Local flavors (CO-RE matches them to the kernel's numa_drop_counters and
 * sock by name, ignoring the ___ suffix), so that this compiles against
 * headers of kernels that predate them (the arm64 header is 6.1's). */
struct numa_drop_counters___gns {
	atomic_t drops0;
	atomic_t drops1;
} __attribute__((preserve_access_index));

struct sock___gns {
	struct numa_drop_counters___gns *sk_drop_counters;
} __attribute__((preserve_access_index));

/* sk_drops as sk_drops_read() sums it: 6.18 keeps per-NUMA-node counters for
 * some sockets (sk_drop_counters), the plain atomic for the rest. */
static __always_inline __u64 read_drops(struct sock *sk)
{
	__u64 drops = (__u32)BPF_CORE_READ(sk, sk_drops.counter);
	struct sock___gns *s = (void *)sk;
	if (bpf_core_field_exists(s->sk_drop_counters)) {
		struct numa_drop_counters___gns *ndc = BPF_CORE_READ(s, sk_drop_counters);
		if (ndc)
			drops += (__u32)BPF_CORE_READ(ndc, drops0.counter) +
				 (__u32)BPF_CORE_READ(ndc, drops1.counter);
	}
	return drops;
}

SEC("iter/task_file")
int acceptq_listeners(struct bpf_iter__task_file *ctx)
{
	struct task_struct *task = ctx->task;
	struct file *file = ctx->file;
	if (!task || !file)
		return 0;
	__u32 tgid = task->tgid;
	struct target *t = bpf_map_lookup_elem(&targets, &tgid);
	if (!t)
		return 0;
	if (BPF_CORE_READ(task, group_leader, start_boottime) / (1000000000ULL / 100) != t->start_ticks)
		return 0;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk || !is_tcp(sk))
		return 0;
	struct sock *tsk = tcp_sock_of(sk);
	if (BPF_CORE_READ(tsk, __sk_common.skc_state) != TCP_LISTEN_STATE)
		return 0;

	struct listener_rec r = {};
	r.pid = tgid;
	r.fd = (__s32)ctx->fd;
	r.sk = (__u64)tsk;
	r.mptcp = BPF_CORE_READ(sk, sk_protocol) == IPPROTO_MPTCP;
	read_sk_addrs(tsk, &r.addrs);
	r.drops = read_drops(tsk);
	r.backlog = BPF_CORE_READ(tsk, sk_ack_backlog);
	r.backlog_max = BPF_CORE_READ(tsk, sk_max_ack_backlog);

	struct port_key pk = {
		.net = (__u64)BPF_CORE_READ(tsk, __sk_common.skc_net.net),
		.port = r.addrs.sport,
	};
	__u64 *hs = bpf_map_lookup_elem(&handshakes, &pk);
	if (hs) {
		r.handshakes = *hs;
	} else {
		__u64 zero = 0;
		bpf_map_update_elem(&handshakes, &pk, &zero, BPF_NOEXIST);
	}

	__u64 sk_key = (__u64)tsk;
	__u64 *hd = bpf_map_lookup_elem(&hook_drops, &sk_key);
	if (hd) {
		r.hook_drops = *hd;
	} else {
		__u64 zero = 0;
		bpf_map_update_elem(&hook_drops, &sk_key, &zero, BPF_NOEXIST);
	}

	struct listen_key lk = {.pid = tgid, .fd = r.fd};
	struct listen_stats *s = bpf_map_lookup_elem(&listener_stats, &lk);
	if (s) {
		r.accepts = s->accepts;
		r.eagains = s->eagains;
		r.accept_errors = s->errors;
		r.t_last_accept = s->t_last_accept;
		r.t_last_eagain = s->t_last_eagain;
		r.last_err = s->last_err;
	}
	struct park_key pkk = {.pid = tgid, .fd = r.fd, .dir = DIR_READ};
	struct park *p = bpf_map_lookup_elem(&parks, &pkk);
	if (p && p->mode == MODE_ACCEPT) {
		r.parked = 1;
		r.park_goid = p->goid;
		r.t_park = p->t_park;
		r.t_ready = p->t_ready;
	}
	r.now = bpf_ktime_get_boot_ns();
	bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
	return 0;
}

const struct listener_rec *unused_listener_rec __attribute__((unused));
