package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Path is the file name under pid's /proc directory (honouring Root).
func Path(pid int, name string) string {
	return fmt.Sprintf("%s/%d/%s", Root, pid, name)
}

// NetNS identifies pid's network namespace by its inode.
func NetNS(pid int) (uint64, error) {
	return nsInode(Path(pid, "ns/net"))
}

// TcpExt reads the TcpExt counters (ListenOverflows, ListenDrops, ...) of
// pid's network namespace: /proc/PID/net/netstat shows the namespace of
// the process, not the reader's.
func TcpExt(pid int) (map[string]uint64, error) {
	raw, err := os.ReadFile(Path(pid, "net/netstat"))
	if err != nil {
		return nil, err
	}
	return ParseTcpExt(string(raw))
}

// ParseTcpExt parses the TcpExt lines of a /proc/net/netstat text.
func ParseTcpExt(netstat string) (map[string]uint64, error) {
	lines := strings.Split(netstat, "\n")
	for i := 0; i+1 < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "TcpExt:") || !strings.HasPrefix(lines[i+1], "TcpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		out := map[string]uint64{}
		for j := 1; j < len(names) && j < len(vals); j++ {
			v, err := strconv.ParseUint(vals[j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("netstat TcpExt %s: %w", names[j], err)
			}
			out[names[j]] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("no TcpExt counters in netstat")
}
