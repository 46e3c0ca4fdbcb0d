// Package symbolize turns the user-space return addresses of a running Go
// process into functions, files and lines, from the executable's own
// .gopclntab (which `go build -ldflags=-s -w` keeps), and builds pprof
// profiles whose mappings (path, build id, offsets) let `go tool pprof`
// re-symbolize against the binary as well.
//
// The API is small on purpose:
//
//	s, _ := symbolize.Open(pid)       // reads /proc/PID/maps and the executable
//	b := symbolize.NewBuilder(s, types, defaultType)
//	b.Add(stack, values, labels)      // stack: leaf first, as the kernel gives it
//	b.Profile().Write(w)
package symbolize

import (
	"bytes"
	"debug/elf"
	"debug/gosym"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one executable mapping of the process.
type Mapping struct {
	Start, Limit, Offset uint64
	Path                 string
	BuildID              string
	// exe is set for the mappings of the main executable, the only ones
	// symbolized.
	exe bool
}

// Symbolizer resolves addresses of one process.
type Symbolizer struct {
	PID      int
	Mappings []*Mapping
	table    *gosym.Table
	// bias is the load bias of the executable (PIE): runtime address -
	// bias = link-time address.
	bias uint64
}

// Frame is one function activation; for Go, inlined calls fold into
// their caller (debug/gosym does not expand them).
type Frame struct {
	Func string
	File string
	Line int
}

// ErrNoPclntab means the executable has no .gopclntab: not a Go program.
var ErrNoPclntab = errors.New("the executable has no .gopclntab: not a Go program")

// Open reads the executable mappings of pid and the symbol tables of its
// executable (through /proc/PID/exe, so a replaced file on disk does not
// matter).
func Open(pid int) (*Symbolizer, error) {
	exePath := fmt.Sprintf("/proc/%d/exe", pid)
	exeName, err := os.Readlink(exePath)
	if err != nil {
		return nil, fmt.Errorf("reading the executable of PID %d: %w", pid, err)
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, fmt.Errorf("reading the mappings of PID %d: %w", pid, err)
	}
	f, err := elf.Open(exePath)
	if err != nil {
		return nil, fmt.Errorf("reading the executable of PID %d: %w", pid, err)
	}
	defer f.Close()
	s := &Symbolizer{PID: pid}
	s.Mappings = ParseMaps(maps, exeName)
	if s.table, err = pclnTable(f); err != nil {
		return nil, fmt.Errorf("PID %d (%s): %w", pid, exeName, err)
	}
	id := BuildID(f)
	for _, m := range s.Mappings {
		if m.exe {
			m.BuildID = id
		}
	}
	if s.bias, err = loadBias(f, s.Mappings); err != nil {
		return nil, fmt.Errorf("PID %d (%s): %w", pid, exeName, err)
	}
	return s, nil
}

// ParseMaps returns the executable mappings of a /proc/PID/maps text; those
// whose path is exe belong to the executable. (A deleted executable shows
// as "PATH (deleted)".)
func ParseMaps(maps []byte, exe string) []*Mapping {
	var out []*Mapping
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.Contains(f[1], "x") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		limit, err2 := strconv.ParseUint(hi, 16, 64)
		off, err3 := strconv.ParseUint(f[2], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		path := ""
		if len(f) >= 6 {
			path = strings.Join(f[5:], " ")
		}
		m := &Mapping{Start: start, Limit: limit, Offset: off, Path: strings.TrimSuffix(path, " (deleted)")}
		m.exe = m.Path == strings.TrimSuffix(exe, " (deleted)")
		out = append(out, m)
	}
	return out
}

// loadBias is how far the executable was moved from its link-time
// addresses: 0 for a classic executable, the mapping base for PIE.
func loadBias(f *elf.File, maps []*Mapping) (uint64, error) {
	for _, m := range maps {
		if !m.exe {
			continue
		}
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
				continue
			}
			if m.Offset >= p.Off && m.Offset < p.Off+p.Filesz {
				// m.Start maps file offset m.Offset, which links at
				// p.Vaddr + (m.Offset - p.Off).
				return m.Start - (p.Vaddr + m.Offset - p.Off), nil
			}
		}
	}
	return 0, errors.New("the executable's code is not mapped: cannot compute its load address")
}

