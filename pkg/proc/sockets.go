package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// SocketInodes lists the inodes of the sockets pid holds open
// (/proc/PID/fd/N -> "socket:[INODE]"). A process that is gone has none.
func SocketInodes(pid int) []uint64 {
	dir := fmt.Sprintf("%s/%d/fd", Root, pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []uint64
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64); err == nil {
			out = append(out, ino)
		}
	}
	return out
}
