// Package acceptq loads bpf/acceptq.bpf.c: the accept queues of the traced
// processes' TCP listeners. It reports their overflows and drops
// (listen_overflow), attributed to the goroutines that accept on them, and
// lists the listeners for the metrics.
//
// Its BPF task_file iterator is the one listener iterator: once per
// interval it reads every traced listener's drop counter (sk_drops), its
// queue depth and the accept counters the tracepoints keep. A rise of the
// drop counter makes gonetscope read the namespace's TcpExtListenOverflows
// and TcpExtListenDrops, which count exactly, and split their rise among
// the namespace's listeners (see Sample). Where the kernel allows fentry
// or kprobes, a hook on the drop itself counts each listener's overflows.
package acceptq

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gonetscope/gonetscope/pkg/bpfobj"
	"github.com/gonetscope/gonetscope/pkg/event"
	"github.com/gonetscope/gonetscope/pkg/goruntime"
	"github.com/gonetscope/gonetscope/pkg/proc"
)

// Sampled is the mechanism name when no drop hook attached: the drop
// counters are sampled by the iterator.
const Sampled = "iter/task_file"

// dropHooks count each listener's overflows where the kernel allows a hook
// on the drop: all three functions in one family, or none.
var dropHooks = []bpfobj.Candidate{
	{Family: bpfobj.HooksFentry, Mechanism: bpfobj.HooksFentry, Probes: []bpfobj.Probe{
		{Prog: acceptqProgFentryTcpConnRequest, Attach: bpfobj.Tracing},
		{Prog: acceptqProgFentryTcpV4SynRecvSock, Attach: bpfobj.Tracing},
		{Prog: acceptqProgFentryTcpV6SynRecvSock, Attach: bpfobj.Tracing},
	}},
	{Family: bpfobj.HooksKprobe, Mechanism: bpfobj.HooksKprobe, Probes: []bpfobj.Probe{
		{Prog: acceptqProgKprobeTcpConnRequest, Attach: bpfobj.Kprobe("tcp_conn_request")},
		{Prog: acceptqProgKprobeTcpV4SynRecvSock, Attach: bpfobj.Kprobe("tcp_v4_syn_recv_sock")},
		{Prog: acceptqProgKprobeTcpV6SynRecvSock, Attach: bpfobj.Kprobe("tcp_v6_syn_recv_sock")},
	}},
}

// Options change the object before it is loaded.
type Options struct {
	// Targets is the shared map of traced processes (netpoll.Objects.Targets).
	Targets *ebpf.Map
	// Parks is netpoll's map of parked goroutines (netpoll.Objects.Parks).
	Parks *ebpf.Map
	// CallArgs is the shared map of the socket calls' arguments
	// (netpoll.Objects.CallArgs).
	CallArgs *ebpf.Map
	// Hooks is bpfobj.HooksAuto (a drop hook if the kernel allows one), or a
	// family to use for the drop hook. A family the kernel refuses leaves
	// the drops sampled, and Mechanism says so: unlike the tcp hooks, the
	// drops are counted either way.
	Hooks string
}

// Objects are the loaded programs and maps and the per-listener state
// between samples. Sample, Baseline and Forget may be called from
// different goroutines.
type Objects struct {
	coll     *ebpf.Collection
	dropHook *bpfobj.Attached // nil: the drops are sampled
	calls    *bpfobj.Attached // accept4's end with fexit; nil: its tracepoint
	// syscalls is that tracepoint, attached while a target needs it.
	syscalls *bpfobj.SyscallLinks
	links    []link.Link
	// The listener iterator: one per target where the kernel's task
	// iterators take a process (6.1+), so that a scan visits the
	// targets' files only; else one over every file on the host.
	iterMu sync.Mutex
	iter   *link.Iter
	iters  map[uint32]*link.Iter
	// mechanism counts the drops: "fentry" or "kprobe" (the drop hook), or
	// Sampled.
	mechanism string

	mu        sync.Mutex
	listeners map[listenerID]*listenerState
	baselined map[uint32]bool   // PIDs whose listeners existed at attach
	netns     map[uint32]uint64 // PID -> its network namespace
	spaces    map[uint64]*nsState
	runtimes  map[uint32]*goruntime.Process
	noRuntime map[uint32]error
	// stacks is each goroutine's stack at its latest accept (NoteAccept),
	// for the acceptors in listen_overflow.
	stacks map[acceptorID][]event.Frame
}

