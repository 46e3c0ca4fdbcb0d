/* In-kernel aggregation for the Prometheus endpoint (pkg/metrics): log2
 * histograms of durations and plain counters, keyed by bounded labels only
 * (pid, metric, mode, listener port, result), never by connection or
 * goroutine. Updated for every wait, before any --min-wait filter, so the
 * histograms see what the event stream drops. Each object including this
 * header gets its own `hists` map; user space reads them all at scrape time.
 */
#pragma once

/* Bucket i counts values v (ns) with 2^i <= v < 2^(i+1); bucket 0 also
 * holds 0 and 1. 40 buckets reach 2^40 ns, about 18 minutes. */
#define HIST_BUCKETS 40

enum hist_metric {
	HIST_NETPOLL_WAIT = 1,        /* parked -> running again; mode */
	HIST_NETPOLL_IO_WAIT = 2,     /* parked -> ready; mode */
	HIST_NETPOLL_SCHED_DELAY = 3, /* ready -> running; mode */
	HIST_EPOLL_BLOCK = 4,         /* the netpoller's epoll_pwait */
	HIST_CONNECT_HANDSHAKE = 5,   /* SYN -> outcome; result = errno or 0 */
	HIST_ACCEPT_QUEUE_WAIT = 6,   /* established -> accepted; port */
	COUNT_CONNECT = 7,            /* connects, result = errno or 0 */
	COUNT_ACCEPT = 8,             /* accepts, port */
	COUNT_ACCEPT_ERROR = 9,       /* failed accepts, port, result = errno */
};

struct hist_key {
	__u32 pid;
	__s32 result; /* errno, or 0 */
	__u16 port;   /* listener port (host order), or 0 */
	__u8 metric;  /* enum hist_metric */
	__u8 mode;    /* enum mode of netpoll.bpf.c, or 0 */
};

struct hist {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[HIST_BUCKETS];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct hist_key);
	__type(value, struct hist);
} hists SEC(".maps");

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0, s;
	s = (v > 0xFFFFFFFFULL) << 5; v >>= s; r |= s;
	s = (v > 0xFFFF) << 4; v >>= s; r |= s;
	s = (v > 0xFF) << 3; v >>= s; r |= s;
	s = (v > 0xF) << 2; v >>= s; r |= s;
	s = (v > 0x3) << 1; v >>= s; r |= s;
	r |= (v >> 1);
	return r;
}

/* A new histogram's first value: in .rodata rather than on the stack,
 * where its 336 bytes would leave the programs little of their 512. */
static const struct hist hist_zero;

/* Adds value ns to histogram h. */
static __always_inline void hist_bump(struct hist *h, __u64 ns)
{
	/* Opaque to clang: an atomic add of what it knows to be 0 becomes an
	 * atomic OR, which kernels before 5.12 refuse ("BPF_STX uses reserved
	 * fields"). */
	asm volatile("" : "+r"(ns));
	__u64 b = log2_u64(ns);
	/* Clamp in the register used as the index, so that older verifiers
	 * (6.1) see the bound: a plain if/else let clang compare a copy and
	 * the load was refused as unbounded. */
	asm volatile("if %0 <= %[max] goto +1\n\t"
		     "%0 = %[max]"
		     : "+r"(b)
		     : [max] "i"(HIST_BUCKETS - 1));
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	__sync_fetch_and_add(&h->buckets[b], 1);
}

/* Adds one value to the histogram (or counter) of key. */
static __always_inline void hist_add(struct hist_key *key, __u64 ns)
{
	struct hist *h = bpf_map_lookup_elem(&hists, key);
	if (!h) {
		bpf_map_update_elem(&hists, key, &hist_zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, key);
		if (!h)
			return;
	}
	hist_bump(h, ns);
}

static __always_inline void hist_record(__u32 pid, enum hist_metric metric, __u8 mode,
					__u16 port, __s32 result, __u64 ns)
{
	struct hist_key key = {
		.pid = pid,
		.result = result,
		.port = port,
		.metric = metric,
		.mode = mode,
	};
	hist_add(&key, ns);
}

const enum hist_metric *unused_hist_metric __attribute__((unused));
