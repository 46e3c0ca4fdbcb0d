/* accept4, connect and getsockopt hooked by uprobes in the target, where the
 * kernel has no fentry: the syscall tracepoints they replace would put every
 * thread on the host on the slow syscall entry while anything is traced.
 *
 * The probes sit in the syscall package's wrappers (pkg/goruntime's
 * SocketSyscallSites), on instructions the kernel emulates: at the CALL of
 * syscall.Syscall or Syscall6, which sees the syscall's arguments, and right
 * after it, which sees the result and the errno but no longer the
 * arguments. netpoll.bpf.c's programs at the calls save them here, keyed by
 * the goroutine (its g: the goroutine may resume on another thread after the
 * syscall, never on another g); tcp.bpf.c and acceptq.bpf.c read them at the
 * returns from the same map (pkg/netpoll owns it, the others share it). An
 * entry is overwritten by the goroutine's next call; LRU drops those of
 * goroutines that ended. */

#ifndef GONETSCOPE_CALLS_H
#define GONETSCOPE_CALLS_H

#include "gonetscope.h"

struct call_key {
	__u32 pid;
	__u32 _pad;
	__u64 g;
};

struct call_args {
	__s64 fd;   /* the syscall's first argument */
	__u64 arg1; /* its second (connect's sockaddr) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct call_key);
	__type(value, struct call_args);
} saved_calls SEC(".maps");

/* At the call of Syscall/Syscall6: the number is the first integer
 * argument, then the syscall's own. Saves them for the return; the fd. */
static __always_inline __s32 save_call_args(struct pt_regs *ctx, __u32 pid)
{
	struct call_key k = {.pid = pid, .g = GO_REG_G(ctx)};
	struct call_args a = {.fd = (__s32)GO_REG_ARG(ctx, 1), .arg1 = GO_REG_ARG(ctx, 2)};
	bpf_map_update_elem(&saved_calls, &k, &a, BPF_ANY);
	return (__s32)a.fd;
}

/* Right after the call: r1 in the first result register, the errno in the
 * third. ret is what the kernel returned (-errno on failure), *args what
 * the call saw; false if no call of the goroutine was seen (the one
 * returning was made before the probes were attached). */
static __always_inline bool call_returned(struct pt_regs *ctx, __u32 pid, long *ret, struct call_args *args)
{
	struct call_key k = {.pid = pid, .g = GO_REG_G(ctx)};
	struct call_args *a = bpf_map_lookup_elem(&saved_calls, &k);
	if (!a)
		return false;
	*args = *a;
	__u64 errno = GO_REG_ARG(ctx, 2);
	*ret = errno ? -(long)errno : (long)GO_REG_ARG(ctx, 0);
	return true;
}

/* Whether target t's accept4, connect and getsockopt are hooked by these
 * uprobes: its syscall tracepoint programs (serving the targets that could
 * not have the uprobes) then leave it alone. */
static __always_inline bool calls_by_uprobe(__u32 pid)
{
	struct target *t = bpf_map_lookup_elem(&targets, &pid);
	return t && t->calls_uprobe;
}

#endif
