package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestStacks: with --stacks, the delayed read's netpoll_wait, the dial's
// tcp_connect and the accept's tcp_accept carry the goroutine's stack, and
// the target's own frame in it is at the file and line of the call the
// target reported; below it, the stack reaches runtime.goexit or
// runtime.main as a panic trace does. For a plain build and a stripped PIE
// one.
//
// The plain build runs with each hook mode (GONETSCOPE_TEST_HOOKS): the
// stack of tcp_connect is taken in fentry, kprobe or tracepoint programs.
// The stripped PIE build needs a toolchain, which the VM of `make
// test-kernels` (prebuilt binaries) has not.
func TestStacks(t *testing.T) {
	type stackCase struct {
		name, hooks, toolchain string
		flags                  []string
		iso                    isolation
	}
	var cases []stackCase
	for _, h := range hookModes() {
		cases = append(cases, stackCase{"plain/" + h, h, "", nil, onHost})
	}
	// In a container: the symbol table through /proc/PID/exe and
	// /proc/PID/mem of a process whose own PID is 1.
	cases = append(cases, stackCase{"container", hookModes()[0], "", nil, container})
	if os.Getenv("GONETSCOPE_NETTARGET") == "" {
		pie := []string{"-ldflags=-s -w", "-buildmode=pie"}
		cases = append(cases,
			stackCase{"stripped-pie", "tracepoint", "local", pie, onHost},
			// Before Go 1.26 a PIE binary's pclntab section has another name.
			stackCase{"go1.24-stripped-pie", "tracepoint", "go1.24.11", pie, onHost})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bin := nettargetBin
			if tc.toolchain != "" {
				bin = buildNettarget(t, tc.toolchain, tc.flags...)
			}
			r := traceRunOpts(t, []string{bin}, []string{"-rounds", "2", "-delay", testDelay(t).String()}, []string{"--stacks", "--hooks", tc.hooks, "--connections", "all"}, traceOpts{target: tc.iso})
			if a := r.of("attached"); len(a) != 1 || len(featureLimits(a[0].Limits)) != 0 {
				t.Fatalf("attached: %+v", a)
			}
			check := func(what string, e ev, fn, at string, inner string) {
				t.Helper()
				if len(e.Stack) == 0 {
					t.Errorf("%s: no stack: %+v", what, e)
					return
				}
				var lines []string
				for _, f := range e.Stack {
					lines = append(lines, fmt.Sprintf("%s %s:%d inlined=%v %s", f.Func, f.File, f.Line, f.Inlined, f.PC))
				}
				dump := strings.Join(lines, "\n")
				if what == "netpoll_wait" {
					t.Logf("%s stack:\n%s", what, dump)
				}
				i := slices.IndexFunc(e.Stack, func(f frame) bool { return f.Func == fn })
				if i < 0 || fmt.Sprintf("%s:%d", e.Stack[i].File, e.Stack[i].Line) != at {
					t.Errorf("%s: want frame %s at %s:\n%s", what, fn, at, dump)
				}
				if !slices.ContainsFunc(e.Stack[:max(i, 0)], func(f frame) bool { return f.Func == inner }) {
					t.Errorf("%s: want %s inside %s:\n%s", what, inner, fn, dump)
				}
				if last := e.Stack[len(e.Stack)-1].Func; last != "runtime.goexit" && last != "runtime.main" {
					t.Errorf("%s: stack ends in %q, not at the goroutine's start:\n%s", what, last, dump)
				}
				for _, f := range e.Stack {
					if f.Func == "" || f.Line <= 0 {
						t.Errorf("%s: unsymbolized frame %+v:\n%s", what, f, dump)
					}
				}
			}
			for _, f := range r.factsOf("read") {
				i := slices.IndexFunc(r.events, func(e ev) bool { return e.Event == "netpoll_wait" && e.FD == f.FD && e.Mode == "read" })
				if i < 0 {
					t.Fatalf("no netpoll_wait for the read on fd %d", f.FD)
				}
				check("netpoll_wait", r.events[i], "main.round", f.At, "internal/poll.(*FD).Read")
			}
			for _, f := range r.factsOf("dial") {
				i := slices.IndexFunc(r.events, func(e ev) bool { return e.Event == "tcp_connect" && e.LPort == f.LPort })
				if i < 0 {
					t.Fatalf("no tcp_connect for the dial from port %d", f.LPort)
				}
				check("tcp_connect", r.events[i], "main.round", f.At, "net.(*sysDialer).dialSingle")
			}
			for _, f := range r.factsOf("accept") {
				i := slices.IndexFunc(r.events, func(e ev) bool { return e.Event == "tcp_accept" && e.RPort == f.RPort })
				if i < 0 {
					t.Fatalf("no tcp_accept for the connection from port %d", f.RPort)
				}
				check("tcp_accept", r.events[i], "main.round.func1", f.At, "net.(*TCPListener).Accept")
			}
		})
	}
}
