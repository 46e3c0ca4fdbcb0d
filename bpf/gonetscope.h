/* Shared by every gonetscope BPF object: the traced-target filter, goroutine
 * attribution from the syscall's user registers, the event header, and
 * socket lookups. Structs here are mirrored into Go by bpf2go (-type); keep
 * them free of implicit padding (-Wpadded is on).
 */
#pragma once

/* -Wpadded is for our own structs, shared with Go; not for the kernel's. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux.h"
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_core_read.h"
#include "bpf/bpf_tracing.h"
#include "bpf/bpf_endian.h"
#pragma clang diagnostic pop

#define EAGAIN 11
#define EINPROGRESS 115

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_MPTCP 262
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define MAX_TARGETS 4096

/* The PID filter that hot programs run first: a bitmap of PIDs in an
 * array map (netpoll's traced_pids and sock_pids), one bit per PID, words
 * covering PID_MAX_LIMIT (4M on 64-bit). An array lookup is inlined by the
 * verifier: no helper call and no hashing, and a process that is not
 * traced pays it before any register or memory read. */
#define PID_WORDS (4194304 / 64)
static __always_inline bool pid_in(void *bitmap, __u32 tgid)
{
	__u32 word = tgid / 64;
	__u64 *w = bpf_map_lookup_elem(bitmap, &word);
	return w && (*w & (1ULL << (tgid & 63)));
}

/* One traced process. Written by user space at attach, read by every hook. */
struct target {
	/* Start of the traced process in clock ticks since boot, as in field 22
	 * of /proc/PID/stat: a new process that reuses the PID does not match
	 * and gets no events. */
	__u64 start_ticks;
	/* netpoll_wait and epoll_wait below this are not sent to user space. */
	__u64 min_wait_ns;
	/* Offsets into the target's Go runtime structs, from its DWARF or the
	 * version table. Zero g_goid means unknown: no goroutine ids. */
	__u16 g_goid;
	__u16 g_m;
	__u16 m_procid;
	__u16 pd_fd;
	__u16 pd_fdseq;
	/* Decoding of epoll_event.data (a tagged *pollDesc): ptr = (data >> shr) << shl,
	 * tag = data & ((1 << shr) - 1). shr == 0: data is a plain pointer. */
	__u8 pd_tag_shr;
	__u8 pd_tag_shl;
	/* 1: events on a goroutine carry its user stack (--stacks). */
	__u8 stacks;
	/* The depth of the target's PID namespace below the host's: 0 outside
	 * containers; else its thread ids there differ from the host's. */
	__u8 pidns_level;
	/* pollDesc.rd and wd, the read and write deadlines; 0: unknown. */
	__u16 pd_rd;
	__u16 pd_wd;
	/* 1: its accept4, connect and getsockopt are hooked by uprobes in its
	 * binary (calls.h), not by the syscall tracepoints. */
	__u8 calls_uprobe;
	__u8 _pad;
	/* g.stack.lo and .hi: read_goid takes a g whose stack holds the
	 * thread's user stack pointer. g_stack_hi 0: unknown. */
	__u16 g_stack_lo;
	__u16 g_stack_hi;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32); /* tgid */
	__type(value, struct target);
} targets SEC(".maps");

enum event_type {
	EVENT_NETPOLL_WAIT = 1,
	EVENT_EPOLL_WAIT = 2,
	EVENT_TCP_CONNECT = 3,
	EVENT_TCP_ACCEPT = 4,
	EVENT_ACCEPT_ERROR = 5,
};

/* First member of every event. */
struct event_header {
	__u64 time_ns; /* bpf_ktime_get_boot_ns() */
	__u64 goid;
	__u32 pid;
	__u32 tid;
	__u8 type;     /* enum event_type */
	__u8 goid_ok;  /* goid was read and validated (read_goid) */
	__u8 _pad[2];
	/* The thread's id in the target's own PID namespace (what gettid()
	 * returns there); 0 when not read. Equal to tid outside containers. */
	__u32 ns_tid;
	char comm[16];
};

/* A socket's endpoints. IPv4 addresses use the first 4 bytes. Ports in host order. */
struct addrs {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 _pad;
};

/* A goroutine's user stack, walked by frame pointers (Go keeps them on
 * amd64): pcs[0] is where the thread entered the kernel, then return
 * addresses, innermost first. len 0: not captured. */
#define MAX_STACK_DEPTH 32
struct user_stack {
	__u64 pcs[MAX_STACK_DEPTH];
	__u32 len;
	__u32 _pad;
};

/* Entries of the per-CPU array `lost`: events that found the ring buffer
 * full, by enum event_type. */
