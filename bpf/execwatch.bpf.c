//go:build ignore

/* execwatch: notices a traced process that replaces its image by exec(2)
 * (same PID, maybe a binary of another Go version). At
 * sched:sched_process_exec it takes the process out of the targets map, so
 * no program reads goroutines of the new image at the old image's offsets,
 * and counts the exec; user space sees the count change within a poll
 * interval, inspects the new image and puts the process back with its own
 * offsets (or detaches it if it is not Go). Loaded by pkg/execwatch.
 *
 * One tracepoint hit per exec on the host, a hash lookup each: nothing on
 * any hot path.
 */

#include "gonetscope.h"

char __license[] SEC("license") = "Dual MIT/GPL";

/* Execs per traced PID since user space last reset it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} execs SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int execwatch_exec(void *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!lookup_target(tgid))
		return 0;
	bpf_map_delete_elem(&targets, &tgid);
	__u64 one = 1;
	__u64 *n = bpf_map_lookup_elem(&execs, &tgid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&execs, &tgid, &one, BPF_ANY);
	return 0;
}
