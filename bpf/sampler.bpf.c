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

#define MAX_STACK_DEPTH 127

/* The traced process (tgid). Set by user space before load. */
volatile const __u32 target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 16384);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
} stack_traces SEC(".maps");

struct sample_key {
	__u32 tid;
	__s32 stack_id;
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
	__s32 stack_id;
	__u32 _pad;
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

static __always_inline void add_sample(__u32 tid, __s32 stack_id, __u64 ns)
{
	if (stack_id < 0) {
		count_sample_lost();
		return;
	}
	struct sample_key k = {.tid = tid, .stack_id = stack_id};
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
	__sync_fetch_and_add(&v->ns, ns);
}

SEC("perf_event")
int cpu_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if ((pid_tgid >> 32) != target_tgid)
		return 0;
	add_sample((__u32)pid_tgid, bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK), 0);
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
			.stack_id = bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK),
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
		__s32 stack_id = s->stack_id;
		bpf_map_delete_elem(&off_since, &tid);
		if (now > t)
			add_sample(tid, stack_id, now - t);
	}
	return 0;
}

const struct sample_key *unused_sample_key __attribute__((unused));
const struct sample_value *unused_sample_value __attribute__((unused));