#define LOST_MAX 16

/* The current task. bpf_get_current_task_btf() (5.11) gives a typed
 * pointer; before it, the untyped one is read the same way (BPF_CORE_READ). */
static __always_inline struct task_struct *current_task(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return bpf_get_current_task_btf();
	return (struct task_struct *)bpf_get_current_task();
}

/* When the current process started (its group leader's start_boottime):
 * plain loads through the BTF-typed task (5.11+), where BPF_CORE_READ
 * makes a helper call per pointer. */
static __always_inline __u64 leader_start_boottime(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf))
		return bpf_get_current_task_btf()->group_leader->start_boottime;
	return BPF_CORE_READ((struct task_struct *)bpf_get_current_task(), group_leader, start_boottime);
}

#define TICK_NS (1000000000ULL / 100)

static __always_inline struct target *lookup_target(__u32 tgid)
{
	struct target *t = bpf_map_lookup_elem(&targets, &tgid);
	if (!t)
		return NULL;
	/* /proc/PID/stat's starttime is start_boottime in USER_HZ (100)
	 * ticks: the same tick is the same 10 ms (a multiply, where the
	 * division took a 64-bit divide per event). */
	__u64 since = leader_start_boottime() - t->start_ticks * TICK_NS;
	if (since >= TICK_NS)
		return NULL; /* the PID was reused by another process */
	return t;
}

/* The user registers saved at syscall entry, before bpf_task_pt_regs()
 * (5.15): they sit at the top of the task's kernel stack, where the
 * kernel's own task_pt_regs() finds them (x86-64, and arm64 with 4 KiB
 * pages: THREAD_SIZE 16 KiB without KASAN, no padding). */
#define KERNEL_THREAD_SIZE (4096 << 2)
static __always_inline struct pt_regs *stack_regs(void)
{
	void *stack = BPF_CORE_READ(current_task(), stack);
	return (struct pt_regs *)(stack + KERNEL_THREAD_SIZE - sizeof(struct pt_regs));
}

/* One user register saved at syscall entry. Where the kernel has
 * bpf_task_pt_regs() (5.15), a plain load from the BTF-typed pointer it
 * returns; before it, a read through stack_regs(). The check is a CO-RE
 * relocation against the running kernel, so the verifier never sees the
 * branch the kernel cannot run. */
#define USER_REG(field) ({                                                              \
	__u64 __v;                                                                      \
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs))        \
		__v = ((struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf()))->field; \
	else                                                                            \
		__v = BPF_CORE_READ(stack_regs(), field);                               \
	__v;                                                                            \
})

/* The user registers saved at syscall entry: the syscall number, its first
 * two arguments, and the register Go's ABIInternal keeps the current g in. */
#if defined(__TARGET_ARCH_x86)
#define USER_SYSCALL_NR() USER_REG(orig_ax)
#define USER_ARG0() USER_REG(di)
#define USER_ARG1() USER_REG(si)
#define USER_GO_G() USER_REG(r14)
#define NR_CONNECT 42
/* Go's ABIInternal integer registers in argument order: RAX, RBX, RCX,
 * RDI, RSI, R8, R9, R10, R11. */
#define GO_REG_ARG(r, i) ((i) == 0 ? (r)->ax : (i) == 1 ? (r)->bx : (i) == 2 ? (r)->cx : \
			  (i) == 3 ? (r)->di : (i) == 4 ? (r)->si : (i) == 5 ? (r)->r8 :  \
			  (i) == 6 ? (r)->r9 : (i) == 7 ? (r)->r10 : (r)->r11)
/* The current g in a uprobe's own registers. */
#define GO_REG_G(r) ((r)->r14)
#elif defined(__TARGET_ARCH_arm64)
#define USER_SYSCALL_NR() USER_REG(syscallno)
#define USER_ARG0() USER_REG(orig_x0)
#define USER_ARG1() USER_REG(regs[1])
#define USER_GO_G() USER_REG(regs[28])
#define NR_CONNECT 203
/* Go's ABIInternal integer registers in argument order: R0, R1, R2, ... */
#define GO_REG_ARG(r, i) ((r)->regs[i])
#define GO_REG_G(r) ((r)->regs[28])
#else
#error "gonetscope supports amd64 and arm64"
#endif

/* The calling thread's id as the target sees it: gettid() in the target's
 * own PID namespace, which is what the Go runtime stored in m.procid. A
 * task's struct pid holds its number at every level from the host's (0) to
 * its own (pid->level, the target's pidns_level); a container's threads have
 * a different number at each level. Read with CO-RE, so it works on every hook mechanism. */
