// Package symtab turns program counters of a Go binary into function, file
// and line, from its .gopclntab (which stripped binaries keep), with
// inlined calls expanded into frames of their own, as a Go panic trace
// shows them.
//
// debug/gosym does not expand inlining: it gives the file and line of the
// innermost inlined call but the name of the function it was inlined into.
// This package reads the runtime's own inlining tables instead
// (PCDATA_InlTreeIndex and FUNCDATA_InlTree, see runtime/symtabinl.go).
// They live at offsets from moduledata.gofunc, which a stripped binary
// records nowhere but in the running process's moduledata: Open finds that
// by its first word, the address of .gopclntab.
//
// Supports the pclntab format of Go 1.20 and newer (magic 0xfffffff1).
package symtab

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"
)

// Frame is one source-level frame.
type Frame struct {
	Func string
	File string
	Line int
	// Inlined: this call was inlined into the frame below it.
	Inlined bool
	// PC is the run-time pc the frame was symbolized from.
	PC uint64
	// FuncID is the runtime's abi.FuncID of the function (0: an ordinary
	// one); what other values mean depends on the Go version.
	FuncID uint8
}

// Layout are the offsets of moduledata fields Open needs (from DWARF or the
// version table, see pkg/goruntime).
type Layout struct {
	MdText, MdGofunc uint16
}

// Table symbolizes the pcs of one binary, as loaded at one address.
type Table struct {
	bias   uint64 // runtime address - link-time address
	text   uint64 // link-time start of the functions
	gofunc uint64 // link-time address of go:func.*, base of the funcdata
	// funcdata is the file's bytes from gofunc to the end of its segment.
	funcdata table

	minLC                                       uint32
	nfunc                                       int
	funcnames, cutab, filetab, pctab, pclntable table

	mu    sync.Mutex
	cache map[uint64][]Frame

	// byName finds functions by name (Func): each function's name hash
	// and index, hash<<32|index, sorted; made at the first Func.
	byName     []uint64
	byNameOnce sync.Once
}

// cacheMax bounds the pc cache; a long-running daemon sees a bounded set of
// call sites, so it rarely fills, and is simply reset when it does.
const cacheMax = 1 << 16

// ErrFormat means the pclntab is of a format this package does not read.
var ErrFormat = errors.New("unsupported .gopclntab format")

// Open reads the symbol tables of the ELF executable f, loaded with load
// bias bias, whose memory (at runtime addresses) is mem: /proc/PID/mem of a
// running process, or, for a binary that is not position-independent,
// FileMemory(f). When file is f's open file, the tables are read from it
// as they are needed (blocks.go): a large server's .gopclntab and
// funcdata are 30 MB, of which symbolizing reads a few blocks. Without
// it, they are read whole.
func Open(f *elf.File, file *os.File, mem io.ReaderAt, bias uint64, l Layout) (*Table, error) {
	pcln := f.Section(".gopclntab")
	if pcln == nil {
		// PIE binaries of Go 1.25 and older keep it among the relro data.
		pcln = f.Section(".data.rel.ro.gopclntab")
	}
	if pcln == nil {
		return nil, errors.New("no .gopclntab section")
	}
	data, err := fileTable(file, pcln.Open(), int64(pcln.Offset), int(pcln.Size))
	if err != nil {
		return nil, fmt.Errorf("reading .gopclntab: %w", err)
	}
	if data.len() < 72 || data.u32(0) != 0xfffffff1 || data.byteAt(7) != 8 {
		return nil, fmt.Errorf("%w (want Go 1.20+, 64-bit)", ErrFormat)
	}
	t := &Table{bias: bias, minLC: uint32(data.byteAt(6)), cache: map[uint64][]Frame{}}
	t.nfunc = int(data.u64(8))
	off := func(i int) table { return data.sub(int(data.u64(i))) }
	t.funcnames, t.cutab, t.filetab, t.pctab, t.pclntable = off(32), off(40), off(48), off(56), off(64)

	if l.MdText == 0 || l.MdGofunc == 0 {
		return nil, errors.New("moduledata layout unknown")
	}
	if err := t.findModuledata(f, mem, pcln.Addr, l); err != nil {
		return nil, err
	}
	found := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && t.gofunc >= p.Vaddr && t.gofunc < p.Vaddr+p.Filesz {
			off := int64(t.gofunc - p.Vaddr)
			if t.funcdata, err = fileTable(file, io.NewSectionReader(p, off, int64(p.Filesz)-off), int64(p.Off)+off, int(int64(p.Filesz)-off)); err != nil {
				return nil, fmt.Errorf("reading funcdata: %w", err)
			}
			found = true
		}
	}
	if !found {
		return nil, errors.New("moduledata.gofunc is outside the file")
	}
	return t, nil
}

// fileTable is n bytes of file at off, read through the executable's
// block cache (blocks.go), or, without file, read whole from r.
func fileTable(file *os.File, r io.Reader, off int64, n int) (table, error) {
	if file != nil {
		b, err := openBlocks(file)
		if err != nil {
			return table{}, err
		}
		return table{blocks: b, off: off, n: n}, nil
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return table{}, err
	}
	return table{data: b, n: n}, nil
}

