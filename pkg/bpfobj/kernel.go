package bpfobj

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
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
// the kernel's BTF.
func NewCollection(spec *ebpf.CollectionSpec, opts ebpf.CollectionOptions) (*ebpf.Collection, error) {
	opts.Cache = kernelTypes()
	return ebpf.NewCollectionWithOptions(spec, opts)
}

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
