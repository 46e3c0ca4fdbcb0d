//go:build ignore

/* sampler: stacks of one target process for `gonetscope profile`. Loaded by
 * pkg/sampler.
 *   cpu:    a perf event program on each CPU's software CPU clock (hardware
 *           PMU events need not exist in a VM); a sample of a target thread
 *           counts its user stack once.
 *   offcpu: tp_btf/sched_switch; when a target thread leaves the CPU its user
 *           stack and the time are kept, and when it comes back the time away
 *           is added to that stack.
 * User stacks only: Go keeps frame pointers, so the kernel's frame-pointer
 * walk gives the whole goroutine stack. */

#include "gonetscope.h"

char __license[] SEC("license") = "Dual MIT/GPL";

#define SAMPLE_STACK_DEPTH 127

/* The traced process (tgid). Set by user space before load. */
volatile const __u32 target_tgid = 0;

/* Stacks by a 64-bit hash of their frames. (A BPF_MAP_TYPE_STACK_TRACE
 * keys by a hash of its bucket count and drops a new stack whose bucket is
 * taken: with thousands of off-CPU stacks that lost several percent.) */
struct stack {
	__u64 pcs[SAMPLE_STACK_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct stack);
} stacks SEC(".maps");

/* bpf_get_stack's output, too big for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stack);
} scratch SEC(".maps");

/* Takes the current task's user stack; returns its hash, or 0 when it
 * could not be taken or kept. */
static __always_inline __u64 user_stack(void *ctx)
{
	__u32 z = 0;
	struct stack *st = bpf_map_lookup_elem(&scratch, &z);
	if (!st)
		return 0;
	long n = bpf_get_stack(ctx, st->pcs, sizeof(st->pcs), BPF_F_USER_STACK);
	if (n <= 0)
		return 0;
	__u32 frames = n / sizeof(__u64);
	/* FNV-1a over the frames, the rest zeroed so equal stacks are equal keys. */
	__u64 h = 14695981039346656037ULL;
	for (__u32 i = 0; i < SAMPLE_STACK_DEPTH; i++) {
		if (i >= frames) {
			st->pcs[i] = 0;
			continue;
		}
		h ^= st->pcs[i];
		h *= 1099511628211ULL;
	}
	if (!h)
		h = 1;
	if (bpf_map_update_elem(&stacks, &h, st, BPF_NOEXIST) && !bpf_map_lookup_elem(&stacks, &h))
		return 0; /* map full */
	return h;
}

struct sample_key {
	__u64 stack; /* key of `stacks` */
	__u32 tid;
	__u32 _pad;
};

struct sample_value {
	__u64 count;
	__u64 ns; /* off-CPU time; 0 for cpu samples */
};

/* cpu samples and off-CPU time, by thread and stack. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, struct sample_key);
	__type(value, struct sample_value);
} samples SEC(".maps");

/* Samples that could not be kept: no stack (map full, collision) or
 * samples map full. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} samples_lost SEC(".maps");

struct switched_out {
	__u64 t;
	__u64 stack;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32); /* tid */
	__type(value, struct switched_out);
} off_since SEC(".maps");

static __always_inline void count_sample_lost(void)
{
	__u32 z = 0;
	__u64 *n = bpf_map_lookup_elem(&samples_lost, &z);
	if (n)
		(*n)++;
}

static __always_inline void add_sample(__u32 tid, __u64 stack, __u64 ns)
{
	if (!stack) {
		count_sample_lost();
		return;
	}
	struct sample_key k = {.stack = stack, .tid = tid};
	struct sample_value *v = bpf_map_lookup_elem(&samples, &k);
	if (!v) {
		struct sample_value zero = {};
		bpf_map_update_elem(&samples, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&samples, &k);
		if (!v) {
			count_sample_lost();
			return;
		}
	}
	__sync_fetch_and_add(&v->count, 1);
	/* A CPU sample adds 0 here: see hist_add on atomic adds of 0. */
	if (ns)
		__sync_fetch_and_add(&v->ns, ns);
}

SEC("perf_event")
int cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	add_sample((__u32)pid_tgid, user_stack(ctx), 0);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	__u64 now = bpf_ktime_get_ns();
	if (prev->tgid == target_tgid) {
		/* prev is still current: its user stack is the one taken. */
		struct switched_out s = {
			.t = now,
			.stack = user_stack(ctx),
		};
		__u32 tid = prev->pid;
		bpf_map_update_elem(&off_since, &tid, &s, BPF_ANY);
	}
	if (next->tgid == target_tgid) {
		__u32 tid = next->pid;
		struct switched_out *s = bpf_map_lookup_elem(&off_since, &tid);
		if (!s)
			return 0;
		__u64 t = s->t;
		__u64 stack = s->stack;
		bpf_map_delete_elem(&off_since, &tid);
		if (now > t)
			add_sample(tid, stack, now - t);
	}
	return 0;
}

const struct stack *unused_stack __attribute__((unused));
const struct sample_key *unused_sample_key __attribute__((unused));
const struct sample_value *unused_sample_value __attribute__((unused));
