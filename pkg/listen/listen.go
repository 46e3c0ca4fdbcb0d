// Package listen loads bpf/listen.bpf.c: a BPF socket iterator that lists
// every TCP listener of the host with its drop counter (sk_drops: SYNs and
// handshakes dropped, mostly on a full accept queue) and its accept queue.
// Nothing is attached to a hook: the kernel walks the sockets when
// Listeners reads the iterator.
package listen

import (
	"fmt"
	"io"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
)

// Listener is one listening TCP socket.
type Listener struct {
	// Inode is the inode of the socket a process holds (for MPTCP, the
	// MPTCP socket, not its TCP subflow): match it with /proc/PID/fd.
	Inode      uint64
	Port       uint16
	Drops      uint64
	Backlog    uint32
	BacklogMax uint32
}

// Iter is the loaded iterator.
type Iter struct {
	coll *ebpf.Collection
	link *link.Iter
}

// Load loads the iterator program.
func Load() (*Iter, error) {
	spec, err := loadListen()
	if err != nil {
		return nil, err
	}
	spec.Maps[listenMapEvents].MaxEntries = uint32(os.Getpagesize()) // unused here
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, bpfobj.LoadError("listen BPF object", err)
	}
	l, err := link.AttachIter(link.IterOptions{Program: coll.Programs["dump_listeners"]})
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("attaching the iter/tcp program: %w", err)
	}
	return &Iter{coll: coll, link: l}, nil
}

// Listeners walks the host's TCP listeners now.
func (it *Iter) Listeners() ([]Listener, error) {
	rd, err := it.link.Open()
	if err != nil {
		return nil, fmt.Errorf("opening the listener iterator: %w", err)
	}
	defer rd.Close()
	raw, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading the listener iterator: %w", err)
	}
	size := int(unsafe.Sizeof(listenTcpListener{}))
	var out []Listener
	for off := 0; off+size <= len(raw); off += size {
		r, err := bpfobj.View[listenTcpListener](raw[off:])
		if err != nil {
			return nil, err
		}
		out = append(out, Listener{Inode: r.Inode, Port: r.Port, Drops: r.Drops, Backlog: r.Backlog, BacklogMax: r.BacklogMax})
	}
	return out, nil
}

// Close unloads the iterator.
func (it *Iter) Close() error {
	it.link.Close()
	it.coll.Close()
	return nil
}
