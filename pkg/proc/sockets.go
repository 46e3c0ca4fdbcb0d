package proc

import (
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// AcceptedFDs lists the fds of pid that are TCP connections it accepted:
// established sockets whose local port is a port some socket of its
// network namespace listens on (/proc/PID/net/tcp and tcp6), sorted. An
// accepted MPTCP connection is not found (its fd's inode is not the
// subflow's).
func AcceptedFDs(pid int) []int32 {
	fds := slices.Collect(maps.Values(AcceptedInodes(pid)))
	slices.Sort(fds)
	return fds
}

// AcceptedInodes maps the inode of each TCP connection pid accepted (as
// AcceptedFDs finds them) to its fd.
func AcceptedInodes(pid int) map[uint64]int32 {
	fds := socketFDs(pid)
	table, listening, err := tcpTable(pid, fds)
	if err != nil {
		return nil
	}
	out := map[uint64]int32{}
	for ino, fd := range fds {
		if s, ok := table[ino]; ok && s.State == "ESTABLISHED" && listening[s.LocalPort] > 0 {
			out[ino] = fd
		}
	}
	return out
}

// Listeners counts the TCP sockets listening in pid's network namespace
// (/proc/PID/net/tcp and tcp6), whoever holds them.
func Listeners(pid int) (int, error) {
	_, listening, err := tcpTable(pid, nil)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range listening {
		n += c
	}
	return n, nil
}

// soAcceptCon is __SO_ACCEPTCON, the Flags bit of a listening socket in
// /proc/net/unix.
const soAcceptCon = 1 << 16

// UnixListeners lists the fds of the unix-domain sockets pid holds that
// listen (/proc/PID/net/unix, matched by inode), sorted.
func UnixListeners(pid int) []int32 {
	raw, err := os.ReadFile(Path(pid, "net/unix"))
	if err != nil {
		return nil
	}
	fds := socketFDs(pid)
	var out []int32
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		// Num RefCount Protocol Flags Type St Inode [Path]
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&soAcceptCon == 0 {
			continue
		}
		ino, err := strconv.ParseUint(f[6], 10, 64)
		if err != nil {
			continue
		}
		if fd, ok := fds[ino]; ok {
			out = append(out, fd)
		}
	}
	slices.Sort(out)
	return out
}
