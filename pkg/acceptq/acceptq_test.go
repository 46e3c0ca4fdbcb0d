package acceptq

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/gonetscope/gonetscope/pkg/event"
)

// The parks map is netpoll's, shared at load time: this object's view of
// its key and value must be member for member the same as netpoll's.
func TestParksLayoutMatchesNetpoll(t *testing.T) {
	mine, err := loadAcceptq()
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := ebpf.LoadCollectionSpec("../netpoll/netpoll_x86_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	a, b := mine.Maps["parks"], theirs.Maps["parks"]
	if a == nil || b == nil {
		t.Fatal("no parks map")
	}
	if a.Type != b.Type || a.KeySize != b.KeySize || a.ValueSize != b.ValueSize || a.MaxEntries != b.MaxEntries {
		t.Fatalf("parks: %v/%d/%d/%d here, %v/%d/%d/%d in netpoll", a.Type, a.KeySize, a.ValueSize, a.MaxEntries,
			b.Type, b.KeySize, b.ValueSize, b.MaxEntries)
	}
	for _, pair := range [][2]btf.Type{{a.Key, b.Key}, {a.Value, b.Value}} {
		sa, ok1 := btf.UnderlyingType(pair[0]).(*btf.Struct)
		sb, ok2 := btf.UnderlyingType(pair[1]).(*btf.Struct)
		if !ok1 || !ok2 {
			t.Fatalf("parks key/value are not structs: %v %v", pair[0], pair[1])
		}
		if len(sa.Members) != len(sb.Members) {
			t.Fatalf("%s: %d members here, %d in netpoll", sa.Name, len(sa.Members), len(sb.Members))
		}
		for i := range sa.Members {
			ma, mb := sa.Members[i], sb.Members[i]
			if ma.Name != mb.Name || ma.Offset != mb.Offset {
				t.Errorf("%s member %d: %s at %d here, %s at %d in netpoll", sa.Name, i, ma.Name, ma.Offset, mb.Name, mb.Offset)
			}
		}
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		acceptors                   int
		starved, drained, parkedNow bool
		want                        string
	}{
		{0, false, false, false, event.VerdictNoAcceptor},
		{0, true, true, true, event.VerdictNoAcceptor},
		{1, true, false, true, event.VerdictAcceptorStarved},
		{1, false, true, false, event.VerdictBacklogTooSmall},
		{2, false, false, true, event.VerdictBacklogTooSmall},
		{1, false, false, false, event.VerdictAcceptorBusy},
	} {
		if got := verdict(c.acceptors, c.starved, c.drained, c.parkedNow); got != c.want {
			t.Errorf("verdict(%d, starved %v, drained %v, parked %v) = %s, want %s",
				c.acceptors, c.starved, c.drained, c.parkedNow, got, c.want)
		}
	}
}

func TestAllocate(t *testing.T) {
	for _, c := range []struct {
		name        string
		total       uint64
		s, reported []uint64
		want        []uint64
	}{
		{"one listener, sk_drops has extra non-overflow drops", 682, []uint64{691}, []uint64{0}, []uint64{682}},
		{"one listener, namespace counter has others' overflows", 900, []uint64{691}, []uint64{0}, []uint64{691}},
		{"one listener, part already reported", 682, []uint64{691}, []uint64{600}, []uint64{82}},
		{"nothing new", 682, []uint64{691}, []uint64{682}, []uint64{0}},
		{"no drops", 10, []uint64{0}, []uint64{0}, []uint64{0}},
		{"two listeners split by sk_drops", 90, []uint64{60, 40}, []uint64{0, 0}, []uint64{54, 36}},
		{"remainder to the largest", 10, []uint64{20, 10}, []uint64{0, 0}, []uint64{7, 3}},
	} {
		got := allocate(c.total, c.s, c.reported)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: allocate(%d, %v, %v) = %v, want %v", c.name, c.total, c.s, c.reported, got, c.want)
		}
	}
}

