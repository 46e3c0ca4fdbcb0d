package goruntime

import (
	"bufio"
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// dwarfOffsets returns how to read the runtime's struct offsets from f's
// DWARF, or nil when f has none (stripped: the table): from the prefix
// that typesDWARF reads when they are all in it, else from all of it.
func dwarfOffsets(f *elf.File) func() (Offsets, error) {
	if f.Section(".debug_info") == nil && f.Section(".zdebug_info") == nil {
		return nil
	}
	return func() (Offsets, error) {
		if o, err := prefixOffsets(f); err == nil {
			return o, nil
		}
		d, err := f.DWARF()
		if err != nil {
			return Offsets{}, err
		}
		return offsetsFromDWARF(d)
	}
}

// prefixOffsets reads the offsets from the runtime's units at the start
// of f's DWARF (typesDWARF).
func prefixOffsets(f *elf.File) (Offsets, error) {
	var l layouts
	var o Offsets
	abbrev, err := debugSection(f, "abbrev")
	if err != nil {
		return o, err
	}
	codes := structCodes(abbrev)
	_, err = typesDWARF(f, abbrev, "runtime", func(d *dwarf.Data, start, entry dwarf.Offset, raw []byte) bool {
		// Most of the runtime's units have no types: their functions'
		// entries are most of the reading, and the names of the
		// structs (inline strings) are not in them.
		if !slices.ContainsFunc(inlineNames, func(name []byte) bool { return bytes.Contains(raw, name) }) {
			return false
		}
		var err error
		if l.readNamed(d, start, raw, codes) == nil {
			if o, err = l.offsets(); err == nil {
				return true
			}
		}
		if l.read(d, []dwarf.Offset{entry}) != nil {
			return false
		}
		o, err = l.offsets()
		return err == nil
	})
	return o, err
}

// typesDWARF reads the DWARF of f that some types of package pkg are in,
// given its .debug_abbrev: .debug_info from its start through the first
// of pkg's compile units after which complete, given each of pkg's units
// (its offset, its entry's and its bytes) in turn, says all is there,
// decompressed as it is read. The Go linker writes every type in one of
// the runtime's units, early: for caddy (82 MB) 5.7 MB of a .debug_info
// of 20.6, and none of the line tables, location lists and frames that
// f.DWARF would also decompress. It fails when the end of .debug_info
// comes first; the caller then falls back to f.DWARF.
func typesDWARF(f *elf.File, abbrev []byte, pkg string, complete func(d *dwarf.Data, start, entry dwarf.Offset, raw []byte) bool) (*dwarf.Data, error) {
	var err error
	sec := f.Section(".debug_info")
	if sec == nil {
		sec = f.Section(".zdebug_info")
	}
	if sec == nil {
		return nil, errors.New("no .debug_info")
	}
	// Small sections a DWARF 5 unit's attributes may point into.
	extra := map[string][]byte{}
	for _, name := range []string{"str", "addr", "str_offsets", "line_str"} {
		if b, err := debugSection(f, name); err == nil {
			extra[name] = b
		}
	}
	r := bufio.NewReaderSize(sec.Open(), 64<<10)
	var info []byte
	for {
		start := len(info)
		if info, err = nextUnit(r, f.ByteOrder, info); err != nil {
			return nil, fmt.Errorf(".debug_info: %w before the types of %s", err, pkg)
		}
		unit := info[start:]
		name, at, err := unitName(abbrev, unit, extra)
		if err != nil {
			return nil, err
		}
		if name != pkg {
			continue
		}

		// A package can have several units (Go 1.17 gave the runtime's
		// assembly files their own, before the one with its types).
		d, err := newDWARF(abbrev, info, extra)
		if err != nil {
			return nil, err
		}
		if complete(d, dwarf.Offset(start), dwarf.Offset(start)+at, unit) {
			return d, nil
		}
	}
}

// searchNames are the names of wantedStructs, and those structAliases
// maps to them.
var searchNames = func() map[string]bool {
	m := map[string]bool{}
	for name := range wantedStructs {
		m[name] = true
	}
	for name := range structAliases {
		m[name] = true
	}
	return m
}()

// inlineNames are searchNames as DWARF writes them inline.
var inlineNames = func() (names [][]byte) {
	for name := range searchNames {
		names = append(names, append([]byte(name), 0))
	}
	return names
}()

// maxStructName bounds the names of searchNames, with their NUL.
var maxStructName = func() (n int) {
	for name := range searchNames {
		n = max(n, len(name)+1)
	}
	return n
}()

// structCodes are the abbreviation codes in abbrev (.debug_abbrev) of
// struct entries whose first attribute is their name, inline, as the Go
// linker writes them: those of one byte (below 128).
func structCodes(abbrev []byte) (codes []byte) {
	uv := func() uint64 {
		v, n := binary.Uvarint(abbrev)
		if n <= 0 {
			abbrev = nil
			return 0
		}
		abbrev = abbrev[n:]
		return v
	}
	for len(abbrev) > 0 {
		code := uv()
		if code == 0 {
			continue // the end of one unit's table
		}
		tag := uv()
		if len(abbrev) == 0 {
			break
		}
		abbrev = abbrev[1:] // DW_CHILDREN_*
		named := false
		for first := true; len(abbrev) > 0; first = false {
			attr, form := uv(), uv()
			if attr == 0 && form == 0 {
				break
			}
			if form == 0x21 { // DW_FORM_implicit_const: its value follows
				_, n := binary.Varint(abbrev)
				abbrev = abbrev[max(n, 0):]
			}
			if first {
				named = dwarf.Attr(attr) == dwarf.AttrName && form == 0x08 // DW_FORM_string
			}
		}
		if dwarf.Tag(tag) == dwarf.TagStructType && named && code < 0x80 {
			codes = append(codes, byte(code))
		}
	}
	return codes
}

// nextUnit reads one unit, header included, from a .debug_info stream
// and appends it to info.
func nextUnit(r io.Reader, order binary.ByteOrder, info []byte) ([]byte, error) {
	var head [12]byte
	if _, err := io.ReadFull(r, head[:4]); err != nil {
		return info, err
	}
	n, hdr := uint64(order.Uint32(head[:4])), 4
	if n == 0xffffffff { // 64-bit DWARF
		if _, err := io.ReadFull(r, head[4:12]); err != nil {
			return info, err
		}
		n, hdr = order.Uint64(head[4:12]), 12
	}
	if n > 1<<30 {
		return info, fmt.Errorf("a unit of %d bytes", n)
	}
	start := len(info)
	info = append(slices.Grow(info, hdr+int(n)), head[:hdr]...)
	info = info[:start+hdr+int(n)]
	if _, err := io.ReadFull(r, info[start+hdr:]); err != nil {
		return info[:start], err
	}
	return info, nil
}

// unitName is the name of the compile unit in unit (the Go package), and
// where in unit its entry is (after the unit's header).
func unitName(abbrev, unit []byte, extra map[string][]byte) (string, dwarf.Offset, error) {
	d, err := newDWARF(abbrev, unit, extra)
	if err != nil {
		return "", 0, err
	}
	e, err := d.Reader().Next()
	if err != nil || e == nil {
		return "", 0, fmt.Errorf("reading a compile unit: %v", err)
	}
	name, _ := e.Val(dwarf.AttrName).(string)
	return name, e.Offset, nil
}

func newDWARF(abbrev, info []byte, extra map[string][]byte) (*dwarf.Data, error) {
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, extra["str"])
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"addr", "str_offsets", "line_str"} {
		if b, ok := extra[name]; ok {
			if err := d.AddSection(".debug_"+name, b); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// debugSection is the decompressed .debug_<name> (or .zdebug_<name>).
func debugSection(f *elf.File, name string) ([]byte, error) {
	s := f.Section(".debug_" + name)
	if s == nil {
		s = f.Section(".zdebug_" + name)
	}
	if s == nil {
		return nil, fmt.Errorf("no .debug_%s", name)
	}
	return s.Data()
}