// acceptorID is a goroutine of a traced process.
type acceptorID struct {
	pid  uint32
	goid uint64
}

// listenerID is one listener: the fd in a process and the socket behind it
// (an fd number reused for another listener is another listener).
type listenerID struct {
	pid uint32
	fd  int32
	sk  uint64
}

type listenerState struct {
	// last is the previous sample: the start of the next interval.
	last acceptqListenerRec
	// baseDrops is sk_drops when gonetscope first saw the listener (0 for
	// one created after attach); reported is what was reported since.
	baseDrops uint64
	reported  counts
	// settle counts down the samples after its sk_drops last rose in which
	// the namespace's counters are read again: the kernel counts a drop in
	// sk_drops and the namespace a few instructions apart.
	settle  int
	netns   uint64
	present bool
	// held: the last sample's event was held back one interval because
	// its verdict could not be told yet (undecided).
	held bool
}

// settleSamples is how many samples after a rise of sk_drops the
// namespace's counters are still read.
const settleSamples = 3

// Load loads the programs and maps into the kernel and attaches them.
func Load(opts Options) (*Objects, error) {
	family := cmp.Or(opts.Hooks, bpfobj.HooksAuto)
	if err := bpfobj.CheckHooks(family); err != nil {
		return nil, err
	}
	spec, err := loadAcceptq()
	if err != nil {
		return nil, err
	}
	bpfobj.NoEvents(spec)
	base := bpfobj.Without(spec, append(bpfobj.CandidateProgs(dropHooks), bpfobj.CandidateProgs(bpfobj.SyscallsFentry(syscallHooks))...)...)
	coll, err := bpfobj.NewCollection(base, ebpf.CollectionOptions{
		MapReplacements: map[string]*ebpf.Map{acceptqMapTargets: opts.Targets, acceptqMapParks: opts.Parks, acceptqMapSavedCalls: opts.CallArgs},
	})
	if err != nil {
		return nil, bpfobj.LoadError("acceptq BPF object", err)
	}
	o := &Objects{
		coll:      coll,
		listeners: map[listenerID]*listenerState{},
		baselined: map[uint32]bool{},
		netns:     map[uint32]uint64{},
		spaces:    map[uint64]*nsState{},
		runtimes:  map[uint32]*goruntime.Process{},
		noRuntime: map[uint32]error{},
		stacks:    map[acceptorID][]event.Frame{},
		mechanism: Sampled,
	}
	if o.calls, o.links, o.syscalls, err = bpfobj.AttachTracepointsAndSyscalls(spec, base, coll, syscallHooks, family); err != nil {
		o.Close()
		return nil, err
	}
	if bpfobj.TaskItersByProcess() {
		o.iters = map[uint32]*link.Iter{}
	} else if o.iter, err = link.AttachIter(link.IterOptions{Program: coll.Programs[acceptqProgAcceptqListeners]}); err != nil {
		o.Close()
		return nil, fmt.Errorf("attaching the task_file iterator: %w", err)
	}
	o.attachDropHook(spec, family)
	return o, nil
}

// syscallHooks are the ends of accept4 (the acceptors' records).
var syscallHooks = []bpfobj.SyscallHook{{Tracing: acceptqProgAcceptqFexitSysAccept4,
	Uprobe: acceptqProgAcceptqUprobeAccept4Return, At: bpfobj.CallPoint{Syscall: goruntime.Accept4, Return: true},
	Tracepoint: acceptqProgAcceptqExitAccept4}}

// Trace says whether a target needs accept4's syscall tracepoint, which
// serves where neither fentry nor a uprobe does: it is attached only
// while one does.
func (o *Objects) Trace(on bool) error { return o.syscalls.Trace(on) }

// CallUprobes is the program at accept4's returns for uprobes in a
// target (netpoll.Objects.CallUprobes); nil where fentry serves.
func (o *Objects) CallUprobes() []bpfobj.CallUprobe {
	if o.calls != nil {
		return nil
	}
	return bpfobj.CallUprobes(o.coll, syscallHooks)
}

// CallsMechanism says how accept4 is hooked (bpfobj.SocketCalls).
func (o *Objects) CallsMechanism() string { return bpfobj.CallsMechanism(o.calls) }