// hookOverflows: the hook's own counts, and where the namespace's
// listeners are all traced, what the namespace counted beyond them, within
// each listener's sk_drops; never a count twice.
func TestHookOverflows(t *testing.T) {
	for _, c := range []struct {
		name                    string
		total                   uint64
		s, reported, hook, want []uint64
		alone                   bool
	}{
		{"the hook saw them all", 506, []uint64{508}, []uint64{0}, []uint64{506}, []uint64{506}, true},
		{"the hook missed 2: the namespace's counter fills in", 508, []uint64{513}, []uint64{0}, []uint64{506}, []uint64{508}, true},
		{"missed, but another listener in the namespace may have them", 508, []uint64{513}, []uint64{0}, []uint64{506}, []uint64{506}, false},
		{"filled in, then the hook counts the same overflow late", 510, []uint64{515}, []uint64{508}, []uint64{508}, []uint64{2}, true},
		{"the fill-in is never more than sk_drops", 900, []uint64{510}, []uint64{0}, []uint64{506}, []uint64{510}, true},
		{"two listeners, the rest by their sk_drops slack", 100, []uint64{60, 50}, []uint64{0, 0}, []uint64{40, 40}, []uint64{54, 46}, true},
		{"the hook counted 3 more than the kernel: cut to the namespace's count", 505, []uint64{513}, []uint64{0}, []uint64{508}, []uint64{505}, true},
		{"two listeners over-counted: cut by the hook's counts", 90, []uint64{70, 40}, []uint64{0, 0}, []uint64{60, 40}, []uint64{54, 36}, true},
		{"over-counted beside an untraced listener: the hook's count", 505, []uint64{513}, []uint64{0}, []uint64{508}, []uint64{508}, false},
		{"namespace unread", ^uint64(0), []uint64{513}, []uint64{0}, []uint64{506}, []uint64{506}, true},
	} {
		asked := false
		got := hookOverflows(c.total, c.s, c.reported, c.hook, func() bool { asked = true; return c.alone })
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: hookOverflows(%d, %v, %v, %v) = %v, want %v", c.name, c.total, c.s, c.reported, c.hook, got, c.want)
		}
		if c.name == "the hook saw them all" && asked {
			t.Errorf("%s: read the namespace's listeners though the hook counted everything", c.name)
		}
	}
}

// NoteAccept keeps the latest accept stack of each goroutine of a
// baselined PID, from tcp_accept and accept-mode netpoll waits only, and
// Forget drops them with the PID.
func TestNoteAccept(t *testing.T) {
	o := &Objects{baselined: map[uint32]bool{1: true}, stacks: map[acceptorID][]event.Frame{}}
	header := func(pid uint32, goid uint64, fn string) event.Header {
		return event.Header{PID: pid, Goid: goid, HasGoid: true, Stack: &event.Stack{Frames: []event.Frame{{Func: fn}}}}
	}
	o.NoteAccept(&event.TCPAccept{Header: header(1, 7, "first")})
	o.NoteAccept(&event.NetpollWait{Header: header(1, 7, "latest"), Mode: "accept"})
	o.NoteAccept(&event.NetpollWait{Header: header(1, 7, "a read"), Mode: "read"})
	o.NoteAccept(&event.TCPAccept{Header: header(2, 7, "not baselined")})
	noGoid := header(1, 8, "no goid")
	noGoid.HasGoid = false
	o.NoteAccept(&event.TCPAccept{Header: noGoid})
	want := map[acceptorID]string{{1, 7}: "latest"}
	if len(o.stacks) != len(want) {
		t.Fatalf("stacks %v, want %v", o.stacks, want)
	}
	for id, fn := range want {
		if fs := o.stacks[id]; len(fs) != 1 || fs[0].Func != fn {
			t.Errorf("stack of %v = %v, want %s", id, fs, fn)
		}
	}
	o.Forget(1)
	if len(o.stacks) != 0 {
		t.Errorf("after Forget: stacks %v, want none", o.stacks)
	}
}