// findModuledata finds runtime.firstmoduledata among the writable data
// (.go.module from Go 1.26, .noptrdata before): its first word is the
// runtime address of .gopclntab. Its text field must be the start of .text,
// or it is not taken.
func (t *Table) findModuledata(f *elf.File, mem io.ReaderAt, pclnAddr uint64, l Layout) error {
	text := f.Section(".text")
	if text == nil {
		return errors.New("no .text section")
	}
	want := pclnAddr + t.bias
	for _, sec := range f.Sections {
		if sec.Type != elf.SHT_PROGBITS || sec.Flags&elf.SHF_WRITE == 0 || sec.Flags&elf.SHF_ALLOC == 0 {
			continue
		}
		buf := make([]byte, sec.Size)
		if _, err := mem.ReadAt(buf, int64(sec.Addr+t.bias)); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading the target's %s: %w", sec.Name, err)
		}
		for i := 0; i+int(l.MdGofunc)+8 <= len(buf); i += 8 {
			if binary.LittleEndian.Uint64(buf[i:]) != want {
				continue
			}
			md := buf[i:]
			mdText := binary.LittleEndian.Uint64(md[l.MdText:]) - t.bias
			gofunc := binary.LittleEndian.Uint64(md[l.MdGofunc:]) - t.bias
			if mdText != text.Addr || gofunc < text.Addr {
				continue
			}
			t.text, t.gofunc = mdText, gofunc
			return nil
		}
	}
	return errors.New("runtime.firstmoduledata not found")
}

// FileMemory reads a binary's memory image from its file, for a binary
// that is not position-independent (the file holds the final pointers).
func FileMemory(f *elf.File) io.ReaderAt { return readerFunc(fileReader(f)) }

type readerFunc func(addr uint64, n int) ([]byte, bool)

func (r readerFunc) ReadAt(p []byte, off int64) (int, error) {
	b, ok := r(uint64(off), len(p))
	if !ok {
		return 0, fmt.Errorf("address %#x not in the file", off)
	}
	return copy(p, b), nil
}

// fileReader returns link-time memory from the file's PT_LOAD segments.
func fileReader(f *elf.File) func(addr uint64, n int) ([]byte, bool) {
	return func(addr uint64, n int) ([]byte, bool) {
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr+uint64(n) > p.Vaddr+p.Filesz {
				continue
			}
			b := make([]byte, n)
			if _, err := p.ReadAt(b, int64(addr-p.Vaddr)); err != nil {
				return nil, false
			}
			return b, true
		}
		return nil, false
	}
}

// Frames symbolizes one runtime pc, innermost inlined call first. leaf is
// false for return addresses (every frame of a stack but the first): the
// call instruction is the byte before. Unknown pcs give nil.
func (t *Table) Frames(pc uint64, leaf bool) []Frame {
	key := pc<<1 | map[bool]uint64{true: 1}[leaf]
	t.mu.Lock()
	fr, ok := t.cache[key]
	t.mu.Unlock()
	if ok {
		return fr
	}
	lookup := pc - t.bias
	if !leaf {
		lookup--
	}
	fr = t.frames(lookup)
	for i := range fr {
		fr[i].PC = pc
	}
	t.mu.Lock()
	if len(t.cache) >= cacheMax {
		clear(t.cache)
	}
	t.cache[key] = fr
	t.mu.Unlock()
	return fr
}

type fn struct {
	entry uint64
	raw   table // the _func
}

func (f fn) u32(i int) uint32 { return f.raw.u32(i) }

func (t *Table) findFunc(pc uint64) (fn, bool) {
	if pc < t.text || t.nfunc == 0 {
		return fn{}, false
	}
	off := pc - t.text
	ent := func(i int) uint64 { return uint64(t.pclntable.u32(8 * i)) }
	if off >= ent(t.nfunc) {
		return fn{}, false
	}
	i := sort.Search(t.nfunc, func(i int) bool { return ent(i) > off }) - 1
	if i < 0 {
		return fn{}, false
	}
	funcoff := t.pclntable.u32(8*i + 4)
	if int(funcoff)+44 > t.pclntable.len() {
		return fn{}, false
	}
	return fn{entry: t.text + ent(i), raw: t.pclntable.sub(int(funcoff))}, true
}

// pcvalue decodes the pc-value table at off of f for targetpc, as
// runtime.pcvalue does; -1 when there is none.
func (t *Table) pcvalue(f fn, off uint32, targetpc uint64) int32 {
	if off == 0 || int(off) >= t.pctab.len() {
		return -1
	}
	// The table is read 64 bytes at a time, not a varint at a time.
	var buf [64]byte
	at, b := int(off), []byte(nil) // where the bytes after b are; b, those read and not decoded
	uvarint := func() (uint64, int) {
		if len(b) < binary.MaxVarintLen64 {
			k := copy(buf[:], b)
			got := t.pctab.read(buf[k:], at)
			at += len(got)
			b = buf[:k+len(got)]
		}
		v, n := binary.Uvarint(b)
		if n > 0 {
			b = b[n:]
		}
		return v, n
	}
	pc, val := f.entry, int32(-1)
	for first := true; ; first = false {
		uv, n := uvarint()
		if n <= 0 || (uv == 0 && !first) {
			return -1
		}
		val += int32(-(uint32(uv) & 1) ^ (uint32(uv) >> 1))
		pcd, n := uvarint()
		if n <= 0 {
			return -1
		}
		pc += pcd * uint64(t.minLC)
		if targetpc < pc {
			return val
		}
	}
}