// attachDropHook attaches the first drop hook family the kernel accepts
// for all three functions (Debian's 6.1 refuses fentry on
// tcp_v4_syn_recv_sock and takes kprobes), or none: then the drop counters
// are sampled. A forced family the kernel refuses is no error here, since
// the drops are counted either way.
func (o *Objects) attachDropHook(spec *ebpf.CollectionSpec, family string) {
	if a, _ := bpfobj.AttachFirst(spec, o.coll.Maps, dropHooks, family); a != nil {
		o.dropHook = a
		o.mechanism = a.Mechanism
	}
}

// Mechanism says how drops are counted: "fentry" or "kprobe" (a hook on
// the drop), or Sampled (the drop counters, read every interval).
func (o *Objects) Mechanism() string { return o.mechanism }

// Close detaches and unloads everything.
func (o *Objects) Close() error {
	if o.iter != nil {
		o.iter.Close()
	}
	for _, it := range o.iters {
		it.Close()
	}
	if o.dropHook != nil {
		o.dropHook.Close()
	}
	if o.calls != nil {
		o.calls.Close()
	}
	o.syscalls.Close()
	bpfobj.CloseAll(o.links)
	o.coll.Close()
	return nil
}

// scan runs the iterators once: every TCP listener of every traced process.
func (o *Objects) scan() ([]acceptqListenerRec, error) {
	o.iterMu.Lock()
	defer o.iterMu.Unlock()
	if o.iters == nil {
		return readListeners(o.iter)
	}
	var recs []acceptqListenerRec
	for _, pid := range slices.Sorted(maps.Keys(o.iters)) {
		r, err := readListeners(o.iters[pid])
		if err != nil {
			return nil, err
		}
		recs = append(recs, r...)
	}
	// A kernel that visits the shared files once per thread repeats them.
	seen := map[listenerID]bool{}
	return slices.DeleteFunc(recs, func(r acceptqListenerRec) bool {
		id := listenerID{r.Pid, r.Fd, r.Sk}
		dup := seen[id]
		seen[id] = true
		return dup
	}), nil
}

// iterate starts (on) or stops the listener iterator of pid, where there
// is one per process.
func (o *Objects) iterate(pid uint32, on bool) error {
	o.iterMu.Lock()
	defer o.iterMu.Unlock()
	if o.iters == nil {
		return nil
	}
	if it := o.iters[pid]; it != nil && !on {
		it.Close()
		delete(o.iters, pid)
	}
	if o.iters[pid] != nil || !on {
		return nil
	}
	it, err := bpfobj.AttachProcessIter(o.coll.Programs[acceptqProgAcceptqListeners], pid)
	if err != nil {
		return fmt.Errorf("attaching the task_file iterator: %w", err)
	}
	o.iters[pid] = it
	return nil
}

// readListeners runs it once.
func readListeners(it *link.Iter) ([]acceptqListenerRec, error) {
	rd, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("running the listener iterator: %w", err)
	}
	defer rd.Close()
	raw, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("reading the listener iterator: %w", err)
	}
	var recs []acceptqListenerRec
	for len(raw) > 0 {
		r, err := bpfobj.View[acceptqListenerRec](raw)
		if err != nil {
			return nil, err
		}
		recs = append(recs, *r)
		raw = raw[unsafe.Sizeof(*r):]
	}
	return recs, nil
}

// Baseline records the listeners pid has now, so that only drops from now
// on are reported. Call it right after pid is added to the targets map.
func (o *Objects) Baseline(pid uint32) (err error) {
	if err := o.iterate(pid, true); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			o.iterate(pid, false)
		}
	}()
	recs, err := o.scan()
	if err != nil {
		return err
	}
	ns, err := proc.NetNS(int(pid))
	if err != nil {
		return fmt.Errorf("reading the network namespace of PID %d: %w", pid, err)
	}
	c, err := readCounts(pid)
	if err != nil {
		return fmt.Errorf("reading the listen counters of PID %d's network namespace: %w", pid, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.baselined[pid] = true
	o.netns[pid] = ns
	if _, ok := o.spaces[ns]; !ok {
		o.spaces[ns] = &nsState{base: c, now: c, ok: true}
	}
	for _, r := range recs {
		if r.Pid != pid {
			continue
		}
		id := listenerID{r.Pid, r.Fd, r.Sk}
		if _, ok := o.listeners[id]; !ok {
			o.listeners[id] = &listenerState{last: r, baseDrops: r.Drops, netns: ns}
		}
	}
	return nil
}

// Forget drops the state of pid's listeners and the stacks of its
// acceptors (pid was detached, or replaced its image by exec).
func (o *Objects) Forget(pid uint32) {
	o.iterate(pid, false)
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.baselined, pid)
	delete(o.netns, pid)
	delete(o.runtimes, pid)
	delete(o.noRuntime, pid)
	for id := range o.stacks {
		if id.pid == pid {
			delete(o.stacks, id)
		}
	}
	for id, st := range o.listeners {
		if id.pid == pid {
			o.gone(id, st)
		}
	}
}

