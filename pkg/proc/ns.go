package proc

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// initPIDNamespaceInode is the inode of the host's (the initial) PID
// namespace: PROC_PID_INIT_INO in include/linux/proc_ns.h, the same on every
// kernel.
const initPIDNamespaceInode = 0xEFFFFFFC

// Namespaces says where a process lives: the namespaces a container runtime
// put it in, and its ids inside them.
type Namespaces struct {
	// Inodes of /proc/PID/ns/{pid,mnt,net,cgroup}: equal inodes, same
	// namespace. Zero when unreadable.
	PID, Mnt, Net, Cgroup uint64
	// NSpid is the process's id in each PID namespace from the reader's
	// (the host's) down to its own, as /proc/PID/status says it. One entry
	// outside containers.
	NSpid []int
	// ContainerID is the 64-hex-digit id in the process's cgroup path
	// (docker, containerd, CRI-O, podman), or "".
	ContainerID string
}

// InPIDNamespace reports whether the process has a PID namespace of its
// own below the reader's: its thread ids there differ from the host's.
func (n Namespaces) InPIDNamespace() bool { return len(n.NSpid) > 1 }

// NsPID is the process's id in its own PID namespace (its PID outside
// containers).
func (n Namespaces) NsPID() int {
	if len(n.NSpid) == 0 {
		return 0
	}
	return n.NSpid[len(n.NSpid)-1]
}

// ReadNamespaces reads pid's namespaces and container id.
func ReadNamespaces(pid int) (Namespaces, error) {
	var n Namespaces
	status, err := os.ReadFile(Path(pid, "status"))
	if errors.Is(err, os.ErrNotExist) {
		return n, fmt.Errorf("PID %d: %w", pid, ErrNoProcess)
	}
	if err != nil {
		return n, err
	}
	if n.NSpid, err = nsIDs(status, "NSpid:"); err != nil {
		return n, fmt.Errorf("PID %d: %w", pid, err)
	}
	for _, ns := range []struct {
		name string
		ino  *uint64
	}{{"pid", &n.PID}, {"mnt", &n.Mnt}, {"net", &n.Net}, {"cgroup", &n.Cgroup}} {
		*ns.ino, _ = nsInode(Path(pid, "ns/"+ns.name))
	}
	if cg, err := os.ReadFile(Path(pid, "cgroup")); err == nil {
		n.ContainerID = ContainerID(string(cg))
	}
	return n, nil
}

// nsIDs parses a status line such as "NSpid:\t4242\t1". A kernel without
// the line (before 4.1) has no nested ids to give: nil.
func nsIDs(status []byte, key string) ([]int, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, key)
		if !ok {
			continue
		}
		var ids []int
		for _, f := range strings.Fields(rest) {
			id, err := strconv.Atoi(f)
			if err != nil || id <= 0 {
				return nil, fmt.Errorf("status %s %q is not a list of ids", key, rest)
			}
			ids = append(ids, id)
		}
		return ids, nil
	}
	return nil, nil
}

// nsInode reads the inode a /proc/PID/ns/X link names ("net:[4026531840]").
func nsInode(path string) (uint64, error) {
	link, err := os.Readlink(path)
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(link, ":[")
	if !ok {
		return 0, fmt.Errorf("%s -> %q: not a namespace link", path, link)
	}
	return strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
}

// InHostPIDNamespace reports whether the calling process sees the host's
// PIDs: it lives in the initial PID namespace. A tracer in a container's PID
// namespace cannot name other containers' processes, and the kernel's ids
// are not its own.
func InHostPIDNamespace() (bool, error) {
	ino, err := nsInode(Root + "/self/ns/pid")
	if err != nil {
		return false, err
	}
	return ino == initPIDNamespaceInode, nil
}

// containerIDs are the cgroup path forms of the common runtimes:
// /docker/ID, /system.slice/docker-ID.scope, cri-containerd-ID.scope,
// crio-ID.scope, libpod-ID.scope, /kubepods/.../ID.
var containerIDs = regexp.MustCompile(`(?:^|[/-])([0-9a-f]{64})(?:\.scope)?(?:/|$)`)

// ContainerID finds the container id in the contents of /proc/PID/cgroup:
// the last 64-hex-digit id in any hierarchy's path, or "".
func ContainerID(cgroup string) string {
	id := ""
	for _, line := range strings.Split(cgroup, "\n") {
		// hierarchy-ID:controllers:path; the path may hold colons.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, m := range containerIDs.FindAllStringSubmatch(parts[2], -1) {
			id = m[1]
		}
	}
	return id
}

// HostTID turns nsTID, a thread id of pid as pid itself sees it (in its own
// PID namespace, such as the Go runtime's m.procid), into the host's id of
// that thread, by reading each thread's NSpid. Outside a PID namespace the
// two are equal.
func HostTID(pid int, ns Namespaces, nsTID int) (int, error) {
	if !ns.InPIDNamespace() {
		return nsTID, nil
	}
	dir := Path(pid, "task")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		status, err := os.ReadFile(dir + "/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		ids, err := nsIDs(status, "NSpid:")
		if err == nil && len(ids) > 0 && ids[len(ids)-1] == nsTID {
			return strconv.Atoi(e.Name())
		}
	}
	return 0, fmt.Errorf("PID %d has no thread %d in its PID namespace", pid, nsTID)
}
