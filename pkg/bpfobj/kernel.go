package bpfobj

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// The kernel's BTF, parsed once for all the objects gonetscope loads at
// start-up. cilium/ebpf parses it anew for every collection unless it is
// given a cache, and each parse of a distribution kernel's BTF costs about
// 0.35 s of CPU here (BenchmarkLoad's profile: over half of the start-up).
// The parse is large, so ReleaseKernelTypes drops it once loading is done;
// a later load parses it again.
var (
	kernelMu    sync.Mutex
	kernelCache *btf.Cache
)

func kernelTypes() *btf.Cache {
	kernelMu.Lock()
	defer kernelMu.Unlock()
	if kernelCache == nil {
		kernelCache = btf.NewCache()
	}
	return kernelCache
}

// NewCollection is ebpf.NewCollectionWithOptions with the shared parse of
// the kernel's BTF, and with spec's large hash maps allocated as they fill
// where the kernel allows it (allocateOnUse).
func NewCollection(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) (*ebpf.Collection, error) {
	prepare(spec, &opts)
	return ebpf.NewCollectionWithOptions(spec, opts)
}

// LoadAndAssign is spec.LoadAndAssign as NewCollection loads: what it
// assigns to obj alone.
func LoadAndAssign(spec *ebpf.CollectionSpec, obj any, opts ebpf.CollectionOptions) error {
	prepare(spec, &opts)
	return spec.LoadAndAssign(obj, &opts)
}

// prepare gives opts the shared parse of the kernel's BTF and spec's
// large hash maps allocation on use where the kernel allows it.
func prepare(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions) {
	opts.Cache = kernelTypes()
	if HashAllocatesOnUse() {
		allocateOnUse(spec, opts.MapReplacements)
	}
}

// allocateOnUse sets BPF_F_NO_PREALLOC on each hash map of spec with
// 1024 entries or more, unless a perf_event program is among spec's (the
// kernel refuses them any map that allocates); and gives each map that
// opts replace the flags of its replacement (one object's map shared with
// another). A preallocated hash takes kernel memory for all its entries
// when it is created: 21 of the 62 MB that a trace of one target held
// (its tables are sized for many connections and goroutines; a target
// uses a few), and time at start-up.
func allocateOnUse(spec *ebpf.CollectionSpec, replacements map[string]*ebpf.Map) {
	perf := false
	for _, p := range spec.Programs {
		perf = perf || p.Type == ebpf.PerfEvent
	}
	for name, m := range spec.Maps {
		if r, ok := replacements[name]; ok {
			m.Flags = r.Flags()
		} else if m.Type == ebpf.Hash && m.MaxEntries >= 1024 && !perf {
			m.Flags |= unix.BPF_F_NO_PREALLOC
		}
	}
}

// HashAllocatesOnUse says whether the kernel's hash maps allocate their
// elements from the BPF memory allocator (struct bpf_htab has a
// bpf_mem_alloc, Linux 6.1): a tracing program may then use one that is
// not preallocated, at the cost per update of one that is. Before, the
// verifier lets it but warns that it is unsafe (a kernel WARN in the
// host's log), so the maps stay preallocated there.
func HashAllocatesOnUse() bool {
	hashAllocOnce.Do(func() {
		k, err := KernelSpec()
		if err != nil {
			return
		}
		var htab *btf.Struct
		if k.TypeByName("bpf_htab", &htab) != nil {
			return
		}
		for _, m := range htab.Members {
			if st, ok := btf.UnderlyingType(m.Type).(*btf.Struct); ok && st.Name == "bpf_mem_alloc" {
				hashAllocates = true
			}
		}
	})
	return hashAllocates
}

var (
	hashAllocOnce sync.Once
	hashAllocates bool
)

// KernelSpec is the kernel's BTF, from the shared parse. Read it only.
func KernelSpec() (*btf.Spec, error) {
	return kernelTypes().Kernel()
}

// ReleaseKernelTypes drops the shared parse of the kernel's BTF: call it
// when the objects are loaded.
func ReleaseKernelTypes() {
	kernelMu.Lock()
	defer kernelMu.Unlock()
	kernelCache = nil
}