static __always_inline __u32 ns_tid(const struct target *t, __u32 tid)
{
	if (!t->pidns_level)
		return tid;
	/* Every kernel gonetscope supports has them (4.19+); user space says
	 * in attached.limits when this one would not. */
	if (!bpf_core_field_exists(struct task_struct, thread_pid) || !bpf_core_field_exists(struct pid, numbers))
		return 0;
	struct task_struct *task = current_task();
	struct pid *pid = BPF_CORE_READ(task, thread_pid);
	if (!pid)
		return 0;
	/* (pid->level would say the same; user space read it from NSpid.) */
	unsigned int level = t->pidns_level;
	return BPF_CORE_READ(pid, numbers[level].nr);
}

/* Reads the calling goroutine's id. Go's ABIInternal keeps the current g in
 * R14; at a syscall the saved user registers still hold it. The read
 * counts only if the thread runs on that g's stack: its user stack
 * pointer lies within g.stack. A goroutine's syscall (and a runtime
 * thread's, on g0: goid 0) passes; a cgo thread, whose R14 is garbage or
 * a g whose stack it is not on, does not. Two user reads; where the
 * stack's offsets are unknown, the thread check instead: g.m.procid is
 * this thread's id in the target's PID namespace (three). */
static __always_inline void read_goid(const struct target *t, __u32 tid, struct event_header *h)
{
	h->goid = 0;
	h->goid_ok = 0;
	h->ns_tid = ns_tid(t, tid);
	if (!t->g_goid)
		return;
	__u64 g = USER_GO_G();
	__u64 goid, m, procid;
	if (!g || bpf_probe_read_user(&goid, sizeof(goid), (void *)(g + t->g_goid)))
		return;
	if (t->g_stack_hi) {
		struct {
			__u64 lo, hi;
		} stack;
		__u64 sp = USER_REG(sp);
		if (t->g_stack_hi == t->g_stack_lo + sizeof(__u64)) {
			if (bpf_probe_read_user(&stack, sizeof(stack), (void *)(g + t->g_stack_lo)))
				return;
		} else if (bpf_probe_read_user(&stack.lo, sizeof(stack.lo), (void *)(g + t->g_stack_lo)) ||
			   bpf_probe_read_user(&stack.hi, sizeof(stack.hi), (void *)(g + t->g_stack_hi))) {
			return;
		}
		if (sp < stack.lo || sp >= stack.hi)
			return;
	} else {
		if (!h->ns_tid || bpf_probe_read_user(&m, sizeof(m), (void *)(g + t->g_m)) || !m)
			return;
		if (bpf_probe_read_user(&procid, sizeof(procid), (void *)(m + t->m_procid)) || procid != h->ns_tid)
			return;
	}
	h->goid = goid;
	h->goid_ok = 1;
}

/* The id of goroutine g, the g register of a uprobe in the target's Go
 * code, where the ABI keeps it (so no check, unlike read_goid): one user
 * read. */
static __always_inline void read_goid_of(const struct target *t, __u32 tid, __u64 g, struct event_header *h)
{
	h->goid = 0;
	h->goid_ok = 0;
	h->ns_tid = ns_tid(t, tid);
	if (t->g_goid && g && !bpf_probe_read_user(&h->goid, sizeof(h->goid), (void *)(g + t->g_goid)))
		h->goid_ok = 1;
}

/* The calling goroutine's id, unchecked: one user read where read_goid
 * makes two. Enough to tell whether a goroutine whose id read_goid
 * validated runs again: a thread without a goroutine in R14 matches a
 * 64-bit goroutine id only by accident. */
static __always_inline bool peek_goid(const struct target *t, __u64 *goid)
{
	if (!t->g_goid)
		return false;
	__u64 g = USER_GO_G();
	return g && !bpf_probe_read_user(goid, sizeof(*goid), (void *)(g + t->g_goid));
}

/* Captures the calling goroutine's user stack into s when the target asked
 * for stacks and h says the thread is on a goroutine; else s->len = 0. */
static __always_inline void capture_stack(void *ctx, const struct target *t,
					  const struct event_header *h, struct user_stack *s)
{
	s->len = 0;
	s->_pad = 0;
	if (!t->stacks || !h->goid_ok)
		return;
	long n = bpf_get_stack(ctx, s->pcs, sizeof(s->pcs), BPF_F_USER_STACK);
	if (n > 0)
		s->len = n / sizeof(__u64);
}

/* Fills everything but the goroutine id (see read_goid), as of now (a
 * bpf_ktime_get_boot_ns() the caller has read already). */
