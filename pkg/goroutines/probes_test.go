package goroutines

import (
	"debug/elf"
	"os"
	"path/filepath"
	"testing"

	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// TestProbesPerArch: the two probe points are found exactly once in a
// program built for each architecture gonetscope runs on, on a call
// instruction the kernel emulates (CALL on amd64, BL on arm64).
func TestProbesPerArch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.17\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { done := make(chan bool); go func() { done <- true }(); <-done }\n"), 0o644)
	for arch, want := range map[string][2]string{"amd64": {"CALL", "bx"}, "arm64": {"BL", "r1"}} {
		bin := filepath.Join(dir, "tiny-"+arch)
		if err := gotoolchain.BuildFor(arch, dir, "local", bin); err != nil {
			t.Fatal(err)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		b, err := goruntime.InspectArch(bin, arch)
		if err != nil {
			t.Fatal(err)
		}
		tab, err := symtab.Open(f, nil, symtab.FileMemory(f), 0, symtab.Layout{MdText: b.Offsets.MdText, MdGofunc: b.Offsets.MdGofunc})
		if err != nil {
			t.Fatal(err)
		}
		create, exit, err := Probes(f, tab)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		t.Logf("%s: create %+v, exit %+v", arch, create, exit)
		if len(create.Inst) < len(want[0]) || create.Inst[:len(want[0])] != want[0] || create.GReg != want[1] || exit.Inst[:len(want[0])] != want[0] {
			t.Errorf("%s: probes %+v and %+v, want %s instructions with the new g in %s", arch, create, exit, want[0], want[1])
		}
	}
}
