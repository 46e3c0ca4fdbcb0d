package proc

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
)

// EpollEntry is one fd registered with an epoll instance of a process,
// as /proc/PID/fdinfo/EPFD lists it.
type EpollEntry struct {
	EpFD, FD int32
	Events   uint32
	// Data is the epoll_event.data the process registered it with (for a
	// Go program, its tagged *pollDesc).
	Data uint64
}

// EpollFDEntries lists the fds registered with the process's epoll fd
// epfd; ok is false when epfd is no longer an epoll fd.
func EpollFDEntries(pid int, epfd int32) (ents []EpollEntry, ok bool) {
	name := strconv.Itoa(int(epfd))
	if link, err := os.Readlink(Path(pid, "fd/"+name)); err != nil || link != "anon_inode:[eventpoll]" {
		return nil, false
	}
	raw, err := os.ReadFile(Path(pid, "fdinfo/"+name))
	if err != nil {
		return nil, false
	}
	return ParseEpollFdinfo(epfd, raw), true
}

// EpollEntries lists every fd registered with every epoll instance the
// process holds: no probe, only /proc/PID/fd and /proc/PID/fdinfo.
func EpollEntries(pid int) ([]EpollEntry, error) {
	dir := Path(pid, "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []EpollEntry
	for _, e := range ents {
		epfd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// Not an epoll fd, or closed meanwhile: skipped.
		if es, ok := EpollFDEntries(pid, int32(epfd)); ok {
			out = append(out, es...)
		}
	}
	return out, nil
}

// ParseEpollFdinfo parses the fdinfo of an epoll fd: a line per
// registered fd, "tfd:        7 events:       19 data:     7f…  pos:0 ino:… sdev:…"
// (fs/eventpoll.c, ep_show_fdinfo; events and data in hex).
func ParseEpollFdinfo(epfd int32, raw []byte) []EpollEntry {
	var out []EpollEntry
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[0] != "tfd:" || f[2] != "events:" || f[4] != "data:" {
			continue
		}
		fd, err1 := strconv.ParseInt(f[1], 10, 32)
		ev, err2 := strconv.ParseUint(f[3], 16, 32)
		data, err3 := strconv.ParseUint(f[5], 16, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, EpollEntry{EpFD: epfd, FD: int32(fd), Events: uint32(ev), Data: data})
	}
	return out
}
