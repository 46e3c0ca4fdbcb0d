// Package goruntime reads what gonetscope needs to know about a Go binary:
// its Go version and the offsets of the runtime fields the BPF programs read
// (runtime.g.goid, g.m, m.procid, pollDesc.fd, pollDesc.fdseq), and how the
// netpoller packs a *pollDesc into epoll_event.data.
//
// Offsets come from the binary's DWARF. Without DWARF (a stripped binary) or
// with a Go version whose layout is not known, the features that need them
// are refused: nothing reads memory at a guessed offset.
package goruntime

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"go/version"
	"io"
	"os"
	"strings"
)

// Offsets are byte offsets into the target's runtime structs.
type Offsets struct {
	GGoid   uint16 // runtime.g.goid
	GM      uint16 // runtime.g.m
	MProcid uint16 // runtime.m.procid (the thread id)
	PdFd    uint16 // runtime.pollDesc.fd
	PdFdseq uint16 // runtime.pollDesc.fdseq
}

// PollTag says how epoll_event.data packs a *pollDesc:
// ptr = (int64(data) >> Shr) << Shl, tag = data & (1<<Shr - 1) == fdseq.
// Shr == 0 means data is a plain pointer.
type PollTag struct {
	Shr, Shl uint8
}

// Binary is what gonetscope knows about one Go executable.
type Binary struct {
	Path      string
	GoVersion string // "go1.26.8"
	Arch      string // GOARCH from the build info
	Offsets   Offsets
	PollTag   PollTag
	// OffsetsFrom says where Offsets came from: "dwarf".
	OffsetsFrom string
}

// ErrNotGo means the file is not a Go executable.
var ErrNotGo = errors.New("not a Go program")

// Inspect reads the Go version and runtime offsets of the executable at path.
func Inspect(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return InspectReader(path, f)
}

// InspectReader is Inspect for an already open executable (such as
// /proc/PID/exe opened once, so a swapped symlink cannot change what is read).
func InspectReader(path string, r io.ReaderAt) (*Binary, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (not an ELF executable: %v)", path, ErrNotGo, err)
	}
	bi, err := buildinfo.Read(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (no Go build info: %v)", path, ErrNotGo, err)
	}
	b := &Binary{Path: path, GoVersion: releaseOf(bi.GoVersion)}
	for _, s := range bi.Settings {
		if s.Key == "GOARCH" {
			b.Arch = s.Value
		}
	}
	if b.Arch != "" && b.Arch != "amd64" {
		return nil, fmt.Errorf("%s: GOARCH=%s is not supported yet: gonetscope reads goroutines on amd64 only", path, b.Arch)
	}
	if !version.IsValid(version.Lang(b.GoVersion)) || version.Compare(version.Lang(b.GoVersion), "go1.17") < 0 {
		return nil, fmt.Errorf("%s: built with %s: gonetscope needs Go 1.17 or newer (register ABI, g in R14)", path, b.GoVersion)
	}
	b.PollTag, err = pollTagFor(b.GoVersion)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("%s: no DWARF to read runtime offsets from (stripped binary? build without -ldflags=-w): %w", path, err)
	}
	if b.Offsets, err = offsetsFromDWARF(d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b.OffsetsFrom = "dwarf"
	return b, nil
}

// releaseOf drops what follows a Go version: before Go 1.26 an experiment
// came after a space ("go1.25.3 X:boringcrypto"), which go/version does not
// parse; from 1.26 it is "go1.26.8-X:jsonv2", which it does.
func releaseOf(goVersion string) string {
	v, _, _ := strings.Cut(goVersion, " ")
	return v
}

// pollTagFor returns the epoll data packing of a Go version, from
// runtime/tagptr_64bit.go (amd64): tagBits = 64 - addrBits + tagAlignBits.
func pollTagFor(goVersion string) (PollTag, error) {
	lang := version.Lang(goVersion)
	switch {
	case version.Compare(lang, "go1.24") >= 0:
		// addrBits 49 (one extra bit, golang.org/issue/69255), tagAlignBits 9.
		return PollTag{Shr: 24, Shl: 9}, nil
	default:
		return PollTag{}, fmt.Errorf("%s: the netpoller's epoll data layout of this Go version is not known to gonetscope (verified: go1.24 and newer)", goVersion)
	}
}

// want lists the struct fields gonetscope reads, by struct and field name.
var want = []struct {
	strct, field string
	dst          func(*Offsets) *uint16
}{
	{"runtime.g", "goid", func(o *Offsets) *uint16 { return &o.GGoid }},
	{"runtime.g", "m", func(o *Offsets) *uint16 { return &o.GM }},
	{"runtime.m", "procid", func(o *Offsets) *uint16 { return &o.MProcid }},
	{"runtime.pollDesc", "fd", func(o *Offsets) *uint16 { return &o.PdFd }},
	{"runtime.pollDesc", "fdseq", func(o *Offsets) *uint16 { return &o.PdFdseq }},
}

func offsetsFromDWARF(d *dwarf.Data) (Offsets, error) {
	var o Offsets
	found := map[string]bool{}
	structs := map[string]bool{}
	for _, w := range want {
		structs[w.strct] = true
	}
	r := d.Reader()
	for len(found) < len(want) {
		e, err := r.Next()
		if err != nil {
			return o, fmt.Errorf("reading DWARF: %w", err)
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			if e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !structs[name] {
			r.SkipChildren()
			continue
		}
		t, err := d.Type(e.Offset)
		if err != nil {
			return o, fmt.Errorf("reading DWARF type %s: %w", name, err)
		}
		st, ok := t.(*dwarf.StructType)
		if !ok {
			continue
		}
		for _, f := range st.Field {
			for _, w := range want {
				if w.strct == name && w.field == f.Name {
					if f.ByteOffset < 0 || f.ByteOffset > 0xffff {
						return o, fmt.Errorf("DWARF: %s.%s at offset %d", name, f.Name, f.ByteOffset)
					}
					*w.dst(&o) = uint16(f.ByteOffset)
					found[name+"."+f.Name] = true
				}
			}
		}
		r.SkipChildren()
	}
	for _, w := range want {
		if !found[w.strct+"."+w.field] {
			return o, fmt.Errorf("DWARF has no %s.%s: unsupported Go runtime layout", w.strct, w.field)
		}
	}
	return o, nil
}