// gone forgets a closed listener, keeping what it reported so that its
// namespace's later overflows are not given to the others twice.
func (o *Objects) gone(id listenerID, st *listenerState) {
	if ns := o.spaces[st.netns]; ns != nil {
		ns.reported.overflows += st.reported.overflows
		ns.reported.drops += st.reported.drops
	}
	delete(o.listeners, id)
}

// Sample reads every traced listener and returns a listen_overflow event
// for each that has overflows or drops not yet reported. comms names the
// traced processes for the event header.
//
// A listener's sk_drops is not its overflow count: the kernel adds to it
// once per dropped SYN (tcp_listendrop), twice per overflowed final ACK
// (tcp_listendrop in tcp_v4_syn_recv_sock, then sk_drops_add at
// discard_and_relse in tcp_v4_rcv), and once per other segment
// tcp_check_req refuses. Its namespace's TcpExtListenOverflows and
// TcpExtListenDrops count exactly, for all the namespace's listeners. So
// the overflows (and the drops) reported for a namespace's listeners add
// up to the namespace's counter since attach, split among the listeners
// whose sk_drops rose by their sk_drops; with the drop hook, each
// listener's overflows are the hook's own count.
//
// An overflow seen while the acceptor is parked, connections wait in the
// queue and the netpoller has not reported the listener ready yet could be
// either verdict: a healthy acceptor about to be woken (backlog_too_small)
// or one the scheduler will not run (acceptor_starved). Such an event is
// held back one interval, which then tells them apart; final (the last
// sample before detaching) holds nothing back.
func (o *Objects) Sample(clock bpfobj.Clock, comms map[uint32]string, final bool) ([]event.Event, error) {
	recs, err := o.scan()
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, st := range o.listeners {
		st.present = false
	}
	for _, ns := range o.spaces {
		ns.ok = false
	}
	type seen struct {
		id  listenerID
		st  *listenerState
		rec acceptqListenerRec
	}
	byNS := map[uint64][]seen{}
	for _, r := range recs {
		if !o.baselined[r.Pid] {
			continue // attached but not baselined yet
		}
		id := listenerID{r.Pid, r.Fd, r.Sk}
		st, ok := o.listeners[id]
		if !ok {
			// Created after attach: its drop counter started at zero
			// then. Accept counters are kept per fd number: start from
			// their values now.
			st = &listenerState{netns: o.netns[r.Pid]}
			st.last.Accepts, st.last.Eagains, st.last.AcceptErrors = r.Accepts, r.Eagains, r.AcceptErrors
			st.last.Handshakes, st.last.Now = r.Handshakes, r.Now
			o.listeners[id] = st
		}
		st.present = true
		byNS[st.netns] = append(byNS[st.netns], seen{id, st, r})
	}
	var evs []event.Event
	for nsID, ls := range byNS {
		s := make([]uint64, len(ls))
		repOv := make([]uint64, len(ls))
		repDrops := make([]uint64, len(ls))
		news := false
		for i, l := range ls {
			s[i] = sub(l.rec.Drops, l.st.baseDrops)
			repOv[i], repDrops[i] = l.st.reported.overflows, l.st.reported.drops
			if l.rec.Drops != l.st.last.Drops {
				l.st.settle = settleSamples
			} else if l.st.settle > 0 {
				l.st.settle--
			}
			news = news || (l.st.settle > 0 && s[i] > repDrops[i]) || l.rec.HookDrops > repOv[i]
		}
		if !news {
			for _, l := range ls {
				l.st.last = l.rec
			}
			continue
		}
		// Read the namespace's counters only when there is something to
		// report: most samples have nothing.
		ns := o.spaces[nsID]
		if ns != nil {
			if c, err := readCounts(ls[0].rec.Pid); err == nil {
				ns.now, ns.ok = c, true
			}
		}
		// Without the namespace's counters (its process just went),
		// sk_drops alone, an upper bound.
		totalOv, totalDrops := ^uint64(0), ^uint64(0)
		if ns != nil && ns.ok {
			totalOv = sub(sub(ns.now.overflows, ns.base.overflows), ns.reported.overflows)
			totalDrops = sub(sub(ns.now.drops, ns.base.drops), ns.reported.drops)
		}
		overflows := allocate(totalOv, s, repOv)
		drops := allocate(totalDrops, s, repDrops)
		if o.mechanism != Sampled {
			hook := make([]uint64, len(ls))
			sks := map[uint64]bool{}
			for i, l := range ls {
				hook[i] = l.rec.HookDrops
				sks[l.rec.Sk] = true
			}
			// Read the namespace's socket table only when the namespace
			// counted more than the hook.
			alone := func() bool {
				n, err := proc.Listeners(int(ls[0].rec.Pid))
				return err == nil && n == len(sks)
			}
			overflows = hookOverflows(totalOv, s, repOv, hook, alone)
		}
		for i, l := range ls {
			if overflows[i] > 0 || drops[i] > 0 {
				if !final && !l.st.held && undecided(&l.st.last, &l.rec) {
					// Nothing is reported or moved on: the next sample
					// reports these drops over both intervals.
					l.st.held = true
					continue
				}
				l.st.held = false
				e := o.explain(clock, comms[l.rec.Pid], &l.st.last, &l.rec)
				e.Overflows, e.Drops = overflows[i], drops[i]
				e.SkDrops = sub(l.rec.Drops, l.st.last.Drops)
				l.st.reported.overflows += overflows[i]
				l.st.reported.drops += drops[i]
				evs = append(evs, e)
			}
			l.st.last = l.rec
		}
	}
	for id, st := range o.listeners {
		if !st.present {
			o.gone(id, st)
		}
	}
	return evs, nil
}

