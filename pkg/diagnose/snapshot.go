package diagnose

import (
	"errors"
	"time"

	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// maxCloseWait bounds the CLOSE_WAIT sockets a process event lists.
const maxCloseWait = 20

// Snapshot reads the facts of a live process that no hook reports, for
// the process event that diagnose records into the stream: its fds and
// limit, its TCP sockets by state, its GOMAXPROCS and its CPU quota. What
// cannot be read is left out and Unknown says why. All /proc access goes
// through pkg/proc, the runtime's memory through pkg/goruntime.
func Snapshot(p proc.Process, nsPID int) *event.Process {
	ev := &event.Process{
		Header:  event.Header{Time: time.Now(), Event: "process", PID: uint32(p.PID), TID: uint32(p.PID), Comm: p.Comm},
		Unknown: map[string]string{},
	}
	if nsPID != 0 && nsPID != p.PID {
		ev.NsPID = uint32(nsPID)
	}
	pid := p.PID
	if n, err := proc.OpenFDs(pid); err != nil {
		ev.Unknown["open_fds"] = err.Error()
	} else if lim, err := proc.FDLimit(pid); err != nil {
		ev.Unknown["open_fds"] = err.Error()
	} else {
		ev.OpenFDs, ev.FDLimit = n, lim
		if lim == ^uint64(0) {
			ev.FDLimit = 0
		}
	}
	if socks, err := proc.TCPSockets(pid); err != nil {
		ev.Unknown["tcp_states"] = err.Error()
	} else {
		ev.TCPStates = map[string]int{}
		for _, s := range socks {
			ev.TCPStates[s.State]++
			if s.State == "CLOSE_WAIT" && len(ev.CloseWait) < maxCloseWait {
				ev.CloseWait = append(ev.CloseWait, event.Socket{FD: s.FD, Addrs: event.Addrs{
					Local: s.Local, LocalPort: s.LocalPort, Remote: s.Remote, RemotePort: s.RemotePort}})
			}
		}
	}
	if n, err := goruntime.GOMAXPROCS(pid); err != nil {
		if errors.Is(err, goruntime.ErrNoSymbols) {
			ev.Unknown["gomaxprocs"] = "the binary is stripped: runtime.gomaxprocs cannot be found without its symbol table"
		} else {
			ev.Unknown["gomaxprocs"] = err.Error()
		}
	} else {
		ev.GOMAXPROCS, ev.HasGOMAXPROCS = n, true
	}
	if cpus, from, limited, err := proc.CPUQuota(pid); err != nil {
		ev.Unknown["cpu_quota"] = err.Error()
	} else if limited {
		ev.CPUQuota, ev.CPUQuotaFrom, ev.HasCPUQuota = cpus, from, true
	}
	if len(ev.Unknown) == 0 {
		ev.Unknown = nil
	}
	return ev
}
