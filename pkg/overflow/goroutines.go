package overflow

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/gonetscope/gonetscope/pkg/proc"
	"os"
	"strconv"
	"strings"
)

// goroutines reads the target's goroutine table (runtime.allgs) from
// /proc/PID/mem, to say whether an acceptor still exists and what it is
// doing. Addresses and offsets come from the binary's symbols and DWARF.
type goroutines struct {
	pid         int
	allgs       uint64 // address of runtime.allgs ([]*g)
	waitStrings uint64 // address of runtime.waitReasonStrings ([N]string), 0 if absent
	waitLen     int
	gGoid       uint64
	gStatus     uint64
	gWaitreason uint64
	gM          uint64
	mProcid     uint64
}

// goroutineInfo is one goroutine as the runtime sees it.
type goroutineInfo struct {
	status string // "running", "waiting: sleep", "syscall", ...
	dead   bool
	tid    uint32 // its thread, for a goroutine in a syscall
}

var errNoLayout = errors.New("runtime layout not found")

func openGoroutines(pid int) (*goroutines, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	f, err := elf.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gr := &goroutines{pid: pid}
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("symbols of %s: %w", exe, err)
	}
	for _, s := range syms {
		switch s.Name {
		case "runtime.allgs":
			gr.allgs = s.Value
		case "runtime.waitReasonStrings":
			gr.waitStrings = s.Value
			gr.waitLen = int(s.Size / 16)
		}
	}
	if gr.allgs == 0 {
		return nil, fmt.Errorf("%s has no runtime.allgs: %w", exe, errNoLayout)
	}
	if f.Type == elf.ET_DYN { // PIE: symbols are relative to the load base
		base, err := loadBase(pid, f)
		if err != nil {
			return nil, err
		}
		gr.allgs += base
		if gr.waitStrings != 0 {
			gr.waitStrings += base
		}
	}
	d, err := f.DWARF()
	if err != nil {
		return nil, fmt.Errorf("DWARF of %s: %w", exe, err)
	}
	want := map[string]*uint64{
		"runtime.g.goid":         &gr.gGoid,
		"runtime.g.atomicstatus": &gr.gStatus,
		"runtime.g.waitreason":   &gr.gWaitreason,
		"runtime.g.m":            &gr.gM,
		"runtime.m.procid":       &gr.mProcid,
	}
	found := 0
	r := d.Reader()
	for found < len(want) {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			if e.Tag != dwarf.TagCompileUnit {
				r.SkipChildren()
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if name != "runtime.g" && name != "runtime.m" {
			r.SkipChildren()
			continue
		}
		t, err := d.Type(e.Offset)
		r.SkipChildren()
		if err != nil {
			continue
		}
		st, ok := t.(*dwarf.StructType)
		if !ok {
			continue
		}
		for _, fl := range st.Field {
			if p, ok := want[name+"."+fl.Name]; ok && *p == 0 {
				*p = uint64(fl.ByteOffset)
				found++
			}
		}
	}
	if gr.gGoid == 0 || gr.gStatus == 0 || gr.gM == 0 || gr.mProcid == 0 {
		return nil, fmt.Errorf("%s: runtime.g/m fields: %w", exe, errNoLayout)
	}
	return gr, nil
}

// loadBase finds where a PIE executable is mapped in pid.
func loadBase(pid int, f *elf.File) (uint64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, err
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, err
	}
	var minVaddr uint64 = ^uint64(0)
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr < minVaddr {
			minVaddr = p.Vaddr &^ 0xfff
		}
	}
	for _, line := range strings.Split(string(raw), "\n") {
		fs := strings.Fields(line)
		if len(fs) < 6 || fs[5] != exe || fs[2] != "00000000" {
			continue
		}
		start, err := strconv.ParseUint(strings.Split(fs[0], "-")[0], 16, 64)
		if err != nil {
			return 0, err
		}
		return start - minVaddr, nil
	}
	return 0, fmt.Errorf("no mapping of %s in PID %d", exe, pid)
}

var goStatusNames = map[uint32]string{
	0: "idle", 1: "runnable", 2: "running", 3: "syscall", 4: "waiting",
	6: "dead", 8: "copystack", 9: "preempted",
}

const gDead = 6

