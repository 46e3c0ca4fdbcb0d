package goruntime

import (
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// PollDesc is the netpoller's record of one fd (runtime.pollDesc), read
// from the process's memory.
type PollDesc struct {
	Addr uint64 // the *pollDesc
	FD   int32
	// Rg and Wg are the g parked reading or writing the fd, else 0 (the
	// runtime's pdNil, pdReady and pdWait are 0, 1 and 2: not a g).
	Rg, Wg uint64
	// Rd and Wd are the read and write deadlines, a nanotime (runtime's
	// CLOCK_MONOTONIC); 0: none; negative: expired.
	Rd, Wd int64
}

// pollDescAddr unpacks epoll_event.data: the *pollDesc and its tag.
func (p *Process) pollDescAddr(data uint64) (addr, tag uint64) {
	if t := p.Bin.PollTag; t.Shr != 0 {
		return uint64(int64(data)>>t.Shr) << t.Shl, data & (1<<t.Shr - 1)
	}
	return data, 0
}

// decodePollDesc decodes the pollDesc read into b for fd, registered with
// data: its fd must be fd and, from Go 1.21, its fdseq the data's tag.
func (p *Process) decodePollDesc(fd int32, data uint64, b []byte) (PollDesc, error) {
	o := p.Bin.Offsets
	if o.PdFd == 0 || o.PdRg == 0 || o.PdWg == 0 || o.PdRd == 0 || o.PdWd == 0 {
		return PollDesc{}, fmt.Errorf("the layout of runtime.pollDesc of %s is not known", p.Bin.GoVersion)
	}
	addr, tag := p.pollDescAddr(data)
	u64 := func(off uint16) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
	pd := PollDesc{Addr: addr, FD: int32(u64(o.PdFd)), Rg: u64(o.PdRg), Wg: u64(o.PdWg), Rd: int64(u64(o.PdRd)), Wd: int64(u64(o.PdWd))}
	if pd.FD != fd {
		return PollDesc{}, fmt.Errorf("fd %d: the pollDesc at %#x is for fd %d", fd, addr, pd.FD)
	}
	if p.Bin.PollTag.Shr != 0 && o.PdFdseq != 0 && u64(o.PdFdseq)&(1<<p.Bin.PollTag.Shr-1) != tag {
		return PollDesc{}, fmt.Errorf("fd %d: the pollDesc at %#x was reused (fdseq)", fd, addr)
	}
	// pdNil, pdReady, pdWait are not goroutines.
	if pd.Rg <= 2 {
		pd.Rg = 0
	}
	if pd.Wg <= 2 {
		pd.Wg = 0
	}
	return pd, nil
}

// PollDescs reads the pollDesc of every fd the process's netpoller has
// registered (found in /proc/PID/fdinfo of its epoll fd): no probe.
// Registrations that are not a pollDesc are left out. The epoll fds found
// are remembered: the next call reads only theirs while they stay epoll
// fds, instead of every fd's link.
func (p *Process) PollDescs() ([]PollDesc, error) {
	var ents []proc.EpollEntry
	p.epollMu.Lock()
	known := p.epollFDs
	p.epollMu.Unlock()
	for _, epfd := range known {
		es, ok := proc.EpollFDEntries(p.PID, epfd)
		if !ok {
			known, ents = nil, nil
			break
		}
		ents = append(ents, es...)
	}
	if known == nil {
		var err error
		if ents, err = proc.EpollEntries(p.PID); err != nil {
			return nil, err
		}
		for _, e := range ents {
			if !slices.Contains(known, e.EpFD) {
				known = append(known, e.EpFD)
			}
		}
		p.epollMu.Lock()
		p.epollFDs = known
		p.epollMu.Unlock()
	}
	mem, err := os.Open(proc.Path(p.PID, "mem"))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	o := p.Bin.Offsets
	span := int(max(o.PdFd, o.PdFdseq, o.PdRg, o.PdWg, o.PdRd, o.PdWd) + 8)
	addrs := make([]uint64, len(ents))
	for i, e := range ents {
		addrs[i], _ = p.pollDescAddr(e.Data)
	}
	buf := make([]byte, len(addrs)*span)
	read := readMany(p.PID, mem, addrs, span, buf)
	var out []PollDesc
	for i, e := range ents {
		if !read[i] || addrs[i] == 0 {
			continue
		}
		if pd, err := p.decodePollDesc(e.FD, e.Data, buf[i*span:(i+1)*span]); err == nil {
			out = append(out, pd)
		}
	}
	return out, nil
}
