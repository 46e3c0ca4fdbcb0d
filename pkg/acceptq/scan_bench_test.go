package acceptq

import (
	"testing"

	"github.com/cilium/ebpf"
)

// BenchmarkScan is one sample: the task_file iterator over every fd on the
// host, with no traced process (the cost every interval pays at minimum).
func BenchmarkScan(b *testing.B) {
	spec, err := loadAcceptq()
	if err != nil {
		b.Fatal(err)
	}
	// The maps netpoll shares, as this object declares them.
	shared := map[string]*ebpf.Map{}
	for _, name := range []string{acceptqMapTargets, acceptqMapParks, acceptqMapSavedCalls} {
		m, err := ebpf.NewMap(spec.Maps[name])
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		shared[name] = m
	}
	o, err := Load(Options{Targets: shared[acceptqMapTargets], Parks: shared[acceptqMapParks], CallArgs: shared[acceptqMapSavedCalls]})
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
