package symtab

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A large server's symbol tables are 30 MB (caddy's .gopclntab and
// funcdata), of which symbolizing a stack reads a few hundred bytes. They
// used to be mapped from the file; but the kernel maps page-cache pages
// in folios of up to 2 MB, so each of those few reads made up to 2 MB
// resident in gonetscope: measured on Linux 6.18 (ext4), 21 reads, one
// per MB of caddy's table, made 18.5 MB of it resident (FilePmdMapped),
// and a run's goroutine names, 16 MB. So the tables are read with pread,
// in blocks, through a cache of bounded size per executable.

const (
	blockSize = 4 << 10
	// cacheBlocks is how many blocks each executable's cache holds (1 MB,
	// allocated once, at its first read: reading makes no garbage): a
	// symbolization's working set fits, the function table that binary
	// searches visit and a few blocks per function.
	cacheBlocks = 256
)

// blockFile is an executable's file, opened once for gonetscope's life,
// and its cache of blocks: direct-mapped, block i in slot i % cacheBlocks.
type blockFile struct {
	f     *os.File
	mu    sync.Mutex
	cache []byte              // cacheBlocks slots of blockSize
	tag   [cacheBlocks]int64  // the block in each slot, +1 (0: none)
	size  [cacheBlocks]uint16 // its length (shorter at the end of the file)
}

type fileKey struct{ dev, ino uint64 }

var (
	filesMu sync.Mutex
	files   = map[fileKey]*blockFile{}
)

// openBlocks returns the block reader of file's executable: every Table
// of it (the tracer's, the metrics', the overflow explainer's, and again
// after a re-attach) shares one. The number of distinct executables
// bounds what is kept.
func openBlocks(file *os.File) (*blockFile, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(file.Fd()), &st); err != nil {
		return nil, err
	}
	k := fileKey{uint64(st.Dev), st.Ino}
	filesMu.Lock()
	defer filesMu.Unlock()
	if b, ok := files[k]; ok {
		return b, nil
	}
	// A descriptor of its own: the caller closes file.
	fd, err := unix.Dup(int(file.Fd()))
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	b := &blockFile{f: os.NewFile(uintptr(fd), file.Name())}
	files[k] = b
	return b, nil
}

// read copies the file's bytes at off into dst and returns how many it
// could (fewer at the end of the file or where it cannot be read).
func (b *blockFile) read(dst []byte, off int64) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cache == nil {
		b.cache = make([]byte, cacheBlocks*blockSize)
	}
	n := 0
	for n < len(dst) {
		at := off + int64(n)
		blk, in := at/blockSize, int(at%blockSize)
		slot := int(blk % cacheBlocks)
		buf := b.cache[slot*blockSize : (slot+1)*blockSize]
		if b.tag[slot] != blk+1 {
			k, err := b.f.ReadAt(buf, blk*blockSize)
			if err != nil && err != io.EOF {
				b.tag[slot] = 0
				return n
			}
			b.tag[slot], b.size[slot] = blk+1, uint16(k)
		}
		c := copy(dst[n:], buf[in:max(in, int(b.size[slot]))])
		if c == 0 {
			return n
		}
		n += c
	}
	return n
}

// table is one of a binary's symbol tables: n bytes of the file from
// off, read through blocks, or held whole in data (a Table without a
// file).
type table struct {
	data   []byte
	blocks *blockFile
	off    int64
	n      int
}

func (t table) len() int { return t.n }

// read copies t's bytes from i into dst and returns them (fewer at t's
// end; none outside it or where the file cannot be read).
func (t table) read(dst []byte, i int) []byte {
	if i < 0 || i >= t.n {
		return nil
	}
	dst = dst[:min(len(dst), t.n-i)]
	if t.data != nil {
		return dst[:copy(dst, t.data[i:])]
	}
	return dst[:t.blocks.read(dst, t.off+int64(i))]
}

// u64 is the little-endian uint64 at i (0 where there is none).
func (t table) u64(i int) uint64 {
	var buf [8]byte
	b := t.read(buf[:], i)
	if len(b) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// u32 is the little-endian uint32 at i (0 where there is none).
func (t table) u32(i int) uint32 {
	var buf [4]byte
	b := t.read(buf[:], i)
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// byteAt is the byte at i (0 where there is none).
func (t table) byteAt(i int) byte {
	var buf [1]byte
	b := t.read(buf[:], i)
	if len(b) < 1 {
		return 0
	}
	return b[0]
}

// uvarint decodes the varint at i, as binary.Uvarint.
func (t table) uvarint(i int) (uint64, int) {
	var buf [binary.MaxVarintLen64]byte
	return binary.Uvarint(t.read(buf[:], i))
}

// cstring is the NUL-terminated string at off; "?" outside t. It reads
// 64 bytes at a time: names are short.
func (t table) cstring(off uint32) string {
	if int(off) >= t.n {
		return "?"
	}
	var s []byte
	var buf [64]byte
	for i := int(off); i < t.n; {
		b := t.read(buf[:], i)
		if len(b) == 0 {
			break
		}
		if j := bytes.IndexByte(b, 0); j >= 0 {
			return string(append(s, b[:j]...))
		}
		s = append(s, b...)
		i += len(b)
	}
	return string(s)
}

// window reads a table sequentially, or nearly: a 64 kB stretch of it at
// a time, refilled where a read falls outside.
type window struct {
	t     table
	buf   []byte
	start int // where buf is in t
}

func newWindow(t table) *window { return &window{t: t, buf: make([]byte, 0, 64<<10)} }

// at returns t's bytes [i, i+n) (fewer at its end; none outside it).
func (w *window) at(i, n int) []byte {
	if i < w.start || i+n > w.start+len(w.buf) {
		w.start = i
		w.buf = w.t.read(w.buf[:cap(w.buf)], i)
	}
	if i-w.start >= len(w.buf) {
		return nil
	}
	return w.buf[i-w.start : min(i-w.start+n, len(w.buf))]
}

func (w *window) u32(i int) uint32 {
	b := w.at(i, 4)
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

// cstring is the NUL-terminated string at i; valid until the next read.
func (w *window) cstring(i int) []byte {
	b := w.at(i, 1<<10)
	if j := bytes.IndexByte(b, 0); j >= 0 {
		return b[:j]
	}
	if len(b) < 1<<10 {
		return b // t's end
	}
	return []byte(w.t.cstring(uint32(i))) // a name of over 1 kB
}

// nameHash is the FNV-1a hash of a function's name: indexNames hashes
// the table's names with it, Func the name it is asked for.
func nameHash[S ~string | ~[]byte](s S) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// sub is t from i on.
func (t table) sub(i int) table {
	if i > t.n {
		i = t.n
	}
	if t.data != nil {
		return table{data: t.data[i:], n: t.n - i}
	}
	return table{blocks: t.blocks, off: t.off + int64(i), n: t.n - i}
}
