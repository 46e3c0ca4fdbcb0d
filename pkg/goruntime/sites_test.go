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

// TestNetpollSitesPerArch: in a network program built for each
// architecture gonetscope runs on, the netpoll sites are found once each,
// on instructions the kernel emulates: the call of netpollblock, and a
// conditional branch right after it returns.
func TestNetpollSitesPerArch(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.17\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"net\"\n\nfunc main() { l, _ := net.Listen(\"tcp\", \"127.0.0.1:0\"); l.Accept() }\n"), 0o644)
	for arch, want := range map[string]struct{ call, branches string }{
		"amd64": {"CALL", "J"},
		"arm64": {"BL", "TBNZ TBZ CBNZ CBZ B."},
	} {
		bin := filepath.Join(dir, "tiny-"+arch)
		if err := gotoolchain.BuildFor(arch, dir, "local", bin); err != nil {
			t.Fatal(err)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		s, err := goruntime.FindNetpollSites(f, goruntime.ELFFuncs(f))
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		t.Logf("%s: %+v", arch, s)
		isBranch := false
		for _, b := range strings.Fields(want.branches) {
			isBranch = isBranch || strings.HasPrefix(s.Resume.Inst, b) && !strings.HasPrefix(s.Resume.Inst, "JMP")
		}
		if !strings.HasPrefix(s.Park.Inst, want.call) || !isBranch ||
			s.Resume.Addr <= s.Park.Addr || s.Resume.Addr > s.Park.Addr+16 {
			t.Errorf("%s: sites %+v: want %s at the park, a conditional branch just after the park", arch, s, want.call)
		}
	}
}

// TestRegisterArgs: the probes read arguments from registers, which Go
// passes there from 1.17 on amd64 and from 1.18 on arm64.
func TestRegisterArgs(t *testing.T) {
	for _, c := range []struct {
		arch, version string
		want          bool
	}{
		{"amd64", "go1.17.13", true}, {"amd64", "go1.16.15", false},
		{"arm64", "go1.17.13", false}, {"arm64", "go1.18", true}, {"arm64", "go1.26.8", true},
	} {
		b := goruntime.Binary{Arch: c.arch, GoVersion: c.version}
		if got := b.RegisterArgs(); got != c.want {
			t.Errorf("%s %s: RegisterArgs %v, want %v", c.arch, c.version, got, c.want)
		}
	}
}
