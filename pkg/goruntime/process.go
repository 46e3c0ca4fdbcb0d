package goruntime

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"go/version"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/gonetscope/gonetscope/pkg/goruntime/symtab"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Process is a running Go program: its binary, where that is loaded, its
// symbol table and the address of its goroutine table. Its memory is read
// through /proc/PID/mem, opened for each read (no descriptor is kept).
type Process struct {
	PID int
	Bin *Binary
	// Bias is how far the executable was moved from its link-time
	// addresses (0 unless PIE): run-time address - link-time address.
	Bias uint64
	// Mappings are the process's executable mappings; Exe marks the
	// executable's own.
	Mappings []*Mapping
	// BuildID is the executable's GNU build id (hex), else Go's.
	BuildID string
	// Syms symbolizes pcs of the executable, inlined calls expanded.
	Syms *symtab.Table
	// allgs is the run-time address of runtime.allgs (a []*g); 0 when
	// it could not be found.
	allgs    uint64
	allgsErr error
	// globals are the run-time addresses of the runtime variables found
	// (RuntimeGlobals); globalErrs say why the others were not. Looked
	// for on first use: the trace path never needs them.
	globalsOnce sync.Once
	globals     map[string]uint64
	globalErrs  map[string]error
	// epollFDs are the epoll fds PollDescs found last.
	epollMu  sync.Mutex
	epollFDs []int32
	// waitReasons are the Go version's wait reason names, looked up once.
	waitReasonsOnce sync.Once
	waitReasons     []string
	// exeIno and exeStart identify the image: the executable's inode and
	// where its first executable mapping starts (see Replaced).
	exeIno, exeStart uint64
}

// Mapping is one executable mapping of a process.
type Mapping struct {
	Start, Limit, Offset uint64
	Path                 string
	BuildID              string
	Inode                uint64
	// Exe is set for the mappings of the main executable, the only ones
	// symbolized.
	Exe bool
}

// OpenProcess reads what gonetscope needs of the running Go process pid:
// its executable through /proc/PID/exe (a container's binary needs no
// path), the load bias from /proc/PID/maps, the moduledata from
// /proc/PID/mem. bin may be nil: the executable is inspected then.
func OpenProcess(pid int, bin *Binary) (*Process, error) {
	exe, err := os.Open(proc.Path(pid, "exe"))
	if err != nil {
		return nil, fmt.Errorf("opening the executable of PID %d: %w", pid, err)
	}
	defer exe.Close()
	if bin == nil {
		if bin, err = InspectReader(proc.Path(pid, "exe"), exe); err != nil {
			return nil, err
		}
	}
	st, err := exe.Stat()
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(exe)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(proc.Path(pid, "maps"))
	if err != nil {
		return nil, fmt.Errorf("reading the mappings of PID %d: %w", pid, err)
	}
	p := &Process{PID: pid, Bin: bin, BuildID: BuildID(f), exeIno: st.Sys().(*syscall.Stat_t).Ino}
	p.Mappings = ParseMaps(raw, p.exeIno)
	for _, m := range p.Mappings {
		if m.Exe {
			m.BuildID = p.BuildID
			if p.exeStart == 0 {
				p.exeStart = m.Start
			}
		}
	}
	if p.Bias, err = loadBias(p.Mappings, f); err != nil {
		return nil, fmt.Errorf("PID %d: %w", pid, err)
	}
	mem, err := os.Open(proc.Path(pid, "mem"))
	if err != nil {
		return nil, fmt.Errorf("opening the memory of PID %d: %w", pid, err)
	}
	defer mem.Close()
	p.Syms, err = symtab.Open(f, exe, mem, p.Bias, symtab.Layout{MdText: bin.Offsets.MdText, MdGofunc: bin.Offsets.MdGofunc})
	if err != nil {
		return nil, fmt.Errorf("reading the symbols of %s: %w", bin.Path, err)
	}
	if addr, err := allgsAddr(f, p.Syms); err != nil {
		p.allgsErr = err
	} else {
		p.allgs = addr + p.Bias
	}
	return p, nil
}

// ExePath is the process's executable as /proc/PID/exe, which opens it
// even from another mount namespace (a container's): where uprobes go.
func (p *Process) ExePath() string { return proc.Path(p.PID, "exe") }

// OpenExe opens the process's executable as ELF, to find probe sites in
// its code; the caller closes it.
func (p *Process) OpenExe() (*elf.File, error) { return elf.Open(p.ExePath()) }