func pclnTable(f *elf.File) (*gosym.Table, error) {
	sec := f.Section(".gopclntab")
	if sec == nil {
		return nil, ErrNoPclntab
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .gopclntab: %w", err)
	}
	lt := gosym.NewLineTable(data, textStart(f, data))
	t, err := gosym.NewTable(nil, lt)
	if err != nil {
		return nil, fmt.Errorf("reading .gopclntab: %w", err)
	}
	return t, nil
}

// textStart is the link-time address of runtime.text, which .gopclntab's
// function offsets are relative to: from the symbol table, else from the
// pclntab header (Go 1.18+; zero in a PIE, where it is relocated at run
// time), else the start of .text.
func textStart(f *elf.File, pcln []byte) uint64 {
	if syms, err := f.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "runtime.text" {
				return s.Value
			}
		}
	}
	// Header: magic u32, 2 pad bytes, minLC u8, ptrSize u8, nfunc, nfiles, textStart.
	if len(pcln) >= 8 {
		ptr := int(pcln[7])
		if (ptr == 4 || ptr == 8) && len(pcln) >= 8+3*ptr {
			var v uint64
			if ptr == 8 {
				v = f.ByteOrder.Uint64(pcln[8+2*ptr:])
			} else {
				v = uint64(f.ByteOrder.Uint32(pcln[8+2*ptr:]))
			}
			if v != 0 {
				return v
			}
		}
	}
	if t := f.Section(".text"); t != nil {
		return t.Addr
	}
	return 0
}

// BuildID is the executable's GNU build id (hex) if it has one, which is
// what pprof matches binaries by; else Go's build id.
func BuildID(f *elf.File) string {
	if id := noteDesc(f, ".note.gnu.build-id", 3 /* NT_GNU_BUILD_ID */); id != nil {
		return hex.EncodeToString(id)
	}
	if id := noteDesc(f, ".note.go.buildid", 4); id != nil {
		return string(id)
	}
	return ""
}

func noteDesc(f *elf.File, section string, typ uint32) []byte {
	sec := f.Section(section)
	if sec == nil {
		return nil
	}
	data, err := sec.Data()
	if err != nil || len(data) < 12 {
		return nil
	}
	bo := f.ByteOrder
	namesz, descsz, t := bo.Uint32(data), bo.Uint32(data[4:]), bo.Uint32(data[8:])
	nameEnd := 12 + (namesz+3)&^3
	if t != typ || uint64(nameEnd)+uint64(descsz) > uint64(len(data)) {
		return nil
	}
	return bytes.Clone(data[nameEnd : nameEnd+descsz])
}

// Bias is the executable's load bias: run-time address - link-time address.
func (s *Symbolizer) Bias() uint64 { return s.bias }

// Lookup resolves pc. leaf says pc is where the thread was, not a return
// address: a return address is looked up one byte back, in the call.
func (s *Symbolizer) Lookup(pc uint64, leaf bool) (Frame, *Mapping, bool) {
	m := s.mappingOf(pc)
	if m == nil || !m.exe {
		return Frame{}, m, false
	}
	addr := pc - s.bias
	if !leaf {
		addr--
	}
	file, line, fn := s.table.PCToLine(addr)
	if fn == nil {
		return Frame{}, m, false
	}
	return Frame{Func: fn.Name, File: file, Line: line}, m, true
}

func (s *Symbolizer) mappingOf(pc uint64) *Mapping {
	for _, m := range s.Mappings {
		if pc >= m.Start && pc < m.Limit {
			return m
		}
	}
	return nil
}