// hookOverflows is what each of a namespace's traced listeners reports
// with the drop hook: what the hook counted since its last report, and
// where no other listener lives in the namespace (alone), a share of what
// the namespace counted beyond that. The hook misses an overflow now and
// then: on Debian's 6.1 (one CPU, under emulation) the namespace counted
// 2 or 3 more than all three hooked functions saw in 2 of 10 runs of
// 500-800 overflows. Where the namespace's listeners are all traced, its
// counter is theirs alone, so the rest is split among them by their
// sk_drops as when sampled (and a count above it is cut down to it), and
// the reports add up to the counter exactly. total (cumulative, like
// reported), s and reported are as for allocate; hook is each listener's
// count from the hook.
func hookOverflows(total uint64, s, reported, hook []uint64, alone func() bool) []uint64 {
	out := make([]uint64, len(s))
	slack := make([]uint64, len(s))
	var counted uint64
	for i := range s {
		out[i] = sub(hook[i], reported[i])
		counted += reported[i] + out[i]
		slack[i] = sub(s[i], reported[i]+out[i])
	}
	if total == ^uint64(0) || total == counted || !alone() {
		return out
	}
	if total < counted {
		// The hook counted more than the kernel: its check of the queue
		// at the function's entry can race with an accept on another
		// CPU. The namespace's count is split by the hook's.
		cum := make([]uint64, len(s))
		for i := range s {
			cum[i] = reported[i] + out[i]
		}
		return allocate(total, cum, reported)
	}
	rest := allocate(total-counted, slack, make([]uint64, len(s)))
	for i := range out {
		out[i] += rest[i]
	}
	return out
}

// NoteAccept remembers the stack of a goroutine's latest accept
// (tcp_accept, or a netpoll_wait in mode accept), for the acceptors of the
// listen_overflow events Sample builds. Call it with every event, in the
// order they are written; it ignores all but accepts with a stack. The
// accepts of a PID not baselined (not yet attached, or forgotten while its
// last events were on their way) are not kept.
func (o *Objects) NoteAccept(ev event.Event) {
	var h *event.Header
	switch e := ev.(type) {
	case *event.TCPAccept:
		h = &e.Header
	case *event.NetpollWait:
		if e.Mode != "accept" {
			return
		}
		h = &e.Header
	default:
		return
	}
	if !h.HasGoid || h.Stack == nil || len(h.Stack.Frames) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.baselined[h.PID] {
		o.stacks[acceptorID{h.PID, h.Goid}] = h.Stack.Frames
	}
}