// Replaced reports whether the process no longer runs the image p was
// opened on: it replaced itself by exec (same PID), or is gone. Another
// executable, or the same one loaded elsewhere, is another image.
func (p *Process) Replaced() bool {
	st, err := os.Stat(proc.Path(p.PID, "exe"))
	if err != nil || st.Sys().(*syscall.Stat_t).Ino != p.exeIno {
		return true
	}
	raw, err := os.ReadFile(proc.Path(p.PID, "maps"))
	if err != nil {
		return true
	}
	for _, m := range ParseMaps(raw, p.exeIno) {
		if m.Exe {
			return m.Start != p.exeStart
		}
	}
	return true
}

// ParseMaps returns the executable mappings of a /proc/PID/maps text;
// those of inode exe belong to the executable (matched by inode, not by
// path, so a container's binary or a deleted one is recognised).
func ParseMaps(maps []byte, exe uint64) []*Mapping {
	var out []*Mapping
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// start-end perms offset dev inode path
		f := strings.Fields(sc.Text())
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
		ino, err4 := strconv.ParseUint(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			continue
		}
		path := ""
		if len(f) >= 6 {
			path = strings.TrimSuffix(strings.Join(f[5:], " "), " (deleted)")
		}
		out = append(out, &Mapping{Start: start, Limit: limit, Offset: off, Path: path, Inode: ino, Exe: ino != 0 && ino == exe})
	}
	return out
}

// loadBias is how far the executable f was moved from its link-time
// addresses: 0 for a classic executable, the mapping base for PIE. It is
// the one place gonetscope computes it.
func loadBias(maps []*Mapping, f *elf.File) (uint64, error) {
	for _, m := range maps {
		if !m.Exe {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Off&^0xfff == m.Offset {
				return m.Start - p.Vaddr&^0xfff, nil
			}
		}
	}
	return 0, errors.New("the executable's code is not mapped: cannot compute its load address")
}

// MappingOf returns the mapping holding the run-time address pc, or nil.
func (p *Process) MappingOf(pc uint64) *Mapping {
	for _, m := range p.Mappings {
		if pc >= m.Start && pc < m.Limit {
			return m
		}
	}
	return nil
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

// allgsAddr finds the link-time address of runtime.allgs: in the symbol
// table when the binary has one, else (stripped) in the code of
// runtime.forEachG (allgsFromCode).
func allgsAddr(f *elf.File, tab *symtab.Table) (uint64, error) {
	if syms, err := symbolValues(f, "runtime.allgs"); err == nil {
		if s, ok := syms["runtime.allgs"]; ok {
			return s.Value, nil
		}
	}
	return allgsFromCode(f, tab)
}

// allgsFromCode finds runtime.allgs in the code of runtime.forEachG, which
// loads the slice's pointer and length right after taking allglock: the
// first two 64-bit words loaded PC-relative one after the other from A and
// A+8 (amd64: two MOVs; arm64: an LDP, or two LDRs).
func allgsFromCode(f *elf.File, tab *symtab.Table) (uint64, error) {
	var loads []uint64
	err := eachAddrRef(f, tab, "runtime.forEachG", func(r addrRef) {
		loads = append(loads, r.words...)
	})
	if err != nil {
		return 0, fmt.Errorf("cannot find runtime.allgs: %w", err)
	}
	for i := 0; i+1 < len(loads); i++ {
		if loads[i+1] == loads[i]+8 {
			return loads[i], nil
		}
	}
	return 0, errors.New("runtime.forEachG: no load of runtime.allgs found: runtime layout not known")
}

// Code returns the bytes of f's code from link-time address start to end.
func Code(f *elf.File, start, end uint64) ([]byte, error) {
	prog := ExecProg(f, start, end)
	if prog == nil {
		return nil, errors.New("function outside the executable segment")
	}
	b := make([]byte, end-start)
	if _, err := prog.ReadAt(b, int64(start-prog.Vaddr)); err != nil {
		return nil, err
	}
	return b, nil
}

// ExecProg returns the executable segment holding [start, end), or nil.
func ExecProg(f *elf.File, start, end uint64) *elf.Prog {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && start >= p.Vaddr && end <= p.Vaddr+p.Filesz {
			return p
		}
	}
	return nil
}

// Status is a goroutine's runtime status (g.atomicstatus, runtime/runtime2.go),
// without the _Gscan bit. Values 0 to 9 are the same in every Go version
// gonetscope reads.
type Status uint32

// The runtime's goroutine statuses.
const (
	StatusIdle      Status = 0
	StatusRunnable  Status = 1
	StatusRunning   Status = 2
	StatusSyscall   Status = 3
	StatusWaiting   Status = 4
	StatusDead      Status = 6
	StatusCopystack Status = 8
	StatusPreempted Status = 9
	StatusLeaked    Status = 10 // Go 1.26
	// StatusDeadExtra is a dead g kept for a cgo callback's extra M (Go 1.26).
	StatusDeadExtra Status = 11
	statusScan             = 0x1000
)

