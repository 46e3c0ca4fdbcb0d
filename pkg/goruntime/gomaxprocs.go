package goruntime

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// ErrNoSymbols means the executable has no symbol table (it was built
// with -ldflags=-s): its data variables cannot be found by name.
var ErrNoSymbols = errors.New("the executable has no symbol table (stripped)")

// GOMAXPROCS reads the running process pid's runtime.gomaxprocs (an int32
// in every Go version), found by name in the executable's symbol table
// and read from /proc/PID/mem at its run-time address. A stripped
// binary gives ErrNoSymbols: its value is not guessed.
func GOMAXPROCS(pid int) (int, error) {
	exe, err := os.Open(proc.Path(pid, "exe"))
	if err != nil {
		return 0, fmt.Errorf("opening the executable of PID %d: %w", pid, err)
	}
	defer exe.Close()
	f, err := elf.NewFile(exe)
	if err != nil {
		return 0, err
	}
	syms, err := symbolValues(f, "runtime.gomaxprocs")
	if err != nil {
		return 0, ErrNoSymbols
	}
	var addr uint64
	if s, ok := syms["runtime.gomaxprocs"]; ok && s.Size == 4 {
		addr = s.Value
	}
	if addr == 0 {
		return 0, errors.New("runtime.gomaxprocs is not in the symbol table")
	}
	st, err := exe.Stat()
	if err != nil {
		return 0, err
	}
	maps, err := os.ReadFile(proc.Path(pid, "maps"))
	if err != nil {
		return 0, err
	}
	bias, err := loadBias(ParseMaps(maps, st.Sys().(*syscall.Stat_t).Ino), f)
	if err != nil {
		return 0, err
	}
	mem, err := os.Open(proc.Path(pid, "mem"))
	if err != nil {
		return 0, fmt.Errorf("opening the memory of PID %d: %w", pid, err)
	}
	defer mem.Close()
	var b [4]byte
	if _, err := mem.ReadAt(b[:], int64(addr+bias)); err != nil {
		return 0, fmt.Errorf("reading runtime.gomaxprocs: %w", err)
	}
	n := int32(f.ByteOrder.Uint32(b[:]))
	if n < 1 {
		return 0, fmt.Errorf("runtime.gomaxprocs reads %d", n)
	}
	return int(n), nil
}
