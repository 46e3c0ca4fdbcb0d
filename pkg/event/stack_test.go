package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/rs/zerolog"
)

func decodeInto(t *testing.T, ev Event, v any) {
	t.Helper()
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Log().EmbedObject(ev).Send()
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
}

// The stack field: symbolized frames with inlined only when true, an
// unsymbolized pc in hex; absent without a stack or with no frames.
func TestStackJSON(t *testing.T) {
	type frame struct {
		Func    *string `json:"func"`
		File    string  `json:"file"`
		Line    int     `json:"line"`
		Inlined *bool   `json:"inlined"`
		PC      string  `json:"pc"`
	}
	var got struct {
		Stack []frame `json:"stack"`
	}
	h := withGoid
	h.Stack = &Stack{PCs: []uint64{1, 2, 3}, Frames: []Frame{
		{Func: "syscall.Read", File: "/go/src/syscall/syscall_unix.go", Line: 183, Inlined: true, PC: 1},
		{Func: "main.main", File: "/src/main.go", Line: 9, PC: 2},
		{PC: 0xdeadbeef},
	}}
	decodeInto(t, &NetpollWait{Header: hdr(h, "netpoll_wait")}, &got)
	if len(got.Stack) != 3 {
		t.Fatalf("stack %+v", got.Stack)
	}
	s0, s1, s2 := got.Stack[0], got.Stack[1], got.Stack[2]
	if *s0.Func != "syscall.Read" || s0.File != "/go/src/syscall/syscall_unix.go" || s0.Line != 183 || s0.Inlined == nil || !*s0.Inlined || s0.PC != "" {
		t.Errorf("frame 0: %+v", s0)
	}
	if *s1.Func != "main.main" || s1.Line != 9 || s1.Inlined != nil {
		t.Errorf("frame 1 (not inlined: no inlined key): %+v", s1)
	}
	if s2.Func != nil || s2.PC != "0xdeadbeef" {
		t.Errorf("frame 2 (unsymbolized): %+v", s2)
	}
	for _, st := range []*Stack{nil, {PCs: []uint64{1}}} {
		h.Stack = st
		var m map[string]any
		decodeInto(t, &TCPAccept{Header: hdr(h, "tcp_accept")}, &m)
		if _, ok := m["stack"]; ok {
			t.Errorf("stack %+v written as %v", st, m["stack"])
		}
	}
}

func TestGoroutineLeakJSON(t *testing.T) {
	site := GoroutineSite{Site: "main.leaked", CreatedAt: "/src/main.go:42", CreatedBy: "main.main", Live: 60, Created: 61, Exited: 1, Lifecycle: true}
	leak := &GoroutineLeak{Header: hdr(withGoid, "goroutine_leak"), GoroutineSite: site, Growth: []int64{20, -3, 23},
		IntervalNs: 1e9, OldestGoids: []uint64{7, 9}, ParkedOn: []string{"chan receive", ""}, OldestAgeNs: 3e9}
	var got struct {
		Event       string   `json:"event"`
		Site        string   `json:"site"`
		CreatedAt   string   `json:"created_at"`
		CreatedBy   string   `json:"created_by"`
		Live        int64    `json:"live"`
		Created     uint64   `json:"created"`
		Exited      uint64   `json:"exited"`
		Growth      []int64  `json:"growth"`
		IntervalNs  uint64   `json:"interval_ns"`
		OldestGoids []uint64 `json:"oldest_goids"`
		ParkedOn    []string `json:"parked_on"`
		OldestAgeNs uint64   `json:"oldest_age_ns"`
	}
	decodeInto(t, leak, &got)
	if got.Event != "goroutine_leak" || got.Site != site.Site || got.CreatedAt != site.CreatedAt || got.CreatedBy != site.CreatedBy ||
		got.Live != 60 || got.Created != 61 || got.Exited != 1 || !reflect.DeepEqual(got.Growth, leak.Growth) ||
		got.IntervalNs != 1e9 || !reflect.DeepEqual(got.OldestGoids, leak.OldestGoids) || !reflect.DeepEqual(got.ParkedOn, leak.ParkedOn) || got.OldestAgeNs != 3e9 {
		t.Errorf("goroutine_leak JSON %+v from %+v", got, leak)
	}
	var sum struct {
		Live      int64  `json:"live"`
		Untracked uint64 `json:"untracked"`
		Sites     []struct {
			Site string `json:"site"`
			Live int64  `json:"live"`
		} `json:"sites"`
	}
	decodeInto(t, &Goroutines{Header: hdr(withGoid, "goroutines"), Live: 60, Sites: []GoroutineSite{site}, Untracked: 3}, &sum)
	if sum.Live != 60 || sum.Untracked != 3 || len(sum.Sites) != 1 || sum.Sites[0].Site != "main.leaked" || sum.Sites[0].Live != 60 {
		t.Errorf("goroutines JSON %+v", sum)
	}
	// Without --goroutines there are no lifecycle counts: none written.
	site.Lifecycle = false
	var m struct {
		Sites []map[string]any `json:"sites"`
	}
	decodeInto(t, &Goroutines{Header: hdr(withGoid, "goroutines"), Live: 60, Sites: []GoroutineSite{site}}, &m)
	if _, ok := m.Sites[0]["created"]; ok || m.Sites[0]["live"] != float64(60) {
		t.Errorf("a site without lifecycle counts written as %v", m.Sites[0])
	}
}
