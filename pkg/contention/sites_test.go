package contention

import (
	"debug/elf"
	"os"
	"path/filepath"
	"testing"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// TestSites: every blocking call of the runtime is found, with a block
// probe on a call and its unblock probe on an instruction after it, and
// runtime.ready's entry branch, in a
// program built with each Go version the tests have, for amd64 and arm64.
func TestSites(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.17\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(`package main

import "sync"

func main() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	ch := make(chan bool)
	wg.Add(1)
	go func() { mu.Lock(); mu.Unlock(); ch <- true; wg.Done() }()
	done := make(chan bool)
	select {
	case <-ch:
	case <-done:
	}
	mu.Lock()
	wg.Wait()
}
`), 0o644)
	// (The symbol table reader serves Go 1.20 and later.)
	for _, version := range []string{"local", "go1.27.3", "go1.24.11", "go1.22.12", "go1.21.13"} {
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
				tab, err := symtab.Open(f, nil, symtab.FileMemory(f), 0, symtab.Layout{MdText: b.Offsets.MdText, MdGofunc: b.Offsets.MdGofunc})
				if err != nil {
					t.Fatal(err)
				}
				probes, skipped, err := Sites(f, tab.Func)
				if err != nil {
					t.Fatal(err)
				}
				if len(skipped) > 0 {
					t.Errorf("skipped %v", skipped)
				}
				blocks, readies := 0, 0
				for i, p := range probes {
					t.Logf("%s %#x %s", p.Prog, p.Addr, p.Inst)
					if p.Prog == contentionProgReady {
						readies++
						continue
					}
					if p.Prog == contentionProgUnblock {
						if i == 0 || probes[i-1].Prog == contentionProgUnblock || p.Addr <= probes[i-1].Addr {
							t.Errorf("unblock probe %+v does not follow a block probe", p)
						}
						continue
					}
					blocks++
					if want := map[string]string{"amd64": "CALL ", "arm64": "BL "}[arch]; len(p.Inst) < len(want) || p.Inst[:len(want)] != want {
						t.Errorf("block probe %+v: want a %q", p, want)
					}
				}
				if readies != 1 {
					t.Errorf("%d probes on runtime.ready, want 1", readies)
				}
				if blocks < len(blockingCalls) { // chanrecv and chansend have two parks each
					t.Errorf("%d block probes, want at least one in each of %v", blocks, blockingCalls)
				}
			})
		}
	}
}
