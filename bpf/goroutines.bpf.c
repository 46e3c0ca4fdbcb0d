//go:build ignore

/* goroutines: goroutine creation and exit in traced processes, counted by
 * creation site, for the goroutines summary and leak detection. Loaded by
 * pkg/goroutines, opt-in (--goroutines).
 *
 * Two uprobes per target, each on a CALL instruction (the kernel emulates
 * those instead of single-stepping them; never uretprobes):
 *   created: in runtime.newproc.func1, CALL runtime.runqput, BX = the new g
 *   exited:  in runtime.goexit0, CALL runtime.gdestroy, AX = the dead g
 * Goroutines created before the attach are not counted.
 */

#include "gonetscope.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Offsets into runtime.g of one target, set by user space at attach. */
struct g_layout {
	__u16 goid;
	__u16 startpc;
	__u16 gopc;
	__u16 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TARGETS);
	__type(key, __u32); /* tgid */
	__type(value, struct g_layout);
} g_layouts SEC(".maps");

struct goroutine_key {
	__u32 pid;
	__u32 _pad;
	__u64 goid;
};

/* A live goroutine created since the attach. */
struct goroutine {
	__u64 startpc;  /* the function it runs */
	__u64 gopc;     /* the go statement that created it */
	__u64 t_create; /* bpf_ktime_get_boot_ns */
	__u64 g;        /* its runtime.g */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct goroutine_key);
	__type(value, struct goroutine);
} live SEC(".maps");

struct site_key {
	__u32 pid;
	__u32 _pad;
	__u64 startpc;
	__u64 gopc;
};

struct site_count {
	__u64 created;
	__u64 exited;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct site_key);
	__type(value, struct site_count);
} sites SEC(".maps");

/* [0]: creations not tracked (live or sites full). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} untracked SEC(".maps");

static __always_inline void count_untracked(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&untracked, &zero);
	if (n)
		(*n)++;
}

SEC("uprobe")
int goroutine_created(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct g_layout *l = bpf_map_lookup_elem(&g_layouts, &pid);
	if (!l || !lookup_target(pid))
		return 0;
	__u64 g = GO_REG_ARG(ctx, 1);
	struct goroutine_key k = {.pid = pid};
	struct goroutine v = {.g = g, .t_create = bpf_ktime_get_boot_ns()};
	if (bpf_probe_read_user(&k.goid, sizeof(k.goid), (void *)(g + l->goid)) ||
	    bpf_probe_read_user(&v.startpc, sizeof(v.startpc), (void *)(g + l->startpc)) ||
	    bpf_probe_read_user(&v.gopc, sizeof(v.gopc), (void *)(g + l->gopc)))
		return 0;
	struct site_key sk = {.pid = pid, .startpc = v.startpc, .gopc = v.gopc};
	struct site_count *c = bpf_map_lookup_elem(&sites, &sk);
	if (!c) {
		struct site_count zero = {};
		bpf_map_update_elem(&sites, &sk, &zero, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&sites, &sk);
		if (!c) {
			count_untracked();
			return 0;
		}
	}
	if (bpf_map_update_elem(&live, &k, &v, BPF_ANY)) {
		count_untracked();
		return 0;
	}
	__sync_fetch_and_add(&c->created, 1);
	return 0;
}

SEC("uprobe")
int goroutine_exited(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct g_layout *l = bpf_map_lookup_elem(&g_layouts, &pid);
	if (!l)
		return 0;
	struct goroutine_key k = {.pid = pid};
	if (bpf_probe_read_user(&k.goid, sizeof(k.goid), (void *)(GO_REG_ARG(ctx, 0) + l->goid)))
		return 0;
	struct goroutine *v = bpf_map_lookup_elem(&live, &k);
	if (!v)
		return 0; /* created before the attach */
	struct site_key sk = {.pid = pid, .startpc = v->startpc, .gopc = v->gopc};
	bpf_map_delete_elem(&live, &k);
	struct site_count *c = bpf_map_lookup_elem(&sites, &sk);
	if (c)
		__sync_fetch_and_add(&c->exited, 1);
	return 0;
}
