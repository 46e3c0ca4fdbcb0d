package goruntime_test

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// TestSocketSyscallSites: in a program that listens, accepts and dials,
// built by every toolchain the symbol table reader serves, for amd64 and
// arm64 (whose uprobes this machine cannot run), each socket syscall
// wrapper has one call of Syscall/Syscall6, probed on the call itself, and
// one return site right after it, on an instruction the kernel emulates
// that no jump lands on (AfterCalls); so has the netpoller's call of
// epoll_pwait in runtime.netpoll. Before Go 1.19 there is none.
func TestSocketSyscallSites(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.17\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(`package main

import "net"

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go ln.Accept()
	net.Dial("tcp", ln.Addr().String())
}
`), 0o644)
	for _, version := range []string{"local", "go1.27.3", "go1.24.11", "go1.21.13"} {
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(version+"/"+arch, func(t *testing.T) {
				bin := filepath.Join(dir, "tiny-"+version+"-"+arch)
				if err := gotoolchain.BuildFor(arch, dir, version, bin, "-ldflags=-s -w"); err != nil {
					t.Fatalf("building with %s: %v", version, err)
				}
				f, err := elf.Open(bin)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				b, err := goruntime.InspectArch(bin, arch)
				if err != nil {
					t.Fatal(err)
				}
				tab, err := goruntime.OpenTable(f, b)
				if err != nil {
					t.Fatal(err)
				}
				sites, err := goruntime.SocketSyscallSites(f, tab.Func, b.GoVersion)
				if err != nil {
					t.Fatal(err)
				}
				call := map[string]string{"amd64": "CALL", "arm64": "BL"}[arch]
				for _, name := range []string{goruntime.Accept4, goruntime.Connect, goruntime.Getsockopt} {
					s := sites[name]
					if len(s.Calls) != 1 || len(s.Returns) != 1 {
						t.Fatalf("%s: %d calls and %d returns, want one each", name, len(s.Calls), len(s.Returns))
					}
					c, r := s.Calls[0], s.Returns[0]
					t.Logf("%s: call %#x %s, return %#x %s", name, c.Addr, c.Inst, r.Addr, r.Inst)
					if !strings.HasPrefix(strings.ToUpper(c.Inst), call) || r.Addr <= c.Addr || r.Addr > c.Addr+16 {
						t.Errorf("%s: call %#x %q, return %#x %q: want a %s and a site shortly after it", name, c.Addr, c.Inst, r.Addr, r.Inst, call)
					}
				}
				s, err := goruntime.EpollWaitSites(f, tab.Func)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.Calls) != 1 || len(s.Returns) != 1 || !strings.HasPrefix(strings.ToUpper(s.Calls[0].Inst), call) ||
					s.Returns[0].Addr <= s.Calls[0].Addr || s.Returns[0].Addr > s.Calls[0].Addr+16 {
					t.Errorf("epoll_pwait in runtime.netpoll: calls %+v, returns %+v; want one %s and a site shortly after it", s.Calls, s.Returns, call)
				}
			})
		}
	}
	// A program without the net package has none of the wrappers, and
	// no sites: nothing to probe, no error.
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	bin := filepath.Join(dir, "nonet")
	if err := gotoolchain.Build(dir, "local", bin); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := goruntime.Inspect(bin)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := goruntime.OpenTable(f, b)
	if err != nil {
		t.Fatal(err)
	}
	if sites, err := goruntime.SocketSyscallSites(f, tab.Func, b.GoVersion); err != nil || len(sites) != 0 {
		t.Errorf("a program without net: sites %+v, error %v; want none and no error", sites, err)
	}
	if _, err := goruntime.SocketSyscallSites(nil, nil, "go1.18.10"); err == nil {
		t.Error("go1.18: socket syscall sites found, but its Syscall6 takes its arguments on the stack")
	}
}
