package proc

import "slices"

// AcceptedFDs lists the fds of pid that are TCP connections it accepted:
// established sockets whose local port is a port some socket of its
// network namespace listens on (/proc/PID/net/tcp and tcp6), sorted. An
// accepted MPTCP connection is not found (its fd's inode is not the
// subflow's).
func AcceptedFDs(pid int) []int32 {
	table, err := tcpTable(pid)
	if err != nil {
		return nil
	}
	listening := map[uint16]bool{}
	for _, s := range table {
		if s.State == "LISTEN" {
			listening[s.LocalPort] = true
		}
	}
	var fds []int32
	for ino, fd := range socketFDs(pid) {
		if s, ok := table[ino]; ok && s.State == "ESTABLISHED" && listening[s.LocalPort] {
			fds = append(fds, fd)
		}
	}
	slices.Sort(fds)
	return fds
}

// Listeners counts the TCP sockets listening in pid's network namespace
// (/proc/PID/net/tcp and tcp6), whoever holds them.
func Listeners(pid int) (int, error) {
	table, err := tcpTable(pid)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range table {
		if s.State == "LISTEN" {
			n++
		}
	}
	return n, nil
}
