package goruntime

import (
	"crypto/rand"
	"debug/dwarf"
	"debug/elf"
	"errors"
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
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
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

func TestInspectNoDWARF(t *testing.T) {
	bin := buildTiny(t, "-w")
	b, err := Inspect(bin)
	if err == nil || errors.Is(err, ErrNotGo) || !strings.Contains(err.Error(), "DWARF") {
		t.Errorf("Inspect(binary built with -w) = %+v, %v, want an error about DWARF", b, err)
	}
}

func TestPollTagFor(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    PollTag
		ok      bool
	}{
		{"go1.24", PollTag{24, 9}, true},
		{"go1.24.0", PollTag{24, 9}, true},
		{"go1.25rc1", PollTag{24, 9}, true},
		{"go1.26.8", PollTag{24, 9}, true},
		{"go1.23", PollTag{}, false},
		{"go1.23.12", PollTag{}, false},
		{"go1.17", PollTag{}, false},
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

// The PollTag unpacks what the runtime packs. From runtime/tagptr_64bit.go
// and tagptr.go (amd64, Go 1.24+): addrBits = 48+1, tagAlignBits = 9,
// tagBits = 64 - addrBits + tagAlignBits, and
// taggedPointerPack(ptr, tag) = ptr<<(tagBits-tagAlignBits) | tag&(1<<tagBits-1).
func TestPollTagUnpacksRuntimePacking(t *testing.T) {
	const addrBits, tagAlignBits = 49, 9
	const tagBits = 64 - addrBits + tagAlignBits
	pack := func(ptr, tag uint64) uint64 {
		return ptr<<(tagBits-tagAlignBits) | tag&(1<<tagBits-1)
	}
	pt, err := pollTagFor(runtime.Version())
	if err != nil {
		t.Fatal(err)
	}
	for _, ptr := range []uint64{512, 0xc000_1234_00, 0x7f12_3456_7800, 1<<47 - 512} {
		for _, tag := range []uint64{0, 1, 0xabcdef, 1<<tagBits - 1} {
			data := pack(ptr, tag)
			gotPtr := uint64(int64(data)>>pt.Shr) << pt.Shl
			gotTag := data & (1<<pt.Shr - 1)
			if gotPtr != ptr || gotTag != tag {
				t.Errorf("packed %#x, %#x as %#x; unpacked %#x, %#x", ptr, tag, data, gotPtr, gotTag)
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
