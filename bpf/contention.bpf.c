//go:build ignore

/* contention: how long goroutines block on sync.Mutex, RWMutex,
 * WaitGroup, channels and select, by stack and wait reason.
 * Loaded by pkg/contention, opt-in (gonetscope profile --kind block
 * --contention).
 *
 * Two uprobes per blocking call site in the target's runtime, both on
 * instructions the kernel emulates (pkg/contention Sites; never
 * uretprobes):
 *   block:   the CALL of gopark (or goparkunlock) in runtime.semacquire1,
 *            chanrecv, chansend and selectgo: the
 *            goroutine is about to park; the wait reason is the call's
 *            third (gopark) or second (goparkunlock) argument.
 *   unblock: the first emulated instruction after that call: the
 *            goroutine runs again.
 * and, for a profile, one on the entry branch of runtime.ready(gp), which
 * makes a parked goroutine runnable (the unlock, the send, the Done that
 * woke it; but every other wake-up too, such as net/http's sync.Cond once
 * per keep-alive request, so trace --contention goes without it):
 *   ready:   the goroutine gp may run.
 * Park -> ready is its delay, as the runtime's own block profile counts
 * it (the runtime stamps the waiter at ready); ready -> run again is the
 * scheduler's delay, kept apart. Only these slow paths are probed: a lock
 * taken without waiting costs nothing. For a profile (profile_stacks),
 * every block counts in `contentions` by the stack taken at the park; for
 * trace --contention only a block whose delay reaches min_block_ns does
 * anything more than the timing: its stack is taken as the goroutine runs
 * again (the same calls: it resumes in the function that parked) and it
 * is sent as a contention event. The stack walk is most of a probe's own
 * time (1.1 of 1.4 µs per block, make bench).
 */

#include "gonetscope.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* The offset of goid in runtime.g of one target, set by user space at
 * attach; its presence is the PID filter. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32); /* tgid */
	__type(value, __u32);
} goid_offsets SEC(".maps");

#define CONTENTION_STACK_DEPTH 127

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, CONTENTION_STACK_DEPTH * sizeof(__u64));
} contention_stacks SEC(".maps");

struct blocked_key {
	__u32 pid;
	__u32 _pad;
	__u64 goid;
};

/* A goroutine parked at a probed site, until it runs again. */
struct blocked {
	__u64 t_block; /* bpf_ktime_get_ns */
	__u64 t_ready; /* 0 until runtime.ready */
	__s32 stack_id;
	__u32 reason; /* the runtime's waitReason */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct blocked_key);
	__type(value, struct blocked);
} blocked SEC(".maps");

struct contention_key {
	__u32 pid;
	__s32 stack_id;
	__u32 reason;
};

struct contention_value {
	__u64 count;
	__u64 delay_ns;       /* park -> ready (-> run where no ready was seen) */
	__u64 sched_delay_ns; /* ready -> run */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct contention_key);
	__type(value, struct contention_value);
} contentions SEC(".maps");

/* [0]: blocks whose stack could not be kept; [1]: blocks not counted
 * (contentions full). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} contention_lost SEC(".maps");

enum contention_event_type {
	EVENT_CONTENTION = 8,
};

struct contention_event {
	struct event_header hdr;
	__u64 delay_ns;       /* park -> ready (-> run where no ready was seen) */
	__u64 sched_delay_ns; /* ready -> run */
	__s32 stack_id;       /* in contention_stacks; < 0: not kept */
	__u32 reason;         /* the runtime's waitReason */
	__u32 ready_seen;     /* 0: no ready probe (trace): delay_ns runs until it ran */
	__u32 _pad;
};

/* Blocks at least this long are sent as events; user space sets it
 * before load (the maximum: none, as for profile). */
const volatile __u64 min_block_ns = ~0ULL;

/* 1: every block's stack is taken at the park and counted in
 * `contentions` (profile); user space sets it before load. */
const volatile __u8 profile_stacks = 0;

/* Events wake the reader at most every wakeup_interval_ns (set by user
 * space before load: the tracer's drain interval). */
const volatile __u64 wakeup_interval_ns = 50000000;
__u64 last_wakeup_ns = 0;

static __always_inline void count_contention_lost(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&contention_lost, &which);
	if (n)
		(*n)++;
}

