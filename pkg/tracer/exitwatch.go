package tracer

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/gonetscope/gonetscope/pkg/proc"
)

// exitWatch tells Run when a target exits, without polling: a pidfd
// becomes readable when its process exits, and Go's netpoller waits for
// that with the rest of its fds. nil when the kernel has no pidfd
// (before 5.10 for PIDFD_NONBLOCK): the liveness poll then finds the exit.
type exitWatch struct {
	f *os.File
}

// watchExit starts watching p and sends its PID on exited when it exits.
// The pidfd is opened after the caller read p, so it is checked to be
// the same process (not a reuse of the PID) before it is trusted.
func watchExit(p proc.Process, exited chan<- int) *exitWatch {
	fd, err := unix.PidfdOpen(p.PID, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	if !p.Alive() {
		f.Close()
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	go func() {
		// The callback reports "done" on its second call, which comes
		// once the netpoller saw the pidfd readable; Close ends the
		// wait with an error instead.
		first := true
		err := rc.Read(func(uintptr) bool {
			done := !first
			first = false
			return done
		})
		if err == nil {
			select {
			case exited <- p.PID:
			default: // the liveness poll finds it
			}
		}
	}()
	return &exitWatch{f: f}
}

func (w *exitWatch) Close() {
	if w != nil {
		w.f.Close()
	}
}
