package goruntime

import (
	"crypto/rand"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"go/version"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// memberOffsets reads the byte offset of every member of the named structs
// from path's DWARF: key "struct.member".
func memberOffsets(t *testing.T, path string, structs ...string) map[string]int64 {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		t.Fatal(err)
	}
	offs := map[string]int64{}
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e == nil {
			return offs
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if e.Tag != dwarf.TagStructType || !e.Children || !slices.Contains(structs, name) {
			continue
		}
		// The members follow, up to the null entry that ends the children.
		for {
			m, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if m == nil || m.Tag == 0 {
				break
			}
			if off, ok := m.Val(dwarf.AttrDataMemberLoc).(int64); ok && m.Tag == dwarf.TagMember {
				offs[name+"."+m.Val(dwarf.AttrName).(string)] = off
			}
		}
	}
}

// buildTiny builds a minimal Go program with ldflags into a temporary
// directory. The test binary itself will not do: `go test` links it without
// DWARF.
func buildTiny(t *testing.T, ldflags string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(OffsetsProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tiny")
	cmd := exec.Command("go", "build", "-ldflags="+ldflags, "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestInspect(t *testing.T) {
	bin := buildTiny(t, "")
	b, err := Inspect(bin)
	if err != nil {
		t.Fatal(err)
	}
	// Built by the toolchain that built this test.
	if b.Path != bin || b.GoVersion != runtime.Version() || b.Arch != runtime.GOARCH || b.OffsetsFrom != "dwarf" {
		t.Errorf("Path, GoVersion, Arch, OffsetsFrom = %q, %q, %q, %q, want %q, %q, %q, dwarf",
			b.Path, b.GoVersion, b.Arch, b.OffsetsFrom, bin, runtime.Version(), runtime.GOARCH)
	}
	if b.PollTag != (PollTag{Shr: 24, Shl: 9}) {
		t.Errorf("PollTag = %+v, want {24 9} for %s", b.PollTag, b.GoVersion)
	}

	offs := memberOffsets(t, bin, "runtime.g", "runtime.m", "runtime.pollDesc")
	for _, f := range []struct {
		name string
		got  uint16
	}{
		{"runtime.g.goid", b.Offsets.GGoid},
		{"runtime.g.m", b.Offsets.GM},
		{"runtime.m.procid", b.Offsets.MProcid},
		{"runtime.pollDesc.fd", b.Offsets.PdFd},
		{"runtime.pollDesc.fdseq", b.Offsets.PdFdseq},
	} {
		want, ok := offs[f.name]
		if !ok {
			t.Errorf("%s not in the binary's DWARF", f.name)
		} else if int64(f.got) != want {
			t.Errorf("%s at %d, DWARF says %d", f.name, f.got, want)
		}
	}
}

func TestInspectNotGo(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random")
	junk := make([]byte, 4096)
	rand.Read(junk)
	junk[0] = 0 // never "\x7fELF"
	if err := os.WriteFile(random, junk, 0o755); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	// /bin/sh is a C program: ELF without Go build info.
	for _, path := range []string{"/bin/sh", random, script, empty} {
		if b, err := Inspect(path); !errors.Is(err, ErrNotGo) {
			t.Errorf("Inspect(%s) = %+v, %v, want ErrNotGo", path, b, err)
		}
	}
	if _, err := Inspect(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrNotGo) {
		t.Errorf("Inspect(missing file) error %v, want ErrNotExist", err)
	}
}

// A binary built without DWARF gets the offsets of its Go version from the
// table, and they are the ones its DWARF build has.
func TestInspectNoDWARF(t *testing.T) {
	for _, ldflags := range []string{"-w", "-s -w"} {
		b, err := Inspect(buildTiny(t, ldflags))
		if err != nil {
			t.Fatalf("-ldflags=%q: %v", ldflags, err)
		}
		withDWARF, err := Inspect(buildTiny(t, ""))
		if err != nil {
			t.Fatal(err)
		}
		if b.OffsetsFrom != "table" || b.Offsets != withDWARF.Offsets || len(b.Limits) != 0 {
			t.Errorf("-ldflags=%q: offsets %+v from %s (limits %q), the DWARF build has %+v", ldflags, b.Offsets, b.OffsetsFrom, b.Limits, withDWARF.Offsets)
		}
	}
}

// The committed table holds, for this toolchain's minor version, what its
// DWARF says: a stale table fails here.
func TestTableMatchesDWARF(t *testing.T) {
	o, err := OffsetsFromDWARF(buildTiny(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	e, ok := offsetsTable[version.Lang(runtime.Version())]
	if !ok {
		t.Fatalf("%s is not in the offsets table: run 'go run ./cmd/gen-offsets'", runtime.Version())
	}
	if e.Offsets != o {
		t.Errorf("table for %s: %+v, DWARF of a %s build: %+v", version.Lang(runtime.Version()), e.Offsets, runtime.Version(), o)
	}
	if !slices.ContainsFunc(e.From, func(v string) bool { return version.Lang(v) == version.Lang(runtime.Version()) }) {
		t.Errorf("table entry made from %v", e.From)
	}
}

// A version the table does not know, without DWARF, fails closed: no
// offsets at all, and a limit that says why and what to do.
func TestUnknownVersionFailsClosed(t *testing.T) {
	for _, v := range []string{"go1.99.1", "go1.16.15"} {
		b := &Binary{GoVersion: v}
		if err := b.resolve(nil); err != nil {
			t.Fatal(err)
		}
		if b.Offsets != (Offsets{}) || b.OffsetsFrom != "none" || len(b.Limits) == 0 ||
			!strings.Contains(strings.Join(b.Limits, " "), "gen-offsets") {
			t.Errorf("%s without DWARF: offsets %+v from %q, limits %q; want none, and a limit naming gen-offsets", v, b.Offsets, b.OffsetsFrom, b.Limits)
		}
	}
	// Known offsets but an unknown epoll layout: only the ready mark goes.
	b := &Binary{GoVersion: "go1.99.1"}
	offsetsTable["go1.99"] = offsetsTable[version.Lang(runtime.Version())]
	defer delete(offsetsTable, "go1.99")
	if err := b.resolve(nil); err != nil {
		t.Fatal(err)
	}
	if b.Offsets.GGoid == 0 || b.Offsets.PdFd != 0 || b.Offsets.PdFdseq != 0 || len(b.Limits) != 1 {
		t.Errorf("go1.99 in the table, epoll layout unknown: %+v, limits %q", b.Offsets, b.Limits)
	}
}

func TestPollTagFor(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    PollTag
		ok      bool
	}{
		{"go1.22.12", PollTag{19, 3}, true},
		{"go1.23", PollTag{19, 3}, true},
		{"go1.24.11", PollTag{19, 3}, true},
		{"go1.25rc1", PollTag{24, 9}, true},
		{"go1.26.8", PollTag{24, 9}, true},
		{"go1.27.3", PollTag{24, 9}, true},
		{"go1.28.0", PollTag{}, false},
		{"go1.21.13", PollTag{19, 3}, true},
		{"go1.20.14", PollTag{}, true}, // a plain *pollDesc
		{"go1.17", PollTag{}, true},
		{"go1.16.15", PollTag{}, false},
	} {
		got, err := pollTagFor(tc.version)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("pollTagFor(%s) = %+v, %v, want %+v", tc.version, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("pollTagFor(%s) = %+v, want an error", tc.version, got)
		}
	}
}

// The PollTag unpacks what the runtime packs, for both layouts. From
// runtime/tagptr_64bit.go and tagptr.go (amd64): Go 1.22-1.24 addrBits = 48,
// tagBits = 64-48+3, ptr<<(64-addrBits); Go 1.25+ addrBits = 48+1,
// tagAlignBits = 9, tagBits = 64 - addrBits + tagAlignBits,
// ptr<<(tagBits-tagAlignBits). Both: | tag&(1<<tagBits-1).
func TestPollTagUnpacksRuntimePacking(t *testing.T) {
	for _, tc := range []struct {
		version            string
		tagBits, shiftLeft int
		ptrs               []uint64
	}{
		{"go1.24.11", 64 - 48 + 3, 64 - 48, []uint64{8, 0xc000_1234_00, 0x7f12_3456_7800, 1<<47 - 8}},
		{"go1.26.8", 64 - 49 + 9, 64 - 49 + 9 - 9, []uint64{512, 0xc000_1234_00, 0x7f12_3456_7800, 1<<47 - 512}},
	} {
		pack := func(ptr, tag uint64) uint64 {
			return ptr<<tc.shiftLeft | tag&(1<<tc.tagBits-1)
		}
		pt, err := pollTagFor(tc.version)
		if err != nil {
			t.Fatal(err)
		}
		for _, ptr := range tc.ptrs {
			for _, tag := range []uint64{0, 1, 0x5bcdef & (1<<tc.tagBits - 1), 1<<tc.tagBits - 1} {
				data := pack(ptr, tag)
				gotPtr := uint64(int64(data)>>pt.Shr) << pt.Shl
				gotTag := data & (1<<pt.Shr - 1)
				if gotPtr != ptr || gotTag != tag {
					t.Errorf("%s: packed %#x, %#x as %#x; unpacked %#x, %#x", tc.version, ptr, tag, data, gotPtr, gotTag)
				}
			}
		}
	}
}

func TestReleaseOfExperimentBuilds(t *testing.T) {
	for _, v := range []string{"go1.25.3 X:boringcrypto", "go1.26.8-X:jsonv2", "go1.24.0"} {
		if _, err := pollTagFor(releaseOf(v)); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// Inspect reads the layouts from the DWARF up to the runtime's compile
// unit only; what it finds there is what all of the DWARF says, for a
// build by this toolchain and by each older one the machine has (net/http
// servers: its structs, and Go 1.27's moved http2 ones, are in it too).
// And it finds them by name (readNamed) without the walk through the
// whole unit it falls back to.
func TestRuntimeDWARFPrefix(t *testing.T) {
	bins := map[string]string{}
	for _, v := range []string{runtime.Version(), "go1.17.13", "go1.21.13", "go1.24.11", "go1.27.3"} {
		if bin, ok := buildTinyWith(t, v); ok {
			bins[v] = bin
		}
	}
	for v, bin := range bins {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		prefix, err := prefixOffsets(f)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		abbrev, err := debugSection(f, "abbrev")
		if err != nil {
			t.Fatal(err)
		}
		var named layouts
		var byName Offsets
		_, namedErr := typesDWARF(f, abbrev, "runtime", func(d *dwarf.Data, start, _ dwarf.Offset, raw []byte) bool {
			if named.readNamed(d, start, raw, structCodes(abbrev)) != nil {
				return false
			}
			var err error
			byName, err = named.offsets()
			return err == nil
		})
		f.Close()
		all, err := OffsetsFromDWARF(bin)
		if err != nil {
			t.Fatal(err)
		}
		if prefix != all {
			t.Errorf("%s: runtime unit: %+v\nall DWARF: %+v", v, prefix, all)
		}
		if namedErr != nil || byName != all {
			t.Errorf("%s: by name: %+v (%v)\nall DWARF: %+v", v, byName, namedErr, all)
		}
		if all.HttpRespReq == 0 {
			t.Errorf("%s: no net/http offsets: the test's program does not serve HTTP", v)
		}
	}
}

// buildTinyWith builds buildTiny's program with toolchain v when the
// module cache already has it (CI downloads these); ok false otherwise.
func buildTinyWith(t *testing.T, v string) (string, bool) {
	t.Helper()
	goroot, err := exec.Command("env", "GOTOOLCHAIN="+v, "go", "env", "GOROOT").Output()
	if err != nil {
		t.Logf("%s not available: %v", v, err)
		return "", false
	}
	dir := t.TempDir()
	src := "package main\n\nimport \"net/http\"\n\nfunc main() { http.ListenAndServe(\"\", nil) }\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module tiny\n\ngo 1.17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tiny")
	cmd := exec.Command(filepath.Join(strings.TrimSpace(string(goroot)), "bin", "go"), "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "GOENV=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s build: %v\n%s", v, err, out)
	}
	return bin, true
}

// symbolValues finds what elf.File.Symbols finds, for the symbols
// gonetscope looks up, in a binary with a symbol table; none without one.
func TestSymbolValues(t *testing.T) {
	for _, flags := range []string{"", "-s -w"} {
		bin := buildTiny(t, flags)
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		names := []string{"runtime.allgs", "runtime.gomaxprocs", "runtime.memstats", "main.main", "runtime.no_such_symbol"}
		got, err := symbolValues(f, names...)
		all, allErr := f.Symbols()
		if allErr != nil {
			if err == nil {
				t.Errorf("ldflags %q: elf says %v, symbolValues found %v", flags, allErr, got)
			}
			continue
		}
		want := map[string]elf.Symbol{}
		for _, s := range all {
			if slices.Contains(names, s.Name) {
				s.Version, s.Library, s.VersionIndex = "", "", 0
				want[s.Name] = s
			}
		}
		if len(want) < 4 || len(got) != len(want) {
			t.Fatalf("ldflags %q: got %d symbols %v, want %d %v", flags, len(got), got, len(want), want)
		}
		for name, s := range want {
			if got[name] != s {
				t.Errorf("%s: got %+v, want %+v", name, got[name], s)
			}
		}
	}
}
