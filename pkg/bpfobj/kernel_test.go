package bpfobj

import (
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// HashAllocatesOnUse says yes exactly on the kernels whose hash maps
// allocate from bpf_mem_alloc: Linux 6.1 and later (uname).
func TestHashAllocatesOnUse(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	want := major > 6 || major == 6 && minor >= 1
	if got := HashAllocatesOnUse(); got != want {
		t.Errorf("Linux %s: HashAllocatesOnUse %v, want %v", unix.ByteSliceToString(u.Release[:]), got, want)
	}
}

// NewCollection creates the large hash maps of a spec unpreallocated
// where the kernel allows it, the small ones and LRU hashes as the spec
// says, a replaced map's spec as its replacement; and leaves every map
// of a spec with a perf_event program preallocated. Checked on the maps
// the kernel made.
func TestAllocateOnUse(t *testing.T) {
	hash := func(n uint32) *ebpf.MapSpec {
		return &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: n}
	}
	shared, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 4096, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	spec := func(progType ebpf.ProgramType) *ebpf.CollectionSpec {
		s := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{
			"large": hash(4096), "small": hash(64),
			"lru":    {Type: ebpf.LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 4096},
			"shared": hash(4096),
		}}
		if progType != ebpf.UnspecifiedProgram {
			s.Programs = map[string]*ebpf.ProgramSpec{"p": {Type: progType, License: "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}}}
		}
		return s
	}
	noPrealloc := func(m *ebpf.Map) bool { return m.Flags()&unix.BPF_F_NO_PREALLOC != 0 }
	for _, tc := range []struct {
		name     string
		progType ebpf.ProgramType
		large    bool
	}{{"maps only", ebpf.UnspecifiedProgram, HashAllocatesOnUse()}, {"with a perf_event program", ebpf.PerfEvent, false}} {
		coll, err := NewCollection(spec(tc.progType), ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{"shared": shared}})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		m := coll.Maps
		if noPrealloc(m["large"]) != tc.large || noPrealloc(m["small"]) || noPrealloc(m["lru"]) || !noPrealloc(m["shared"]) {
			t.Errorf("%s: unpreallocated: large %v (want %v), small %v, lru %v (want false), shared %v (want true)", tc.name,
				noPrealloc(m["large"]), tc.large, noPrealloc(m["small"]), noPrealloc(m["lru"]), noPrealloc(m["shared"]))
		}
		coll.Close()
	}
}