// acceptorsOf lists the goroutines that called accept4 on (pid, fd).
func (o *Objects) acceptorsOf(pid uint32, fd int32) map[uint64]acceptqAcceptor {
	out := map[uint64]acceptqAcceptor{}
	var k acceptqAcceptorKey
	var v acceptqAcceptor
	it := o.coll.Maps[acceptqMapAcceptors].Iterate()
	for it.Next(&k, &v) {
		if k.Pid == pid && k.Fd == fd {
			out[k.Goid] = v
		}
	}
	return out
}

func (o *Objects) runtimeOf(pid uint32) *goruntime.Process {
	if gr, ok := o.runtimes[pid]; ok {
		return gr
	}
	if _, failed := o.noRuntime[pid]; failed {
		return nil
	}
	gr, err := goruntime.OpenProcess(int(pid), nil)
	if err != nil {
		o.noRuntime[pid] = err
		return nil
	}
	o.runtimes[pid] = gr
	return gr
}

// explain builds the event for a listener whose drops rose from prev to cur.
func (o *Objects) explain(clock bpfobj.Clock, comm string, prev, cur *acceptqListenerRec) *event.ListenOverflow {
	interval := cur.Now - prev.Now
	if prev.Now == 0 || prev.Now > cur.Now {
		interval = 0
	}
	e := &event.ListenOverflow{
		Header: event.Header{
			Time: clock.Time(cur.Now), Event: "listen_overflow",
			PID: cur.Pid, TID: cur.Pid, Comm: comm,
		},
		ListenFD:     cur.Fd,
		Addrs:        bpfobj.Addrs(cur.Addrs.Family, cur.Addrs.Saddr, cur.Addrs.Daddr, cur.Addrs.Sport, cur.Addrs.Dport),
		MPTCP:        cur.Mptcp != 0,
		Backlog:      cur.Backlog,
		BacklogMax:   cur.BacklogMax,
		IntervalNs:   interval,
		AcceptErrors: sub(cur.AcceptErrors, prev.AcceptErrors),
	}
	if cur.LastErr != 0 {
		e.AcceptErrno = event.ErrnoName(cur.LastErr)
	}
	if interval > 0 {
		secs := float64(interval) / 1e9
		e.AcceptRate = float64(sub(cur.Accepts, prev.Accepts)) / secs
		e.SynRate = float64(sub(cur.Handshakes, prev.Handshakes)+sub(cur.Drops, prev.Drops)) / secs
	}

	// Who accepts, and what are they doing.
	accs := o.acceptorsOf(cur.Pid, cur.Fd)
	if cur.Parked != 0 {
		if _, ok := accs[cur.ParkGoid]; !ok {
			accs[cur.ParkGoid] = acceptqAcceptor{}
		}
	}
	ids := map[uint64]bool{}
	for id := range accs {
		ids[id] = true
	}
	var live map[uint64]goruntime.G
	gr := o.runtimeOf(cur.Pid)
	if gr != nil && len(ids) > 0 {
		live = goroutinesOf(gr, ids)
	}
	starved := false
	for _, id := range slices.Sorted(maps.Keys(accs)) {
		a := accs[id]
		info, alive := live[id]
		if live != nil && !alive {
			continue // exited
		}
		acc := event.Acceptor{Goid: id, Accepts: a.Accepts, Stack: o.stacks[acceptorID{cur.Pid, id}]}
		if alive {
			acc.GoStatus = info.Describe()
		}
		switch {
		case cur.Parked != 0 && cur.ParkGoid == id:
			acc.State = event.AcceptorParked
			acc.SinceNs = sub(cur.Now, cur.T_park)
			starved = starved || cur.T_ready != 0
		case alive && info.Status == goruntime.StatusSyscall:
			acc.State = event.AcceptorBlocked
			acc.SinceNs = sub(cur.Now, a.T_lastCall)
			if tid, ok := gr.ThreadOf(info); ok {
				acc.Syscall = proc.Syscall(int(cur.Pid), tid)
			}
		default:
			acc.State = event.AcceptorRunning
			acc.SinceNs = sub(cur.Now, a.T_lastCall)
		}
		e.Acceptors = append(e.Acceptors, acc)
	}

	e.Verdict = verdict(len(e.Acceptors), starved, cur.Eagains > prev.Eagains, cur.Parked != 0)
	return e
}