static __always_inline void fill_header_at(struct event_header *h, enum event_type type, __u64 pid_tgid, __u64 now)
{
	h->time_ns = now;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->type = type;
	__builtin_memset(h->_pad, 0, sizeof(h->_pad));
	h->ns_tid = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

static __always_inline void fill_header(struct event_header *h, enum event_type type, __u64 pid_tgid)
{
	fill_header_at(h, type, pid_tgid, bpf_ktime_get_boot_ns());
}

/* The struct file behind fd in the current process, or NULL. */
static __always_inline struct file *file_of_fd(int fd)
{
	struct task_struct *task = current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

/* The struct sock behind fd in the current process, or NULL when fd is not a socket. */
static __always_inline struct sock *sock_from_fd(int fd)
{
	struct file *f = file_of_fd(fd);
	if (!f)
		return NULL;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

static __always_inline void read_sk_addrs(struct sock *sk, struct addrs *a)
{
	a->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	a->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	a->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (a->family == AF_INET6) {
		/* Whole struct in6_addr: with the u8 array as the source,
		 * BPF_CORE_READ_INTO would copy one element. */
		BPF_CORE_READ_INTO((struct in6_addr *)a->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)a->daddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)a->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)a->daddr, sk, __sk_common.skc_daddr);
	}
}

/* read_sk_addrs for a BTF-typed sk (a tp_btf or fentry argument): plain
 * loads, where read_sk_addrs makes five helper calls. */
static __always_inline void sk_addrs(const struct sock *sk, struct addrs *a)
{
	a->family = sk->__sk_common.skc_family;
	a->sport = sk->__sk_common.skc_num;
	a->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (a->family == AF_INET6) {
		__builtin_memcpy(a->saddr, &sk->__sk_common.skc_v6_rcv_saddr, sizeof(struct in6_addr));
		__builtin_memcpy(a->daddr, &sk->__sk_common.skc_v6_daddr, sizeof(struct in6_addr));
	} else {
		__builtin_memcpy(a->saddr, &sk->__sk_common.skc_rcv_saddr, sizeof(__u32));
		__builtin_memcpy(a->daddr, &sk->__sk_common.skc_daddr, sizeof(__u32));
	}
}

/* TCP or MPTCP. Go 1.24+ listens with MPTCP by default (sk_protocol 262). */
static __always_inline bool is_tcp(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 proto = BPF_CORE_READ(sk, sk_protocol);
	return (family == AF_INET || family == AF_INET6) &&
	       (proto == IPPROTO_TCP || proto == IPPROTO_MPTCP);
}

/* The TCP sock behind sk. An MPTCP socket (a Go 1.24+ listener, or a
 * connection that did not fall back to TCP) is a struct mptcp_sock; its
 * first TCP subflow holds the accept queue, the handshake state and the
 * addresses. */
static __always_inline struct sock *tcp_sock_of(struct sock *sk)
{
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_MPTCP)
		return sk;
	if (!bpf_core_type_exists(struct mptcp_sock))
		return sk;
	struct sock *first = BPF_CORE_READ((struct mptcp_sock *)sk, first);
	return first ? first : sk;
}

/* Each object has its own ring buffer `events` (resized by user space before
 * load) and its own `lost` counters. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOST_MAX);
	__type(key, __u32); /* enum event_type */
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(enum event_type type)
{
	__u32 key = type;
	__u64 *n = bpf_map_lookup_elem(&lost, &key);
	if (n)
		(*n)++;
}

/* Reserves an event of C type `type` and enum event_type `kind` in
 * `events`, counting a full ring buffer as lost. */
#define reserve_event(type, kind) ({                                   \
	type *__e = bpf_ringbuf_reserve(&events, sizeof(type), 0);     \
	if (!__e)                                                      \
		count_lost(kind);                                      \
	__e;                                                           \
})

/* Submits e to `events`, waking the reader only when its last wake-up
 * (*last, the object's own global) was interval_ns ago or more: the
 * reader drains once more an interval after each wake-up (pkg/tracer
 * streams.go), so no event waits longer. For the objects with few events
 * (requests, contention); netpoll's submit wakes on a backlog too. */
static __always_inline void submit_at_most_every(void *e, __u64 interval_ns, __u64 *last)
{
	__u64 flags = BPF_RB_NO_WAKEUP, now = bpf_ktime_get_ns();
	if (now - *last >= interval_ns) {
		*last = now;
		flags = BPF_RB_FORCE_WAKEUP;
	}
	bpf_ringbuf_submit(e, flags);
}

/* Keep the enums in BTF so bpf2go generates Go constants for them. */
const enum event_type *unused_event_type __attribute__((unused));
