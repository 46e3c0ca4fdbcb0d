// Package allgs counts the live goroutines of a running Go process by
// creation site (the function holding the `go` statement), reading the
// runtime's allgs slice through /proc/PID/mem. The offsets of g.atomicstatus
// and g.gopc come from the target's DWARF and the addresses of runtime.allgs
// and runtime.allglen from its symbol table: a binary without them is
// refused, never read at a guessed offset.
//
// The read is not atomic with respect to the target: a goroutine created or
// ending during the read may be counted or missed. Good enough for a gauge.
package allgs

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/gonetscope/gonetscope/pkg/symbolize"
)

// maxGoroutines bounds a read, against a garbage allglen.
const maxGoroutines = 1 << 22

// Runtime g status values (runtime/runtime2.go).
const (
	gIdle = 0
	gDead = 6
	gScan = 0x1000
)

// Counter reads one process.
type Counter struct {
	mem                *os.File
	sym                *symbolize.Symbolizer
	allgs, allglen     uint64 // run-time addresses
	statusOff, gopcOff uint64
}

// Open prepares to count pid's goroutines. sym resolves creation sites and
// gives the load bias; it must be for the same process.
func Open(pid int, sym *symbolize.Symbolizer) (*Counter, error) {
	f, err := elf.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return nil, fmt.Errorf("reading the executable of PID %d: %w", pid, err)
	}
	defer f.Close()
	c := &Counter{sym: sym}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("PID %d: no symbol table (stripped binary): cannot find runtime.allgs", pid)
	}
	for _, s := range syms {
		switch s.Name {
		case "runtime.allgs":
			c.allgs = s.Value + sym.Bias()
		case "runtime.allglen":
			c.allglen = s.Value + sym.Bias()
		}
	}
	if c.allgs == 0 || c.allglen == 0 {
		return nil, fmt.Errorf("PID %d: no runtime.allgs/allglen in the symbol table", pid)
	}
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("PID %d: no DWARF: cannot find runtime.g's layout", pid)
	}
	if c.statusOff, c.gopcOff, err = gOffsets(d); err != nil {
		return nil, fmt.Errorf("PID %d: %w", pid, err)
	}
	if c.mem, err = os.Open(fmt.Sprintf("/proc/%d/mem", pid)); err != nil {
		return nil, fmt.Errorf("opening the memory of PID %d: %w", pid, err)
	}
	return c, nil
}

func gOffsets(d *dwarf.Data) (status, gopc uint64, err error) {
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil || e == nil {
			return 0, 0, errors.New("DWARF has no runtime.g")
		}
		if e.Tag != dwarf.TagStructType {
			if e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		if name, _ := e.Val(dwarf.AttrName).(string); name != "runtime.g" {
			r.SkipChildren()
			continue
		}
		t, err := d.Type(e.Offset)
		if err != nil {
			return 0, 0, fmt.Errorf("reading DWARF type runtime.g: %w", err)
		}
		st, ok := t.(*dwarf.StructType)
		if !ok {
			return 0, 0, errors.New("DWARF runtime.g is not a struct")
		}
		found := 0
		for _, f := range st.Field {
			switch f.Name {
			case "atomicstatus":
				status, found = uint64(f.ByteOffset), found+1
			case "gopc":
				gopc, found = uint64(f.ByteOffset), found+1
			}
		}
		if found != 2 {
			return 0, 0, errors.New("DWARF runtime.g has no atomicstatus or gopc")
		}
		return status, gopc, nil
	}
}

func (c *Counter) u64(addr uint64) (uint64, error) {
	var b [8]byte
	if _, err := c.mem.ReadAt(b[:], int64(addr)); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// BySite counts live goroutines (neither idle nor dead) by creation site.
func (c *Counter) BySite() (map[string]int, error) {
	n, err := c.u64(c.allglen)
	if err != nil {
		return nil, fmt.Errorf("reading runtime.allglen: %w", err)
	}
	ptr, err := c.u64(c.allgs)
	if err != nil {
		return nil, fmt.Errorf("reading runtime.allgs: %w", err)
	}
	if n > maxGoroutines {
		return nil, fmt.Errorf("runtime.allglen %d: implausible", n)
	}
	gs := make([]byte, 8*n)
	if _, err := c.mem.ReadAt(gs, int64(ptr)); err != nil {
		return nil, fmt.Errorf("reading runtime.allgs: %w", err)
	}
	span := max(c.statusOff+4, c.gopcOff+8)
	buf := make([]byte, span)
	sites := map[string]int{}
	for i := uint64(0); i < n; i++ {
		g := binary.LittleEndian.Uint64(gs[8*i:])
		if g == 0 {
			continue
		}
		if _, err := c.mem.ReadAt(buf, int64(g)); err != nil {
			continue
		}
		status := binary.LittleEndian.Uint32(buf[c.statusOff:]) &^ gScan
		if status == gIdle || status == gDead {
			continue
		}
		site := "unknown"
		if fr, _, ok := c.sym.Lookup(binary.LittleEndian.Uint64(buf[c.gopcOff:]), false); ok {
			site = fr.Func
		}
		sites[site]++
	}
	return sites, nil
}

// Close releases the process's memory file.
func (c *Counter) Close() error { return c.mem.Close() }
