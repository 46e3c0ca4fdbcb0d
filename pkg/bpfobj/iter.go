package bpfobj

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachProcessIter attaches a task or task_file iterator program that
// visits the main thread of process pid only (its files are the
// process's), where the kernel takes a task for its task iterators (Linux
// 6.1+; TaskItersByProcess says). An unparametrized iterator visits every
// task on the host. (By process, 6.1 visits every thread and, unlike
// later kernels, their shared files once per thread.)
// cilium/ebpf does not pass the iterator's link info, so this makes the
// link itself (BPF_LINK_CREATE) and lets the library wrap it.
func AttachProcessIter(prog *ebpf.Program, pid uint32) (*link.Iter, error) {
	const (
		cmdLinkCreate = 28 // BPF_LINK_CREATE
		attachIter    = 28 // BPF_TRACE_ITER
	)
	// union bpf_iter_link_info, its task member.
	info := struct {
		tid, pid, pidFD uint32
		_               uint32
	}{tid: pid}
	// The leading fields of union bpf_attr for BPF_LINK_CREATE of an iterator.
	attr := struct {
		progFD, targetFD, attachType, flags uint32
		iterInfo                            uint64
		iterInfoLen                         uint32
		_                                   uint32
	}{
		progFD:      uint32(prog.FD()),
		attachType:  attachIter,
		iterInfo:    uint64(uintptr(unsafe.Pointer(&info))),
		iterInfoLen: uint32(unsafe.Sizeof(info)),
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, cmdLinkCreate, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(&info)
	runtime.KeepAlive(prog)
	if errno != 0 {
		return nil, fmt.Errorf("creating the iterator link for PID %d: %w", pid, errno)
	}
	l, err := link.NewFromFD(int(fd))
	if err != nil {
		unix.Close(int(fd))
		return nil, err
	}
	it, ok := l.(*link.Iter)
	if !ok {
		l.Close()
		return nil, errors.New("the kernel made no iterator link")
	}
	return it, nil
}

// TaskItersByProcess says whether the kernel's task iterators take a
// process (union bpf_iter_link_info has its task member, Linux 6.1+).
// Older kernels ignore the member and visit every task.
var TaskItersByProcess = sync.OnceValue(func() bool {
	spec, err := KernelSpec()
	if err != nil {
		return false
	}
	var u *btf.Union
	if err := spec.TypeByName("bpf_iter_link_info", &u); err != nil {
		return false
	}
	for _, m := range u.Members {
		if m.Name == "task" {
			return true
		}
	}
	return false
})
