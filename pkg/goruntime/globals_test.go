package goruntime

import (
	"debug/elf"
	"go/version"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// TestGlobalsFromCode: for each arch, in plain, stripped and PIE builds of
// a program of this toolchain (and of each of GONETSCOPE_TEST_TOOLCHAINS;
// not the program cmd/gen-offsets reads), every rule of the table finds
// its runtime variable, and allgsFromCode finds runtime.allgs, at the
// address of the variable's symbol; in the stripped builds globalAddrs,
// which applies the rules for gonetscope, finds them all too. Stripping
// moves no code, but the build info records the -ldflags, which moves the
// data after it: a stripped build's symbols are read from a build with
// -ldflags=-w, whose sections are checked to be where the stripped
// build's are.
func TestGlobalsFromCode(t *testing.T) {
	toolchains := []string{"local"}
	if s := os.Getenv("GONETSCOPE_TEST_TOOLCHAINS"); s != "" {
		toolchains = append(toolchains, strings.Split(s, ",")...)
	}
	for _, v := range toolchains {
		lang := version.Lang(runtime.Version())
		if v != "local" {
			lang = version.Lang(v)
		}
		if version.Compare(lang, "go1.20") < 0 {
			t.Errorf("%s: the pclntab is read from go1.20 on", v)
			continue
		}
		for _, goarch := range []string{"amd64", "arm64"} {
			e, ok := offsetsTables[goarch][lang]
			if !ok {
				t.Errorf("%s is not in the %s table", lang, goarch)
				continue
			}
			for _, pie := range []bool{false, true} {
				var mode []string
				suffix := ""
				if pie {
					mode, suffix = []string{"-buildmode=pie"}, "-pie"
				}
				t.Run(v+"/"+goarch+"/plain"+suffix, func(t *testing.T) {
					bin := buildHTTPGetWith(t, v, goarch, "", mode...)
					checkGlobalsFromCode(t, bin, goarch, e, symbolsOf(t, bin))
				})
				t.Run(v+"/"+goarch+"/stripped"+suffix, func(t *testing.T) {
					bin := buildHTTPGetWith(t, v, goarch, "-s -w", mode...)
					ref := buildHTTPGetWith(t, v, goarch, "-w", mode...)
					checkGlobalsFromCode(t, bin, goarch, e, symbolsMoved(t, ref, bin))
				})
			}
		}
	}
}

// buildHTTPGetWith is buildHTTPGet with toolchain v, in a module of its
// own ("local": buildHTTPGet).
func buildHTTPGetWith(t *testing.T, v, goarch, ldflags string, flags ...string) string {
	t.Helper()
	if v == "local" {
		return buildHTTPGet(t, goarch, ldflags, flags...)
	}
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/httpget/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module httpget\n\ngo 1.17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "httpget")
	if err := gotoolchain.BuildFor(goarch, dir, v, bin, append([]string{"-ldflags=" + ldflags}, flags...)...); err != nil {
		t.Fatal(err)
	}
	return bin
}

func checkGlobalsFromCode(t *testing.T, bin, goarch string, e tableEntry, syms map[string]uint64) {
	b, err := InspectArch(bin, goarch)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tab, err := OpenTable(f, b)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range RuntimeGlobals {
		rules := e.Globals[g.Name]
		want, ok := syms[g.Name]
		if !ok {
			if len(rules) > 0 {
				t.Errorf("%s: no symbol, and rules for it", g.Name)
			}
			continue // not in this version
		}
		if len(rules) == 0 && !OptionalGlobals[g.Name] {
			t.Errorf("%s: no rule in the table", g.Name)
		}
		for _, rule := range rules {
			got, err := ApplyGlobalRule(f, tab, rule)
			if err != nil {
				t.Errorf("%s: %v", g.Name, err)
			} else if got != want {
				t.Errorf("%s: the rule %+v finds %#x, the symbol is at %#x", g.Name, rule, got, want)
			}
		}
	}
	if got, err := allgsFromCode(f, tab); err != nil {
		t.Error(err)
	} else if got != syms["runtime.allgs"] {
		t.Errorf("runtime.allgs: %#x from the code of runtime.forEachG, the symbol is at %#x", got, syms["runtime.allgs"])
	}
	if _, err := f.Symbols(); err == nil {
		return // globalAddrs would read the symbols
	}
	addrs, errs := globalAddrs(f, tab, b)
	for _, g := range RuntimeGlobals {
		if err := errs[g.Name]; err != nil && !(OptionalGlobals[g.Name] && len(e.Globals[g.Name]) == 0) {
			t.Errorf("globalAddrs: %v", err)
		} else if err == nil && addrs[g.Name] != syms[g.Name] {
			t.Errorf("globalAddrs: %s at %#x, the symbol is at %#x", g.Name, addrs[g.Name], syms[g.Name])
		}
	}
}

// symbolsOf reads the values of the symbols of the executable bin.
func symbolsOf(t *testing.T, bin string) map[string]uint64 {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	list, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, s := range list {
		out[s.Name] = s.Value
	}
	return out
}

// symbolsMoved reads the symbols of the executable ref and moves each in a
// section of ref to its place in the same section of bin: ref and bin are
// builds of one program that differ in their build info's length (their
// -ldflags), which moves the sections after it whole. The code must not
// have moved; the symbols of a section whose size differs are left out.
func symbolsMoved(t *testing.T, ref, bin string) map[string]uint64 {
	t.Helper()
	sections := func(path string) []*elf.Section {
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return f.Sections
	}
	to := map[string]*elf.Section{}
	for _, s := range sections(bin) {
		to[s.Name] = s
	}
	syms, moved := symbolsOf(t, ref), map[string]uint64{}
	for _, s := range sections(ref) {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 {
			continue
		}
		d := to[s.Name]
		if s.Flags&elf.SHF_EXECINSTR != 0 && (d == nil || d.Addr != s.Addr || d.Size != s.Size) {
			t.Fatalf("%s: the code moved", bin)
		}
		if d == nil || d.Size != s.Size {
			continue // holds the build info: its symbols are left out
		}
		for name, v := range syms {
			if v >= s.Addr && v < s.Addr+s.Size {
				moved[name] = v - s.Addr + d.Addr
			}
		}
	}
	return moved
}
