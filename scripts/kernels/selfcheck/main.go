// Command selfcheck checks, inside the VM that scripts/kernels/run.sh boots,
// that the kernel and the mounts are what the eBPF integration tests need:
// BTF, kprobes, tracefs, bpffs, and that fentry, fexit, LSM, kprobe,
// tracepoint and uprobe programs load, attach and fire. It exits with -exit
// when every check passes and 1 otherwise, so run.sh's status propagation can
// be checked too.
//
// Build it static: CGO_ENABLED=0 go build ./scripts/kernels/selfcheck
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func main() {
	exitCode := flag.Int("exit", 0, "exit status when every check passes")
	withBPF := flag.Bool("bpf", true, "also load and attach eBPF programs")
	flag.Parse()

	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		fmt.Println("FAIL osrelease:", err)
		os.Exit(1)
	}
	fmt.Println("selfcheck: kernel", strings.TrimSpace(string(release)))

	failed := 0
	check := func(name string, err error) {
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", name, err)
			return
		}
		fmt.Printf("ok   %s\n", name)
	}
	for _, f := range []string{"/sys/kernel/btf/vmlinux", "/sys/kernel/tracing/kprobe_events"} {
		_, err := os.Stat(f)
		check("exists "+f, err)
	}
	mounts := readMounts()
	for dir, fstype := range map[string]string{
		"/sys/kernel/tracing": "tracefs", "/sys/kernel/debug": "debugfs",
		"/sys/fs/bpf": "bpf", "/sys/fs/cgroup": "cgroup2", "/tmp": "tmpfs",
	} {
		var err error
		if got := mounts[dir]; got != fstype {
			err = fmt.Errorf("mounted as %q, want %q", got, fstype)
		}
		check("mount "+dir+" "+fstype, err)
	}
	if *withBPF {
		check("fentry tcp_connect", fentryTCPConnect())
		check("fexit tcp_connect", tracingTCPConnect(ebpf.AttachTraceFExit))
		check("lsm socket_connect", lsmSocketConnect())
		check("kprobe tcp_connect", kprobeTCPConnect())
		check("tracepoint syscalls:sys_enter_getppid", tracepointGetppid())
		check("uprobe main.uprobeTarget", uprobeSelf())
	}
	if failed > 0 {
		fmt.Printf("selfcheck: %d checks failed\n", failed)
		os.Exit(1)
	}
	fmt.Printf("selfcheck: all checks passed, exiting %d\n", *exitCode)
	os.Exit(*exitCode)
}

// readMounts maps mount points to filesystem types from /proc/mounts.
func readMounts() map[string]string {
	m := map[string]string{}
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return m
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) >= 3 {
			m[fields[1]] = fields[2]
		}
	}
	return m
}

// counter is an eBPF program that adds 1 to slot 0 of a one-element array
// each time it runs; written in asm so the check needs no clang.
type counter struct {
	m *ebpf.Map
	p *ebpf.Program
}

func newCounter(spec ebpf.ProgramSpec) (*counter, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("map: %w", err)
	}
	spec.License = "GPL"
	spec.Instructions = asm.Instructions{
		asm.StoreImm(asm.RFP, -4, 0, asm.Word), // key = 0
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
	p, err := ebpf.NewProgram(&spec)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load: %w", err)
	}
	return &counter{m, p}, nil
}

func (c *counter) Close() { c.p.Close(); c.m.Close() }

// expect checks that the counter reached at least n.
func (c *counter) expect(n uint64) error {
	var got uint64
	if err := c.m.Lookup(uint32(0), &got); err != nil {
		return err
	}
	if got < n {
		return fmt.Errorf("fired %d times, want >= %d", got, n)
	}
	return nil
}

// dialLoopback makes n TCP connections to a loopback listener.
func dialLoopback(n int) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// fires loads a counter program from spec, attaches it with attach, runs
// trigger, and checks that the program ran at least n times.
func fires(spec ebpf.ProgramSpec, attach func(*ebpf.Program) (link.Link, error), trigger func() error, n uint64) error {
	c, err := newCounter(spec)
	if err != nil {
		return err
	}
	defer c.Close()
	l, err := attach(c.p)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer l.Close()
	if err := trigger(); err != nil {
		return err
	}
	return c.expect(n)
}

func dial3() error { return dialLoopback(3) }

func fentryTCPConnect() error { return tracingTCPConnect(ebpf.AttachTraceFEntry) }

// tracingTCPConnect attaches an fentry or fexit program to tcp_connect.
func tracingTCPConnect(at ebpf.AttachType) error {
	return fires(ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: at, AttachTo: "tcp_connect"},
		func(p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p, AttachType: at})
		}, dial3, 3)
}

// lsmSocketConnect attaches a BPF LSM program (it returns 0: allow) to the
// socket_connect hook.
func lsmSocketConnect() error {
	return fires(ebpf.ProgramSpec{Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "socket_connect"},
		func(p *ebpf.Program) (link.Link, error) { return link.AttachLSM(link.LSMOptions{Program: p}) },
		dial3, 3)
}

func kprobeTCPConnect() error {
	return fires(ebpf.ProgramSpec{Type: ebpf.Kprobe},
		func(p *ebpf.Program) (link.Link, error) { return link.Kprobe("tcp_connect", p, nil) },
		dial3, 3)
}

func tracepointGetppid() error {
	return fires(ebpf.ProgramSpec{Type: ebpf.TracePoint},
		func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint("syscalls", "sys_enter_getppid", p, nil)
		},
		func() error {
			for i := 0; i < 5; i++ {
				syscall.Getppid()
			}
			return nil
		}, 5)
}

//go:noinline
func uprobeTarget(i int) int { return i * 2 }

func uprobeSelf() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ex, err := link.OpenExecutable(self)
	if err != nil {
		return err
	}
	return fires(ebpf.ProgramSpec{Type: ebpf.Kprobe},
		func(p *ebpf.Program) (link.Link, error) { return ex.Uprobe("main.uprobeTarget", p, nil) },
		func() error {
			for i := 0; i < 5; i++ {
				uprobeTarget(i)
			}
			return nil
		}, 5)
}
