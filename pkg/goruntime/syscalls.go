package goruntime

import (
	"debug/elf"
	"fmt"
	"go/version"
)

// The socket syscalls no socket tracepoint sees, by the syscall package's
// wrapper that makes each: net's accepts, connects, and the
// getsockopt(SO_ERROR) that fetches a connect's result.
const (
	Accept4    = "accept4"
	Connect    = "connect"
	Getsockopt = "getsockopt"
	// EpollPwait is the netpoller's own epoll_pwait (EpollWaitSites).
	EpollPwait = "epoll_pwait"
)

// socketWrappers are the wrappers and the function each calls to enter
// the kernel: syscall.Syscall or Syscall6, a Go function (ABIInternal)
// since Go 1.19, which calls entersyscall, RawSyscall6, exitsyscall.
var socketWrappers = map[string]struct{ wrapper, enter string }{
	Accept4:    {"syscall.accept4", "syscall.Syscall6"},
	Connect:    {"syscall.connect", "syscall.Syscall"},
	Getsockopt: {"syscall.getsockopt", "syscall.Syscall6"},
}

// SyscallSites are where uprobes in a Go binary see one socket syscall
// wrapper's calls, on instructions the kernel emulates. At each of Calls
// (the CALL of syscall.Syscall or Syscall6) the syscall's arguments are in
// the integer argument registers after the syscall number: the fd in BX
// and the second argument in CX on amd64, R1 and R2 on arm64. At each of
// Returns (AfterCalls) the result is in AX (R0) and the errno in CX (R2).
// Neither sees the fd at the return: a probe there keys what it needs by
// goroutine. The goroutine may resume on another thread after the
// syscall (exitsyscall's slow path), never on another g.
type SyscallSites struct {
	Calls, Returns []Site
}

// SocketSyscallSites finds the sites of Accept4, Connect and Getsockopt in
// f, a program built with goVersion. A wrapper the linker left out (a
// program that never dials has no syscall.connect) has none: the program
// cannot make that call through the syscall package. Before Go 1.19,
// Syscall and Syscall6 were assembly (ABI0) taking their arguments on the
// stack: an error.
func SocketSyscallSites(f *elf.File, funcs FuncLookup, goVersion string) (map[string]SyscallSites, error) {
	if version.Compare(version.Lang(goVersion), "go1.19") < 0 {
		return nil, fmt.Errorf("%s makes syscalls in assembly with arguments on the stack (Go 1.19 made syscall.Syscall6 a Go function)", goVersion)
	}
	out := map[string]SyscallSites{}
	for name, w := range socketWrappers {
		if _, _, ok := funcs(w.wrapper); !ok {
			continue
		}
		calls, returns, err := CallsAndReturns(f, funcs, w.wrapper, w.enter)
		if err != nil {
			return nil, err
		}
		out[name] = SyscallSites{Calls: calls, Returns: returns}
	}
	return out, nil
}

// epollWaits are the runtime's epoll_pwait wrapper as runtime.netpoll
// calls it, by the package it lived in: a Go function (ABIInternal) since
// Go 1.21 (runtime.epollwait, before, was assembly). Its arguments are
// (epfd int32, events []EpollEvent, maxev, waitms int32), its results
// (n int32, errno uintptr).
var epollWaits = []string{
	"internal/runtime/syscall/linux.EpollWait", // Go 1.25+
	"internal/runtime/syscall.EpollWait",       // Go 1.23, 1.24
	"runtime/internal/syscall.EpollWait",       // Go 1.21, 1.22
}

// EpollWaitSites finds where uprobes see the netpoller's epoll_pwait in
// runtime.netpoll: at the call, epfd in AX (R0 on arm64), the events
// array in BX (R1) and the timeout in ms in R8 (R5), the sixth integer
// argument; at the return, the count in AX (R0) and the errno in BX (R1).
func EpollWaitSites(f *elf.File, funcs FuncLookup) (SyscallSites, error) {
	calls, returns, err := CallsAndReturns(f, funcs, "runtime.netpoll", epollWaits...)
	return SyscallSites{Calls: calls, Returns: returns}, err
}