var statusNames = map[Status]string{
	StatusIdle: "idle", StatusRunnable: "runnable", StatusRunning: "running", StatusSyscall: "syscall",
	StatusWaiting: "waiting", StatusDead: "dead", StatusCopystack: "copystack", StatusPreempted: "preempted",
	StatusLeaked: "leaked", StatusDeadExtra: "dead",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return "status " + strconv.Itoa(int(s))
}

// Live is false for a g that runs nothing: not yet used, or dead and kept
// for reuse (its goid is stale).
func (s Status) Live() bool {
	return s != StatusIdle && s != StatusDead && s != StatusDeadExtra
}

// G is one goroutine as the runtime records it.
type G struct {
	Addr   uint64 // the *g
	Goid   uint64
	Status Status
	// WaitReason names what a waiting goroutine is parked on ("chan
	// receive"); "" otherwise or when not known for this Go version.
	WaitReason string
	// WaitSince is the runtime's nanotime (CLOCK_MONOTONIC) when it
	// started waiting, as the runtime records it (only for some waits);
	// 0 when not recorded.
	WaitSince int64
	// GoPC is the return address of the go statement that created it,
	// StartPC the function it runs (run-time addresses).
	GoPC, StartPC uint64
	// ParentGoid is the goroutine that created it (Go 1.21+; 0 unknown).
	ParentGoid uint64
	// M is the runtime.m it runs on, 0 when none.
	M uint64
	// Sched holds the registers saved when it last stopped running (pc,
	// sp; lr on link-register machines); Syscall the pc and sp saved on
	// entering a system call (zero when not in one). StackHi is the top
	// of its stack. Zero when their offsets are not known.
	Sched   Regs
	Syscall Regs
	StackHi uint64
	// TrackingSeq counts (mod 256) the times it stopped running; 0 when
	// its offset is not known.
	TrackingSeq uint8
}

// Regs are the registers a stack is unwound from.
type Regs struct{ PC, SP, LR uint64 }

// maxGoroutines bounds a read, against a garbage allgs length.
const maxGoroutines = 1 << 24

// ErrNoGoroutineTable means the goroutine table cannot be read: the
// offsets of runtime.g or the address of runtime.allgs are not known.
var ErrNoGoroutineTable = errors.New("the goroutine table (runtime.allgs) cannot be read")

