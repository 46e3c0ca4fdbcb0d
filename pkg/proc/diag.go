package proc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
)

// TCPSocket is one TCP socket a process holds open.
type TCPSocket struct {
	FD                    int32
	State                 string // "ESTABLISHED", "CLOSE_WAIT", ... as ss names them
	Local, Remote         netip.Addr
	LocalPort, RemotePort uint16
}

// tcpStates are the kernel's TCP states (include/net/tcp_states.h), as
// /proc/net/tcp numbers them.
var tcpStates = map[uint64]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
	11: "CLOSING", 12: "NEW_SYN_RECV",
}

// TCPSockets lists the TCP sockets pid holds open, with their state and
// endpoints: its socket fds matched by inode against /proc/PID/net/tcp
// and tcp6 (its network namespace's sockets). Sorted by fd.
func TCPSockets(pid int) ([]TCPSocket, error) {
	fds := socketFDs(pid)
	byInode, _, err := tcpTable(pid, fds)
	if err != nil {
		return nil, err
	}
	var out []TCPSocket
	for ino, fd := range fds {
		if s, ok := byInode[ino]; ok {
			s.FD = fd
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b TCPSocket) int { return int(a.FD - b.FD) })
	return out, nil
}

// TCPStates counts the TCP sockets pid holds open by state (TCPSockets'
// State).
func TCPStates(pid int) (map[string]int, error) {
	socks, err := TCPSockets(pid)
	if err != nil {
		return nil, err
	}
	states := map[string]int{}
	for _, s := range socks {
		states[s.State]++
	}
	return states, nil
}

// tcpTable reads the TCP sockets of pid's network namespace
// (/proc/PID/net/tcp and tcp6) a line at a time: those whose inodes are
// in want, by inode, and how many sockets listen on each local port. A
// busy host has tens of thousands of sockets, most of them in TIME_WAIT;
// reading the files whole and splitting every line into fields, as this
// did, made tens of MB of garbage at each attach (12,000 sockets raised a
// trace's peak RSS from 34 to 38 MB; the bench's, after its connection
// churn, to 50). Only a wanted socket's line is parsed past its inode and
// state.
func tcpTable(pid int, want map[uint64]int32) (byInode map[uint64]TCPSocket, listening map[uint16]int, err error) {
	byInode, listening = map[uint64]TCPSocket{}, map[uint16]int{}
	read := 0
	var f [10][]byte
	for _, file := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(Path(pid, "net/"+file))
		if err != nil {
			continue
		}
		read++
		r := bufio.NewReaderSize(fh, 64<<10)
		r.ReadSlice('\n') // the header
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 && fields(line, &f) == len(f) {
				st, ok1 := parseUint(f[3], 16)
				ino, ok2 := parseUint(f[9], 10)
				if ok1 && ok2 && st == 10 { // LISTEN
					if _, port, ok := bytes.Cut(f[1], []byte(":")); ok {
						if p, ok := parseUint(port, 16); ok {
							listening[uint16(p)]++
						}
					}
				}
				if _, wanted := want[ino]; ok1 && ok2 && wanted && ino != 0 {
					if s, err := parseTCPLine(st, f[1], f[2]); err == nil {
						byInode[ino] = s
					}
				}
			}
			if err != nil {
				break
			}
		}
		fh.Close()
	}
	if read == 0 {
		return nil, nil, fmt.Errorf("PID %d: cannot read %s", pid, Path(pid, "net/tcp"))
	}
	return byInode, listening, nil
}

// parseTCPLine makes the socket of a /proc/net/tcp line: its state (a
// number) and its local and remote "address:port".
func parseTCPLine(st uint64, local, remote []byte) (TCPSocket, error) {
	var s TCPSocket
	s.State = tcpStates[st]
	if s.State == "" {
		s.State = fmt.Sprintf("state %02X", st)
	}
	var err error
	if s.Local, s.LocalPort, err = parseProcAddr(string(local)); err != nil {
		return s, err
	}
	s.Remote, s.RemotePort, err = parseProcAddr(string(remote))
	return s, err
}

// fields splits line at spaces into f, as strings.Fields would, without
// allocating; it returns how many of f it filled.
func fields(line []byte, f *[10][]byte) int {
	n := 0
	for i := 0; i < len(line) && n < len(f); {
		for i < len(line) && (line[i] == ' ' || line[i] == '\n') {
			i++
		}
		j := i
		for j < len(line) && line[j] != ' ' && line[j] != '\n' {
			j++
		}
		if j > i {
			f[n] = line[i:j]
			n++
		}
		i = j
	}
	return n
}

// parseUint parses b, digits in base 10 or 16, as strconv.ParseUint would
// without making a string of it.
func parseUint(b []byte, base uint64) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		if d >= base {
			return 0, false
		}
		v = v*base + d
	}
	return v, true
}

