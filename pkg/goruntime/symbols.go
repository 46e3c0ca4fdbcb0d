package goruntime

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
)

// Symbols opens the symbol table of the running process whose /proc
// directory is procDir (such as /proc/1234), for Go binary b: through
// procDir/exe (a container's binary needs no path), procDir/maps for the
// load bias of a PIE binary, and procDir/mem for the moduledata.
func (b *Binary) Symbols(procDir string) (*symtab.Table, error) {
	exe, err := os.Open(procDir + "/exe")
	if err != nil {
		return nil, err
	}
	defer exe.Close()
	st, err := exe.Stat()
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(exe)
	if err != nil {
		return nil, err
	}
	bias, err := LoadBias(procDir+"/maps", st.Sys().(*syscall.Stat_t).Ino, f)
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(procDir + "/mem")
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	t, err := symtab.Open(f, mem, bias, symtab.Layout{MdText: b.Offsets.MdText, MdGofunc: b.Offsets.MdGofunc})
	if err != nil {
		return nil, fmt.Errorf("reading the symbols of %s: %w", b.Path, err)
	}
	return t, nil
}

// LoadBias returns how far the executable f (inode ino) was moved from its
// link-time addresses, from the process's maps: 0 unless it is PIE.
func LoadBias(mapsPath string, ino uint64, f *elf.File) (uint64, error) {
	mf, err := os.Open(mapsPath)
	if err != nil {
		return 0, err
	}
	defer mf.Close()
	sc := bufio.NewScanner(mf)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if n, err := strconv.ParseUint(fields[4], 10, 64); err != nil || n != ino {
			continue
		}
		start, err1 := strconv.ParseUint(strings.SplitN(fields[0], "-", 2)[0], 16, 64)
		off, err2 := strconv.ParseUint(fields[2], 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Off&^0xfff == off {
				return start - p.Vaddr&^0xfff, nil
			}
		}
	}
	return 0, fmt.Errorf("%s: the executable (inode %d) is not mapped", mapsPath, ino)
}
