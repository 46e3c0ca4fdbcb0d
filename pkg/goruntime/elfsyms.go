package goruntime

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"io"
)

// errNoSymtab: the executable has no symbol table (-ldflags=-s).
var errNoSymtab = errors.New("no .symtab")

// symbolValues returns the values and sizes of the named symbols in f's
// .symtab. It reads .strtab and then .symtab as streams, holding neither:
// a large server's are 7 MB (caddy's), and elf.File.Symbols would make
// a string of every name to find two or three.
func symbolValues(f *elf.File, names ...string) (map[string]elf.Symbol, error) {
	symtab := f.SectionByType(elf.SHT_SYMTAB)
	if symtab == nil || f.Class != elf.ELFCLASS64 || int(symtab.Link) >= len(f.Sections) {
		return nil, errNoSymtab
	}
	// Where each name is in the string table: "\x00name\x00".
	at := map[uint32]string{}
	r := bufio.NewReaderSize(f.Sections[symtab.Link].Open(), 64<<10)
	var off uint32
	var long []byte // a string longer than the buffer
	for {
		s, err := r.ReadSlice(0)
		if err == bufio.ErrBufferFull {
			long = append(long, s...)
			continue
		}
		if err != nil {
			break
		}
		if long != nil {
			s, long = append(long, s...), nil
		}
		for _, name := range names {
			if len(s) == len(name)+1 && bytes.Equal(s[:len(name)], []byte(name)) {
				at[off] = name
			}
		}
		off += uint32(len(s))
	}
	out := map[string]elf.Symbol{}
	if len(at) == 0 {
		return out, nil
	}
	r = bufio.NewReaderSize(symtab.Open(), 64<<10)
	var ent [24]byte // Elf64_Sym
	for {
		if _, err := io.ReadFull(r, ent[:]); err != nil {
			break
		}
		name, ok := at[f.ByteOrder.Uint32(ent[0:])]
		if !ok {
			continue
		}
		out[name] = elf.Symbol{Name: name, Info: ent[4], Other: ent[5],
			Section: elf.SectionIndex(f.ByteOrder.Uint16(ent[6:])),
			Value:   f.ByteOrder.Uint64(ent[8:]), Size: f.ByteOrder.Uint64(ent[16:])}
	}
	return out, nil
}