// lookup returns what the runtime says about each goid in ids; a goid absent
// from the result no longer exists.
func (gr *goroutines) lookup(ids map[uint64]bool) (map[uint64]goroutineInfo, error) {
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", gr.pid))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	var buf [16]byte
	read := func(addr uint64, n int) ([]byte, error) {
		_, err := mem.ReadAt(buf[:n], int64(addr))
		return buf[:n], err
	}
	u64 := func(addr uint64) (uint64, error) {
		b, err := read(addr, 8)
		if err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b), nil
	}
	hdr := make([]byte, 16)
	if _, err := mem.ReadAt(hdr, int64(gr.allgs)); err != nil {
		return nil, fmt.Errorf("reading runtime.allgs: %w", err)
	}
	ptr, n := binary.LittleEndian.Uint64(hdr), binary.LittleEndian.Uint64(hdr[8:])
	if n > 1<<24 {
		return nil, fmt.Errorf("runtime.allgs has %d entries: not a goroutine table", n)
	}
	gs := make([]byte, 8*n)
	if _, err := mem.ReadAt(gs, int64(ptr)); err != nil {
		return nil, fmt.Errorf("reading runtime.allgs: %w", err)
	}
	out := map[uint64]goroutineInfo{}
	for i := uint64(0); i < n; i++ {
		g := binary.LittleEndian.Uint64(gs[8*i:])
		goid, err := u64(g + gr.gGoid)
		if err != nil || !ids[goid] {
			continue
		}
		b, err := read(g+gr.gStatus, 4)
		if err != nil {
			continue
		}
		st := binary.LittleEndian.Uint32(b) &^ 0x1000 // _Gscan
		if st == gDead {
			continue // a dead g is kept for reuse; its goid is stale
		}
		info := goroutineInfo{status: goStatusNames[st]}
		if info.status == "" {
			info.status = "status " + strconv.Itoa(int(st))
		}
		if st == 4 && gr.gWaitreason != 0 {
			if b, err := read(g+gr.gWaitreason, 1); err == nil {
				info.status += ": " + gr.waitReason(mem, int(b[0]))
			}
		}
		if st == 3 {
			if m, err := u64(g + gr.gM); err == nil && m != 0 {
				if id, err := u64(m + gr.mProcid); err == nil {
					info.tid = uint32(id)
				}
			}
		}
		out[goid] = info
	}
	return out, nil
}

func (gr *goroutines) waitReason(mem *os.File, r int) string {
	if gr.waitStrings == 0 || r >= gr.waitLen {
		return strconv.Itoa(r)
	}
	var s [16]byte
	if _, err := mem.ReadAt(s[:], int64(gr.waitStrings)+int64(16*r)); err != nil {
		return strconv.Itoa(r)
	}
	p, n := binary.LittleEndian.Uint64(s[:]), binary.LittleEndian.Uint64(s[8:])
	if n == 0 || n > 64 {
		return strconv.Itoa(r)
	}
	str := make([]byte, n)
	if _, err := mem.ReadAt(str, int64(p)); err != nil {
		return strconv.Itoa(r)
	}
	return string(str)
}

// syscallOf names the syscall thread tid of pid is in, from
// /proc/PID/task/TID/syscall; "" when it is not in one. tid is the Go
// runtime's m.procid: the thread's id in pid's own PID namespace.
func syscallOf(pid int, tid uint32) string {
	ns, err := proc.ReadNamespaces(pid)
	if err != nil {
		return ""
	}
	host, err := proc.HostTID(pid, ns, int(tid))
	if err != nil {
		return ""
	}
	raw, err := os.ReadFile(fmt.Sprintf("%s/%d/task/%d/syscall", proc.Root, pid, host))
	if err != nil {
		return ""
	}
	fs := strings.Fields(string(raw))
	if len(fs) == 0 || fs[0] == "running" {
		return ""
	}
	nr, err := strconv.Atoi(fs[0])
	if err != nil || nr < 0 {
		return ""
	}
	if name, ok := syscallNames[nr]; ok {
		return name
	}
	return "syscall " + fs[0]
}

// syscallNames are the amd64 syscalls a Go program commonly blocks in.
var syscallNames = map[int]string{
	0: "read", 1: "write", 7: "poll", 17: "pread64", 18: "pwrite64", 19: "readv", 20: "writev",
	23: "select", 35: "nanosleep", 43: "accept", 44: "sendto", 45: "recvfrom", 46: "sendmsg",
	47: "recvmsg", 42: "connect", 61: "wait4", 74: "fsync", 202: "futex", 230: "clock_nanosleep",
	232: "epoll_wait", 257: "openat", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait", 288: "accept4",
	4: "stat", 5: "fstat", 6: "lstat", 262: "newfstatat", 217: "getdents64", 75: "fdatasync",
}
