package acceptq

import (
	"testing"

	"github.com/cilium/ebpf"
)

// BenchmarkScan is one sample: the task_file iterator over every fd on the
// host, with no traced process (the cost every interval pays at minimum).
func BenchmarkScan(b *testing.B) {
	targets, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 32, MaxEntries: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer targets.Close()
	parks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 12, ValueSize: 32, MaxEntries: 65536})
	if err != nil {
		b.Fatal(err)
	}
	defer parks.Close()
	o, err := Load(Options{Targets: targets, Parks: parks})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := o.scan(); err != nil {
			b.Fatal(err)
		}
	}
}