func (t *Table) fileLine(f fn, pc uint64) (string, int) {
	file := "?"
	if no := t.pcvalue(f, f.u32(20), pc); no >= 0 {
		if i := (int(f.u32(32)) + int(no)) * 4; i+4 <= t.cutab.len() {
			if off := t.cutab.u32(i); off != ^uint32(0) {
				file = t.filetab.cstring(off)
			}
		}
	}
	return file, int(t.pcvalue(f, f.u32(24), pc))
}

const (
	pcdataInlTreeIndex = 2
	funcdataInlTree    = 3
)

func (t *Table) frames(pc uint64) []Frame {
	f, ok := t.findFunc(pc)
	if !ok {
		return nil
	}
	name := t.funcnames.cstring(f.u32(4))
	npcdata, nfuncdata := int(f.u32(28)), int(f.raw.byteAt(43))
	if f.raw.len() < 44+4*(npcdata+nfuncdata) {
		return nil
	}
	var inlIndex uint32
	if npcdata > pcdataInlTreeIndex {
		inlIndex = f.u32(44 + 4*pcdataInlTreeIndex)
	}
	inlTree := ^uint32(0)
	if nfuncdata > funcdataInlTree {
		inlTree = f.u32(44 + 4*npcdata + 4*funcdataInlTree)
	}
	var out []Frame
	for depth := 0; depth < 100; depth++ {
		file, line := t.fileLine(f, pc)
		ix := int32(-1)
		if inlIndex != 0 && inlTree != ^uint32(0) {
			ix = t.pcvalue(f, inlIndex, pc)
		}
		if ix < 0 {
			return append(out, Frame{Func: name, File: file, Line: line, FuncID: f.raw.byteAt(40)})
		}
		// inlinedCall: funcID u8, pad [3], nameOff i32, parentPc i32, startLine i32.
		at := uint64(inlTree) + 16*uint64(ix)
		if at+16 > uint64(t.funcdata.len()) {
			return append(out, Frame{Func: name, File: file, Line: line, FuncID: f.raw.byteAt(40)})
		}
		call := t.funcdata.sub(int(at))
		out = append(out, Frame{Func: t.funcnames.cstring(call.u32(4)), File: file, Line: line, Inlined: true, FuncID: call.byteAt(0)})
		pc = f.entry + uint64(int64(int32(call.u32(8))))
	}
	return out
}

// Func returns the link-time address range [entry, end) of the function
// named name (such as "runtime.goexit0"). The first call reads every
// function's name once, to index them by a hash of it (8 bytes a
// function: 570 kB for caddy's 71,559); each call then reads the names
// of the few functions whose hash is name's.
func (t *Table) Func(name string) (entry, end uint64, ok bool) {
	t.byNameOnce.Do(t.indexNames)
	h := uint64(nameHash(name))
	ent := func(i int) uint64 { return uint64(t.pclntable.u32(8 * i)) }
	for k := sort.Search(len(t.byName), func(k int) bool { return t.byName[k]>>32 >= h }); k < len(t.byName) && t.byName[k]>>32 == h; k++ {
		i := int(uint32(t.byName[k]))
		if t.funcnames.cstring(t.nameOff(i)) == name {
			return t.text + ent(i), t.text + ent(i+1), true
		}
	}
	return 0, 0, false
}

// nameOff is where function i's name is in funcnames.
func (t *Table) nameOff(i int) uint32 {
	return t.pclntable.u32(int(t.pclntable.u32(8*i+4)) + 4)
}

// indexNames makes byName. It reads the three tables it walks through
// windows of their own (the function table and the _func records in
// order, the names nearly so), a pread per 64 kB, rather than through
// the block cache a few bytes at a time: 12 ms instead of 40 on caddy.
func (t *Table) indexNames() {
	functab, funcs, names := newWindow(t.pclntable), newWindow(t.pclntable), newWindow(t.funcnames)
	t.byName = make([]uint64, 0, t.nfunc)
	for i := 0; i < t.nfunc; i++ {
		funcoff := functab.u32(8*i + 4)
		if int(funcoff)+8 > t.pclntable.len() {
			continue
		}
		h := nameHash(names.cstring(int(funcs.u32(int(funcoff) + 4))))
		t.byName = append(t.byName, uint64(h)<<32|uint64(i))
	}
	slices.Sort(t.byName)
}

// Bias is the load bias the table was opened with: runtime address minus
// link-time address.
func (t *Table) Bias() uint64 { return t.bias }
