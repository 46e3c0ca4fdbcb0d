package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// BenchmarkUntracedSyscalls: what a process nobody traces pays while
// gonetscope traces another one (a lingering nettarget, with the default
// hooks, then with --hooks tracepoint, the syscall path): getppid and a
// 1-byte read of /dev/zero in this process, with no gonetscope running and
// then with one tracing the other process each way, in turn each
// iteration (200,000 calls each). Where a syscall tracepoint is attached,
// every thread on the host takes the slow syscall entry; where the sock
// path (socket tracepoints or fentry) and fentry on the socket calls
// serve, nothing should change.
func BenchmarkUntracedSyscalls(b *testing.B) {
	zero, err := os.Open("/dev/zero")
	if err != nil {
		b.Fatal(err)
	}
	defer zero.Close()
	fd, buf := int(zero.Fd()), make([]byte, 1)
	calls := []struct {
		name string
		call func()
	}{
		{"getppid", func() { syscall.Getppid() }},
		{"read", func() { syscall.Read(fd, buf) }},
	}
	perCall := func(call func()) float64 {
		const n = 200000
		start := time.Now()
		for range n {
			call()
		}
		return float64(time.Since(start).Nanoseconds()) / n
	}
	modes := []string{"untraced", "other-traced", "other-traced-syscall-path"}
	sums := make([][]float64, len(modes))
	for i := range sums {
		sums[i] = make([]float64, len(calls))
	}
	b.ResetTimer()
	for range b.N {
		for m, mode := range modes {
			stop := func() {}
			switch mode {
			case "other-traced":
				stop = traceAnother(b)
			case "other-traced-syscall-path":
				stop = traceAnother(b, "--hooks", "tracepoint")
			}
			for c, call := range calls {
				sums[m][c] += perCall(call.call)
			}
			stop()
		}
	}
	for m, mode := range modes {
		for c, call := range calls {
			b.ReportMetric(sums[m][c]/float64(b.N), "ns/"+call.name+"-"+mode)
		}
	}
}

// traceAnother starts a lingering nettarget and a gonetscope tracing it
// with its defaults and args, waits for gonetscope to be ready, and
// returns what stops both.
func traceAnother(b *testing.B, args ...string) (stop func()) {
	b.Helper()
	target := exec.Command(nettargetBin, "-rounds", "0", "-linger", "10m")
	if err := target.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { target.Process.Kill(); target.Wait() }) // if the tracer never gets ready
	stopTracer := benchTracer(b, target.Process.Pid, args...)
	return func() {
		stopTracer()
		target.Process.Kill()
		target.Wait()
	}
}
