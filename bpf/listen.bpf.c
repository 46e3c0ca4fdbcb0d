//go:build ignore

/* listen: every TCP listener on the host with its drop counter and accept
 * queue, dumped by a BPF socket iterator (iter/tcp) when user space reads
 * it. pkg/metrics keeps those whose socket a traced process holds (by inode)
 * and exports them per listener port. Loaded by pkg/listen.
 *
 * sk_drops of a listener counts the SYNs and completed handshakes it
 * dropped (tcp_listendrop): mostly a full accept queue (ListenOverflows),
 * which no tracepoint reports on its own.
 */

#include "gonetscope.h"

char __license[] SEC("license") = "Dual MIT/GPL";

struct tcp_listener {
	__u64 inode;       /* of the socket the process holds (the MPTCP socket for a subflow) */
	__u64 drops;       /* sk_drops */
	__u32 backlog;     /* sk_ack_backlog: connections waiting in the accept queue */
	__u32 backlog_max; /* sk_max_ack_backlog */
	__u16 port;        /* host order */
	__u16 family;
	__u32 _pad;
};

SEC("iter/tcp")
int dump_listeners(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc || BPF_CORE_READ(skc, skc_state) != TCP_LISTEN)
		return 0;
	struct sock *sk = (struct sock *)skc;
	struct sock *owner = sk;
	/* An MPTCP listener's TCP side is its first subflow. The kernel grafts
	 * it onto the MPTCP socket's struct socket (6.18 here: same inode, as
	 * TestListenMetrics shows); the subflow context's conn covers a kernel
	 * that does not. */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
	if (tp && bpf_core_field_exists(tp->is_mptcp) && BPF_CORE_READ(tp, is_mptcp) &&
	    bpf_core_type_exists(struct mptcp_subflow_context)) {
		struct mptcp_subflow_context *sf =
			BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_ulp_data);
		struct sock *conn = sf ? BPF_CORE_READ(sf, conn) : NULL;
		if (conn)
			owner = conn;
	}
	struct tcp_listener l = {
		.inode = BPF_CORE_READ(owner, sk_socket, file, f_inode, i_ino),
		.drops = (__u32)BPF_CORE_READ(sk, sk_drops.counter),
		.backlog = BPF_CORE_READ(sk, sk_ack_backlog),
		.backlog_max = BPF_CORE_READ(sk, sk_max_ack_backlog),
		.port = BPF_CORE_READ(skc, skc_num),
		.family = BPF_CORE_READ(skc, skc_family),
	};
	if (!l.inode)
		return 0;
	bpf_seq_write(ctx->meta->seq, &l, sizeof(l));
	return 0;
}

const struct tcp_listener *unused_listener __attribute__((unused));
