/* The netpoller's park records: which goroutine waits on which socket,
 * since when, and when the netpoller saw the socket ready. Written by
 * bpf/netpoll.bpf.c; bpf/acceptq.bpf.c reads them (the same map, shared
 * by user space) to tell whether an acceptor is parked. */
#pragma once

enum dir {
	DIR_READ = 0,
	DIR_WRITE = 1,
};

enum mode {
	MODE_READ = 1,
	MODE_WRITE = 2,
	MODE_ACCEPT = 3,
	MODE_CONNECT = 4,
};

struct park_key {
	__u32 pid;
	__s32 fd;
	__u32 dir; /* enum dir */
};

struct park {
	__u64 goid;
	__u64 t_park;
	__u64 t_ready;
	__u64 sk; /* the socket whose readiness ends an accept's or connect's wait (sock path), or 0 */
	__u32 tid;
	__u8 mode;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct park_key);
	__type(value, struct park);
} parks SEC(".maps");
