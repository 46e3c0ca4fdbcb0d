package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Syscall names the system call thread tid of pid is in, from
// /proc/PID/task/TID/syscall; "" when it is not in one. tid is the thread's
// id as pid sees it (the Go runtime's m.procid): in a container, its id in
// the container's PID namespace, which is mapped to the host's here.
func Syscall(pid int, tid uint32) string {
	ns, err := ReadNamespaces(pid)
	if err != nil {
		return ""
	}
	host, err := HostTID(pid, ns, int(tid))
	if err != nil {
		return ""
	}
	raw, err := os.ReadFile(Path(pid, fmt.Sprintf("task/%d/syscall", host)))
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
