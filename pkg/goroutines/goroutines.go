// Package goroutines loads bpf/goroutines.bpf.c: it counts the goroutines
// each traced process creates and ends, by creation site (the function a
// goroutine runs and the go statement that started it), for the
// goroutines summary and goroutine_leak events. Opt-in (--goroutines):
// two uprobes per target, on instructions the kernel emulates.
package goroutines

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
)

// Objects are the loaded programs and maps, and the uprobes per target.
type Objects struct {
	coll  *ebpf.Collection
	links map[int][]link.Link
}

// Load loads the programs; targets is the shared map of traced processes.
func Load(targets *ebpf.Map) (*Objects, error) {
	spec, err := loadGoroutines()
	if err != nil {
		return nil, err
	}
	bpfobj.NoEvents(spec)
	coll, err := bpfobj.NewCollection(spec, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{goroutinesMapTargets: targets},
	})
	if err != nil {
		return nil, bpfobj.LoadError("goroutines BPF object", err)
	}
	return &Objects{coll: coll, links: map[int][]link.Link{}}, nil
}

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	for pid := range o.links {
		o.Detach(pid)
	}
	o.coll.Close()
	return nil
}

// Attach places the two uprobes in the running Go process p (its
// executable through /proc/PID/exe, found with its symbol table).
func (o *Objects) Attach(p *goruntime.Process) error {
	pid, bin, tab, exe := p.PID, p.Bin, p.Syms, p.ExePath()
	if bin.Offsets.GGoid == 0 || bin.Offsets.GStartpc == 0 || bin.Offsets.GGopc == 0 {
		return errors.New("runtime.g offsets unknown")
	}
	f, err := p.OpenExe()
	if err != nil {
		return err
	}
	defer f.Close()
	create, exit, err := Probes(f, tab)
	if err != nil {
		return err
	}
	l := goroutinesG_layout{Goid: bin.Offsets.GGoid, Startpc: bin.Offsets.GStartpc, Gopc: bin.Offsets.GGopc}
	if err := o.coll.Maps[goroutinesMapG_layouts].Put(uint32(pid), &l); err != nil {
		return err
	}
	ex, err := link.OpenExecutable(exe)
	if err != nil {
		return err
	}
	for _, p := range []struct {
		prog  string
		probe Probe
	}{{goroutinesProgGoroutineCreated, create}, {goroutinesProgGoroutineExited, exit}} {
		up, err := ex.Uprobe("", o.coll.Programs[p.prog], &link.UprobeOptions{Address: p.probe.FileOffset, PID: pid})
		if err != nil {
			o.Detach(pid)
			return fmt.Errorf("attaching uprobe at %#x (%s): %w", p.probe.Addr, p.probe.Inst, err)
		}
		o.links[pid] = append(o.links[pid], up)
	}
	return nil
}

// Detach removes pid's uprobes and forgets its goroutines.
func (o *Objects) Detach(pid int) {
	bpfobj.CloseAll(o.links[pid])
	delete(o.links, pid)
	o.coll.Maps[goroutinesMapG_layouts].Delete(uint32(pid))
	bpfobj.DeleteWhere[goroutinesGoroutineKey, goroutinesGoroutine](o.coll.Maps[goroutinesMapLive],
		func(k *goroutinesGoroutineKey) bool { return k.Pid == uint32(pid) })
	bpfobj.DeleteWhere[goroutinesSiteKey, goroutinesSiteCount](o.coll.Maps[goroutinesMapSites],
		func(k *goroutinesSiteKey) bool { return k.Pid == uint32(pid) })
}

// Site is where goroutines come from: the function they run (startpc) and
// the go statement (gopc), runtime addresses.
type Site struct {
	StartPC, GoPC uint64
}

// Count is what a site has done since the attach.
type Count struct {
	Created, Exited uint64
}

// Live is Created - Exited.
func (c Count) Live() int64 { return int64(c.Created) - int64(c.Exited) }

// Sites returns pid's creation sites and their counts.
func (o *Objects) Sites(pid int) (map[Site]Count, error) {
	out := map[Site]Count{}
	var sk goroutinesSiteKey
	var c goroutinesSiteCount
	it := o.coll.Maps[goroutinesMapSites].Iterate()
	for it.Next(&sk, &c) {
		if sk.Pid == uint32(pid) {
			out[Site{sk.Startpc, sk.Gopc}] = Count{c.Created, c.Exited}
		}
	}
	return out, it.Err()
}

// Goroutine is one live goroutine created since the attach.
type Goroutine struct {
	Goid     uint64
	CreateNs uint64 // bpf_ktime_get_boot_ns at creation
	G        uint64 // its runtime.g in the target
}

// Oldest returns up to n of the longest-lived goroutines of a site.
func (o *Objects) Oldest(pid int, s Site, n int) ([]Goroutine, error) {
	var gs []Goroutine
	var gk goroutinesGoroutineKey
	var g goroutinesGoroutine
	it := o.coll.Maps[goroutinesMapLive].Iterate()
	for it.Next(&gk, &g) {
		if gk.Pid == uint32(pid) && g.Startpc == s.StartPC && g.Gopc == s.GoPC {
			gs = append(gs, Goroutine{gk.Goid, g.T_create, g.G})
		}
	}
	sort.Slice(gs, func(i, j int) bool { return gs[i].CreateNs < gs[j].CreateNs })
	return gs[:min(n, len(gs))], it.Err()
}

// Untracked counts creations that found the maps full.
func (o *Objects) Untracked() uint64 {
	var per []uint64
	if err := o.coll.Maps[goroutinesMapUntracked].Lookup(uint32(0), &per); err != nil {
		return 0
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}