// Goroutines reads the live goroutines (neither idle nor dead) from
// runtime.allgs. The read is not atomic with respect to the target: a
// goroutine created or ending meanwhile may be missed or seen dead.
func (p *Process) Goroutines() ([]G, error) {
	o := p.Bin.Offsets
	if p.allgs == 0 {
		return nil, fmt.Errorf("%w: %v", ErrNoGoroutineTable, p.allgsErr)
	}
	if o.GGoid == 0 || o.GAtomicstatus == 0 {
		return nil, fmt.Errorf("%w: the offsets of runtime.g of %s are not known", ErrNoGoroutineTable, p.Bin.GoVersion)
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	var hdr [16]byte
	if _, err := mem.ReadAt(hdr[:], int64(p.allgs)); err != nil {
		return nil, fmt.Errorf("reading runtime.allgs: %w", err)
	}
	ptr, n := binary.LittleEndian.Uint64(hdr[:]), binary.LittleEndian.Uint64(hdr[8:])
	if n > maxGoroutines {
		return nil, fmt.Errorf("runtime.allgs has %d entries: not a goroutine table", n)
	}
	gs := make([]byte, 8*n)
	if _, err := mem.ReadAt(gs, int64(ptr)); err != nil {
		return nil, fmt.Errorf("reading runtime.allgs: %w", err)
	}
	addrs := make([]uint64, n)
	for i := range n {
		addrs[i] = binary.LittleEndian.Uint64(gs[8*i:])
	}
	g, read := p.readGs(mem, addrs)
	out := make([]G, 0, n)
	for i, addr := range addrs {
		if addr != 0 && read[i] && g[i].Status.Live() {
			out = append(out, g[i])
		}
	}
	return out, nil
}

// Goroutine reads the g at addr (such as one the BPF side recorded).
func (p *Process) Goroutine(addr uint64) (G, error) {
	if p.Bin.Offsets.GAtomicstatus == 0 {
		return G{}, fmt.Errorf("%w: the offsets of runtime.g of %s are not known", ErrNoGoroutineTable, p.Bin.GoVersion)
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return G{}, err
	}
	defer mem.Close()
	buf := make([]byte, p.gSpan())
	if _, err := mem.ReadAt(buf, int64(addr)); err != nil {
		return G{}, err
	}
	return p.decodeG(addr, buf), nil
}

// gSpan is how many bytes of a g hold every field decodeG reads.
func (p *Process) gSpan() int {
	o := p.Bin.Offsets
	n := uint16(0)
	for _, end := range []uint16{o.GGoid + 8, o.GAtomicstatus + 4, o.GWaitreason + 1, o.GWaitsince + 8,
		o.GGopc + 8, o.GStartpc + 8, o.GParentGoid + 8, o.GM + 8,
		o.GSchedSP + 8, o.GSchedPC + 8, o.GSchedLR + 8, o.GSyscallSP + 8, o.GSyscallPC + 8, o.GStackHi + 8, o.GTrackingSeq + 1} {
		n = max(n, end)
	}
	return int(n)
}

// decodeG is the one decoding of a runtime.g; a field whose offset is not
// known stays zero.
func (p *Process) decodeG(addr uint64, b []byte) G {
	o := p.Bin.Offsets
	u64 := func(off uint16) uint64 {
		if off == 0 {
			return 0
		}
		return binary.LittleEndian.Uint64(b[off:])
	}
	g := G{
		Addr:       addr,
		Goid:       u64(o.GGoid),
		Status:     Status(binary.LittleEndian.Uint32(b[o.GAtomicstatus:]) &^ statusScan),
		WaitSince:  int64(u64(o.GWaitsince)),
		GoPC:       u64(o.GGopc),
		StartPC:    u64(o.GStartpc),
		ParentGoid: u64(o.GParentGoid),
		M:          u64(o.GM),
		Sched:      Regs{PC: u64(o.GSchedPC), SP: u64(o.GSchedSP), LR: u64(o.GSchedLR)},
		Syscall:    Regs{PC: u64(o.GSyscallPC), SP: u64(o.GSyscallSP)},
		StackHi:    u64(o.GStackHi),
	}
	if o.GTrackingSeq != 0 {
		g.TrackingSeq = b[o.GTrackingSeq]
	}
	if g.Status == StatusWaiting && o.GWaitreason != 0 {
		g.WaitReason = p.waitReason(b[o.GWaitreason])
	}
	return g
}

// waitReason is p.Bin.WaitReason(r), without looking up the table for
// each goroutine of a scan.
func (p *Process) waitReason(r uint8) string {
	p.waitReasonsOnce.Do(func() {
		if e, ok := offsetsTables[p.Bin.arch()][version.Lang(p.Bin.GoVersion)]; ok {
			p.waitReasons = e.WaitReasons
		}
	})
	if int(r) < len(p.waitReasons) {
		return p.waitReasons[r]
	}
	return ""
}

// ThreadOf returns the thread id of the M a goroutine runs on (for one in
// a syscall), from m.procid.
func (p *Process) ThreadOf(g G) (uint32, bool) {
	if g.M == 0 || p.Bin.Offsets.MProcid == 0 {
		return 0, false
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return 0, false
	}
	defer mem.Close()
	var b [8]byte
	if _, err := mem.ReadAt(b[:], int64(g.M+uint64(p.Bin.Offsets.MProcid))); err != nil {
		return 0, false
	}
	return uint32(binary.LittleEndian.Uint64(b[:])), true
}

// Describe is a goroutine's status as one string: "running", "syscall",
// "waiting: chan receive".
func (g G) Describe() string {
	if g.Status == StatusWaiting && g.WaitReason != "" {
		return g.Status.String() + ": " + g.WaitReason
	}
	return g.Status.String()
}

// global returns the run-time address of the runtime variable name (one
// of RuntimeGlobals), or why it is not known.
func (p *Process) global(name string) (uint64, error) {
	p.globalsOnce.Do(p.findGlobals)
	if a, ok := p.globals[name]; ok {
		return a, nil
	}
	if err := p.globalErrs[name]; err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: not looked for", name)
}

// findGlobals looks for RuntimeGlobals in the executable, opened again
// through /proc/PID/exe: it must be the image p was opened on.
func (p *Process) findGlobals() {
	p.globals, p.globalErrs = map[string]uint64{}, map[string]error{}
	fail := func(err error) {
		for _, g := range RuntimeGlobals {
			p.globalErrs[g.Name] = err
		}
	}
	exe, err := os.Open(proc.Path(p.PID, "exe"))
	if err != nil {
		fail(fmt.Errorf("opening the executable of PID %d: %w", p.PID, err))
		return
	}
	defer exe.Close()
	if st, err := exe.Stat(); err != nil || st.Sys().(*syscall.Stat_t).Ino != p.exeIno {
		fail(fmt.Errorf("PID %d runs another executable than when it was opened", p.PID))
		return
	}
	f, err := elf.NewFile(exe)
	if err != nil {
		fail(err)
		return
	}
	addrs, errs := globalAddrs(f, p.Syms, p.Bin)
	for name, a := range addrs {
		p.globals[name] = a + p.Bias
	}
	maps.Copy(p.globalErrs, errs)
}