/* The key of the goroutine g, or false where the process is not traced
 * or g cannot be read. */
static __always_inline bool goroutine_key(__u64 g, struct blocked_key *k)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u32 *off = bpf_map_lookup_elem(&goid_offsets, &pid);
	if (!off)
		return false;
	k->pid = pid;
	k->_pad = 0;
	return bpf_probe_read_user(&k->goid, sizeof(k->goid), (void *)(g + *off)) == 0;
}

static __always_inline bool current_goroutine(struct pt_regs *ctx, struct blocked_key *k)
{
	return goroutine_key(GO_REG_G(ctx), k);
}

static __always_inline int block(struct pt_regs *ctx, __u32 reason)
{
	struct blocked_key k;
	if (!current_goroutine(ctx, &k))
		return 0;
	struct blocked b = {
		.t_ready = 0,
		.stack_id = profile_stacks ? bpf_get_stackid(ctx, &contention_stacks, BPF_F_USER_STACK) : -1,
		.reason = reason & 0xff,
	};
	b.t_block = bpf_ktime_get_ns();
	bpf_map_update_elem(&blocked, &k, &b, BPF_ANY);
	return 0;
}

SEC("uprobe")
int block_gopark(struct pt_regs *ctx)
{
	return block(ctx, GO_REG_ARG(ctx, 2));
}

SEC("uprobe")
int block_goparkunlock(struct pt_regs *ctx)
{
	return block(ctx, GO_REG_ARG(ctx, 1));
}

/* runtime.ready(gp, traceskip, next): gp, parked, may run. */
SEC("uprobe")
int ready(struct pt_regs *ctx)
{
	struct blocked_key k;
	if (!goroutine_key(GO_REG_ARG(ctx, 0), &k))
		return 0;
	struct blocked *b = bpf_map_lookup_elem(&blocked, &k);
	if (b && !b->t_ready)
		b->t_ready = bpf_ktime_get_ns();
	return 0;
}

SEC("uprobe")
int unblock(struct pt_regs *ctx)
{
	struct blocked_key k;
	if (!current_goroutine(ctx, &k))
		return 0;
	struct blocked *b = bpf_map_lookup_elem(&blocked, &k);
	if (!b)
		return 0; /* parked before the attach */
	__u64 now = bpf_ktime_get_ns();
	__u64 delay = now - b->t_block, sched = 0;
	__u32 ready_seen = b->t_ready != 0;
	if (ready_seen) {
		delay = b->t_ready - b->t_block;
		sched = now - b->t_ready;
	}
	struct contention_key ck = {.pid = k.pid, .stack_id = b->stack_id, .reason = b->reason};
	bpf_map_delete_elem(&blocked, &k);
	if (delay >= min_block_ns) {
		if (!profile_stacks)
			ck.stack_id = bpf_get_stackid(ctx, &contention_stacks, BPF_F_USER_STACK);
		struct contention_event *e = reserve_event(struct contention_event, (enum event_type)EVENT_CONTENTION);
		if (e) {
			__u64 pid_tgid = bpf_get_current_pid_tgid();
			fill_header(&e->hdr, (enum event_type)EVENT_CONTENTION, pid_tgid);
			e->hdr.goid = k.goid;
			e->hdr.goid_ok = 1;
			e->delay_ns = delay;
			e->sched_delay_ns = sched;
			e->stack_id = ck.stack_id;
			e->reason = ck.reason;
			e->ready_seen = ready_seen;
			e->_pad = 0;
			submit_at_most_every(e, wakeup_interval_ns, &last_wakeup_ns);
		}
	}
	if (!profile_stacks)
		return 0;
	if (ck.stack_id < 0) {
		count_contention_lost(0);
		ck.stack_id = -1;
	}
	struct contention_value *v = bpf_map_lookup_elem(&contentions, &ck);
	if (!v) {
		struct contention_value zero = {};
		bpf_map_update_elem(&contentions, &ck, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&contentions, &ck);
		if (!v) {
			count_contention_lost(1);
			return 0;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->delay_ns, delay);
	__sync_fetch_and_add(&v->sched_delay_ns, sched);
	return 0;
}

/* Keep the event types in BTF so bpf2go can generate their Go twins. */
const struct contention_event *unused_contention_event __attribute__((unused));
const enum contention_event_type *unused_contention_event_type __attribute__((unused));