// socketFDs maps the inode of each socket pid holds open to its fd.
func socketFDs(pid int) map[uint64]int32 {
	dir := Path(pid, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[uint64]int32{}
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		if err != nil {
			continue
		}
		if fd, err := strconv.Atoi(e.Name()); err == nil {
			out[ino] = int32(fd)
		}
	}
	return out
}

// parseProcAddr parses "0100007F:1F90": the address as the kernel's
// 32-bit words in host (little-endian) order, then the port in hex.
func parseProcAddr(s string) (netip.Addr, uint16, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.Addr{}, 0, fmt.Errorf("address %q has no port", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.Addr{}, 0, fmt.Errorf("address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return addr.Unmap(), uint16(port), nil
}

// CgroupFS is where the cgroup file systems are found: the mount points
// in /proc/self/mountinfo are taken relative to it ("" or "/": as they are).
var CgroupFS = ""

// CPUQuota returns the CPU bandwidth limit of pid's cgroup, in CPUs: the
// smallest quota/period of its cgroup and every ancestor (cgroup v2
// cpu.max, else v1 cpu.cfs_quota_us / cpu.cfs_period_us), and the file it
// came from. limited is false when no cgroup on the path sets one. The
// cgroup path comes from /proc/PID/cgroup, which names it relative to
// gonetscope's own cgroup namespace, and the mount from gonetscope's
// /proc/self/mountinfo.
func CPUQuota(pid int) (cpus float64, from string, limited bool, err error) {
	raw, err := os.ReadFile(Path(pid, "cgroup"))
	if err != nil {
		return 0, "", false, err
	}
	mounts, err := os.ReadFile(Root + "/self/mountinfo")
	if err != nil {
		return 0, "", false, err
	}
	var v1, v2 string // the process's cgroup path in each hierarchy
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" && f[1] == "" {
			v2 = f[2]
		} else if slices.Contains(strings.Split(f[1], ","), "cpu") {
			v1 = f[2]
		}
	}
	var dir2, dir1 string
	for _, line := range strings.Split(string(mounts), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		root, mnt := f[3], CgroupFS+f[4]
		switch {
		case g[0] == "cgroup2" && v2 != "" && dir2 == "":
			dir2 = under(mnt, root, v2)
		case g[0] == "cgroup" && v1 != "" && dir1 == "" && slices.Contains(strings.Split(g[2], ","), "cpu"):
			dir1 = under(mnt, root, v1)
		}
	}
	// cgroup v2 with the cpu controller enabled: cpu.max exists.
	if dir2 != "" {
		if _, err := os.Stat(dir2 + "/cpu.max"); err == nil {
			return walkQuota(dir2, func(dir string) (float64, bool, error) {
				b, err := os.ReadFile(dir + "/cpu.max")
				if err != nil {
					return 0, false, err
				}
				f := strings.Fields(string(b))
				if len(f) != 2 {
					return 0, false, fmt.Errorf("%s/cpu.max: %q", dir, b)
				}
				if f[0] == "max" {
					return 0, false, nil
				}
				return ratio(f[0], f[1], dir+"/cpu.max")
			}, "cpu.max")
		}
	}
	if dir1 != "" {
		return walkQuota(dir1, func(dir string) (float64, bool, error) {
			q, err := os.ReadFile(dir + "/cpu.cfs_quota_us")
			if err != nil {
				return 0, false, err
			}
			if strings.TrimSpace(string(q)) == "-1" {
				return 0, false, nil
			}
			p, err := os.ReadFile(dir + "/cpu.cfs_period_us")
			if err != nil {
				return 0, false, err
			}
			return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)), dir+"/cpu.cfs_quota_us")
		}, "cpu.cfs_quota_us")
	}
	return 0, "", false, errors.New("no cgroup cpu controller found (neither cgroup v2 cpu.max nor a v1 cpu hierarchy)")
}

// under is the directory of cgroup path cg in a hierarchy mounted at mnt
// whose root is root; "" when the mount does not show it.
func under(mnt, root, cg string) string {
	if root != "/" {
		if cg != root && !strings.HasPrefix(cg, root+"/") {
			return ""
		}
		cg = strings.TrimPrefix(cg, root)
	}
	return path.Join(mnt, cg)
}

// walkQuota reads the limit of dir and each ancestor up to the
// hierarchy's mount (where the file stops existing) and keeps the smallest.
func walkQuota(dir string, read func(string) (float64, bool, error), file string) (float64, string, bool, error) {
	best, from, limited := math.Inf(1), "", false
	for d := dir; ; d = path.Dir(d) {
		if _, err := os.Stat(d + "/" + file); err != nil {
			break
		}
		cpus, ok, err := read(d)
		if err != nil {
			return 0, "", false, err
		}
		if ok && cpus < best {
			best, from, limited = cpus, d+"/"+file, true
		}
		if d == "/" || d == "." {
			break
		}
	}
	if !limited {
		return 0, "", false, nil
	}
	return best, from, true, nil
}

func ratio(quota, period, file string) (float64, bool, error) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, false, fmt.Errorf("%s: quota %q, period %q", file, quota, period)
	}
	return q / p, true, nil
}
