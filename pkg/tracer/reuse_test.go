package tracer

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// TestPIDReuse: a new process that gets a traced PID before the tracer
// notices the old one is gone gets no events: the kernel filter matches
// PID and start time. Liveness polling is turned off, so only the BPF
// side can keep the impostor's events out.
func TestPIDReuse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test loads BPF programs: run it as root")
	}
	bin := filepath.Join(t.TempDir(), "nettarget")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/gonetscope/gonetscope/cmd/gonetscope/internal/targets/nettarget").CombinedOutput(); err != nil {
		t.Fatalf("building nettarget: %v\n%s", err, out)
	}
	// The dead first process stays attached (no poll, no pidfd): only the
	// kernel's start-time check keeps the second one out.
	tr, err := New(Options{MinWait: 0, PollInterval: time.Hour, noExitWatch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	first := exec.Command(bin, "-rounds", "0", "-linger", "60s")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	pid := first.Process.Pid
	if _, err := tr.Attach(pid); err != nil {
		t.Fatal(err)
	}
	first.Process.Kill()
	first.Wait()

	sink := &memSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx, sink, RunOptions{}) }()

	// Hand the same PID to a new process, which dials, accepts and reads
	// at once: the kernel gives out ns_last_pid+1 next.
	var second *exec.Cmd
	for try := 0; try < 20; try++ {
		os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0)
		second = exec.Command(bin, "-rounds", "3", "-delay", "10ms")
		if err := second.Start(); err != nil {
			t.Fatal(err)
		}
		if second.Process.Pid == pid {
			break
		}
		second.Process.Kill()
		second.Wait()
	}
	if second.Process.Pid != pid {
		t.Fatalf("could not get PID %d reused (got %d)", pid, second.Process.Pid)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("the second process: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	for _, ev := range sink.events() {
		h := ev.Head()
		if h.PID != uint32(pid) || h.Event == "attached" || h.Event == "detached" {
			continue
		}
		// The first process's last summary, written before its detached
		// event, is its own: it did no network I/O, so it counts none.
		if s, ok := ev.(*event.Summary); ok && len(s.Waits) == 0 && len(s.Written) == 0 {
			continue
		}
		t.Errorf("event for the process that reused PID %d: %s %+v", pid, h.Event, ev)
	}
}

type memSink struct {
	mu  sync.Mutex
	evs []event.Event
}

func (m *memSink) Write(ev event.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, ev)
	return nil
}

func (m *memSink) Flush() error { return nil }

func (m *memSink) events() []event.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.evs
}