// undecided says that the verdict on an overflow between prev and cur
// cannot be told yet: an acceptor is parked with connections waiting and
// the netpoller has not reported the listener ready, and none parked
// during the interval. The netpoller of a healthy process reports it
// within microseconds, and the one of a process whose Ps are all busy
// within sysmon's 10 ms poll.
func undecided(prev, cur *acceptqListenerRec) bool {
	return cur.Parked != 0 && cur.T_ready == 0 && cur.Backlog > 0 && cur.Eagains == prev.Eagains
}

// goroutinesOf returns the live goroutines of p among ids; nil when the
// goroutine table cannot be read (then nothing is known to have exited).
func goroutinesOf(p *goruntime.Process, ids map[uint64]bool) map[uint64]goruntime.G {
	gs, err := p.Goroutines()
	if err != nil {
		return nil
	}
	out := map[uint64]goruntime.G{}
	for _, g := range gs {
		if ids[g.Goid] {
			out[g.Goid] = g
		}
	}
	return out
}

// verdict says why a listener overflowed, from: how many live goroutines
// accept on it; whether one is parked with the listener reported ready
// (starved); whether an acceptor emptied the queue and parked during the
// interval (drained); and whether one is parked now.
func verdict(acceptors int, starved, drained, parkedNow bool) string {
	switch {
	case acceptors == 0:
		return event.VerdictNoAcceptor
	case starved:
		return event.VerdictAcceptorStarved
	case drained || parkedNow:
		return event.VerdictBacklogTooSmall
	default:
		return event.VerdictAcceptorBusy
	}
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// Listener is one TCP listener of a traced process, as the iterator reads
// it (for the listener metrics).
type Listener struct {
	PID uint32
	// Sk identifies the socket: a listener held by two fds is one.
	Sk   uint64
	Port uint16
	// Drops since gonetscope first saw the listener: its share of its
	// namespace's TcpExtListenDrops, split as Sample splits them (not
	// sk_drops, which counts an overflowed final ACK twice); sk_drops
	// since then, an upper bound, when the namespace's counters cannot be
	// read.
	Drops               uint64
	Backlog, BacklogMax uint32
}

// Listeners runs the iterator once: the TCP listeners of every traced
// process now.
func (o *Objects) Listeners() ([]Listener, error) {
	recs, err := o.scan()
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Listener, 0, len(recs))
	// Each socket once per namespace (a listener held by two fds is one),
	// with its sk_drops since the baseline.
	type sock struct {
		ns, sk uint64
		pid    uint32
	}
	since := map[sock]uint64{}
	var socks []sock
	keys := make([]sock, len(recs))
	for i, r := range recs {
		ns, base := o.netns[r.Pid], uint64(0)
		if st, ok := o.listeners[listenerID{r.Pid, r.Fd, r.Sk}]; ok {
			ns, base = st.netns, st.baseDrops
		}
		k := sock{ns, r.Sk, r.Pid}
		keys[i] = k
		if _, ok := since[k]; !ok {
			socks = append(socks, k)
		}
		since[k] = sub(r.Drops, base)
		out = append(out, Listener{PID: r.Pid, Sk: r.Sk, Port: r.Addrs.Sport, Drops: since[k], Backlog: r.Backlog, BacklogMax: r.BacklogMax})
	}
	shares := map[sock]uint64{}
	for nsID := range o.spaces {
		var in []sock
		for _, k := range socks {
			if k.ns == nsID {
				in = append(in, k)
			}
		}
		if len(in) == 0 {
			continue
		}
		c, err := readCounts(in[0].pid)
		if err != nil {
			continue // sk_drops since the baseline stands
		}
		sp := o.spaces[nsID]
		s := make([]uint64, len(in))
		for i, k := range in {
			s[i] = since[k]
		}
		for i, d := range allocate(sub(sub(c.drops, sp.base.drops), sp.reported.drops), s, make([]uint64, len(in))) {
			shares[in[i]] = d
		}
	}
	for i, k := range keys {
		if d, ok := shares[k]; ok {
			out[i].Drops = d
		}
	}
	return out, nil
}
