package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// AcceptedFDs lists the fds of pid that are TCP connections it accepted:
// established sockets whose local port is a port some socket of its
// network namespace listens on (/proc/PID/net/tcp and tcp6). An accepted
// MPTCP connection is not found (its fd's inode is not the subflow's).
func AcceptedFDs(pid int) []int32 {
	listening := map[uint64]bool{}     // local ports in LISTEN
	established := map[uint64]uint64{} // inode -> local port
	for _, file := range []string{"tcp", "tcp6"} {
		raw, err := os.ReadFile(fmt.Sprintf("%s/%d/net/%s", Root, pid, file))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			_, portHex, ok := strings.Cut(f[1], ":")
			port, err := strconv.ParseUint(portHex, 16, 16)
			if !ok || err != nil {
				continue
			}
			switch f[3] {
			case "0A": // TCP_LISTEN
				listening[port] = true
			case "01": // TCP_ESTABLISHED
				if ino, err := strconv.ParseUint(f[9], 10, 64); err == nil && ino != 0 {
					established[ino] = port
				}
			}
		}
	}
	dir := fmt.Sprintf("%s/%d/fd", Root, pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var fds []int32
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		if err != nil {
			continue
		}
		if port, ok := established[ino]; ok && listening[port] {
			if fd, err := strconv.Atoi(e.Name()); err == nil {
				fds = append(fds, int32(fd))
			}
		}
	}
	return fds
}
