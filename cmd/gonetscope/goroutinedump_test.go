package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// TestGoroutineDump: goroutinetarget parks 1,000 goroutines in six known
// ways at six go statements and dumps its own runtime.Stack(all) before
// and after gonetscope reads it from outside. Every goroutine that is the
// same in the target's two dumps must be the same in gonetscope's text
// dump, line for line (function, file:line, pc offset, created by), but
// for the arguments, which gonetscope does not read; its JSON has the
// same frames (and the runtime's own in between), the function the
// goroutine was started with (not the go statement's wrapper), the go
// statement the target reported, and how long it has waited. Counts by
// state and by creation site match, but for the goroutines that changed
// in between. Four more goroutines run and sleep in turns: each has the
// stack it had throughout gonetscope's read, or none and the reason
// (running, changed while read). The pprof output counts every goroutine
// once.
// Built plain, stripped and position-independent, with Go 1.22 (stripped
// PIE) and Go 1.21.
func TestGoroutineDump(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(t *testing.T) string
	}{
		{"plain", func(t *testing.T) string { return buildTarget(t, "goroutinetarget") }},
		{"stripped-pie", func(t *testing.T) string {
			return buildTarget(t, "goroutinetarget", "-ldflags=-s -w", "-buildmode=pie")
		}},
		{"go1.22-stripped-pie", func(t *testing.T) string {
			return buildGoroutinetarget(t, "go1.22.12", "-ldflags=-s -w", "-buildmode=pie")
		}},
		// Before 1.22 the closure of `go f(x)` is main.start.funcN, a
		// wrapper only by its funcID.
		{"go1.21", func(t *testing.T) string { return buildGoroutinetarget(t, "go1.21.13") }},
	} {
		t.Run(tc.name, func(t *testing.T) { checkGoroutineDump(t, tc.build(t)) })
	}
}

// buildGoroutinetarget builds goroutinetarget with another toolchain, in a
// module of its own.
func buildGoroutinetarget(t *testing.T, toolchain string, flags ...string) string {
	t.Helper()
	return buildTargetWith(t, "goroutinetarget", toolchain, flags...)
}

// stackBlock is one goroutine of a runtime.Stack text.
type stackBlock struct {
	goid  uint64
	state string // in the brackets: "chan receive"
	text  string // the block, arguments replaced by "..."
}

// parseStacks reads a runtime.Stack(all) text (or gonetscope's) by goid.
func parseStacks(t *testing.T, text string) map[uint64]stackBlock {
	t.Helper()
	out := map[uint64]stackBlock{}
	for _, block := range strings.Split(strings.TrimSpace(text), "\n\n") {
		lines := strings.Split(block, "\n")
		var b stackBlock
		head, ok := strings.CutPrefix(lines[0], "goroutine ")
		id, rest, ok2 := strings.Cut(head, " [")
		goid, err := strconv.ParseUint(id, 10, 64)
		if !ok || !ok2 || err != nil {
			t.Fatalf("not a goroutine header: %q", lines[0])
		}
		b.goid = goid
		b.state, _, _ = strings.Cut(strings.TrimSuffix(rest, "]:"), ",")
		for i, l := range lines[1:] {
			// "main.f(0x1, 0x2?)": its arguments are the last parentheses.
			if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "created by ") && strings.HasSuffix(l, ")") {
				if j := strings.LastIndex(l, "("); j >= 0 {
					lines[i+1] = l[:j] + "(...)"
				}
			}
		}
		b.text = strings.Join(lines, "\n")
		out[goid] = b
	}
	return out
}

// readGoroutine is a line of goroutines --json.
type readGoroutine struct {
	Goid       uint64 `json:"goid"`
	Status     string `json:"status"`
	WaitReason string `json:"wait_reason"`
	WaitingNs  int64  `json:"waiting_ns"`
	Waiting    string `json:"waiting"`
	Func       string `json:"func"`
	CreatedBy  *struct {
		Func string `json:"func"`
		File string `json:"file"`
		Line int    `json:"line"`
	} `json:"created_by"`
	ParentGoid uint64      `json:"parent_goid"`
	System     bool        `json:"system"`
	Stack      []readFrame `json:"stack"`
	Incomplete string      `json:"stack_incomplete"`
}

type readFrame struct {
	Func    string `json:"func"`
	File    string `json:"file"`
	Line    int    `json:"line"`
	Inlined bool   `json:"inlined"`
}

func (g readGoroutine) createdAt() string {
	if g.CreatedBy == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", g.CreatedBy.File, g.CreatedBy.Line)
}

// state is what runtime.Stack shows in brackets.
func (g readGoroutine) state() string {
	if g.Status == "waiting" && g.WaitReason != "" {
		return g.WaitReason
	}
	return g.Status
}

func gonetscopeGoroutines(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(gonetscopeBin, append([]string{"goroutines"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gonetscope goroutines %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func checkGoroutineDump(t *testing.T, bin string) {
	launched := time.Now()
	const spinners = 4
	stdin, next := startTarget(t, exec.Command(bin, "-spin", fmt.Sprint(spinners)))
	ready := next("ready")
	pid := fmt.Sprint(int(ready["pid"].(float64)))
	sites := map[string]string{} // file:line -> the function started there
	for fn, at := range ready["sites"].(map[string]any) {
		sites[at.(string)] = fn
	}
	dir := t.TempDir()
	dump := func(name string) map[uint64]stackBlock {
		path := filepath.Join(dir, name)
		fmt.Fprintf(stdin, "dump %s\n", path)
		next("dumped")
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return parseStacks(t, string(text))
	}

	before := dump("before")
	prof := filepath.Join(dir, "goroutine.pb.gz")
	jsonOut := gonetscopeGoroutines(t, "--pid", pid, "--json", "-o", prof)
	textOut := gonetscopeGoroutines(t, "--pid", pid)
	after := dump("after")

	// Unchanged: the same in the target's dumps before and after ours.
	// Goroutine 1 writes those dumps: running in them, reading its stdin
	// when gonetscope looks. The spinners change all the time, even when
	// both dumps catch them asleep at the same line.
	var stable, changed []uint64
	for id, b := range before {
		if a, ok := after[id]; ok && a == b && id != 1 && !strings.Contains(b.text, "\nmain.spin(") {
			stable = append(stable, id)
		} else {
			changed = append(changed, id)
		}
	}
	for id := range after {
		if _, ok := before[id]; !ok {
			changed = append(changed, id)
		}
	}
	if len(stable) != 1000 {
		t.Errorf("only %d of the target's goroutines unchanged across its two dumps", len(stable))
	}

	// The text, block for block.
	text := parseStacks(t, string(textOut))
	mismatched := 0
	for _, id := range stable {
		if text[id].text != before[id].text {
			if mismatched++; mismatched <= 3 {
				t.Errorf("goroutine %d: gonetscope says\n%s\nthe target says\n%s", id, text[id].text, before[id].text)
			}
		}
	}

	// The JSON.
	var gs []readGoroutine
	dec := json.NewDecoder(bytes.NewReader(jsonOut))
	for dec.More() {
		var g readGoroutine
		if err := dec.Decode(&g); err != nil {
			t.Fatalf("--json: %v", err)
		}
		gs = append(gs, g)
	}
	byID := map[uint64]readGoroutine{}
	ours := map[string]int{}   // by state
	oursAt := map[string]int{} // by creation site
	theirs := map[string]int{} // by state
	for _, g := range gs {
		byID[g.Goid] = g
		if g.System {
			t.Errorf("goroutine %d: a runtime goroutine without --system", g.Goid)
		}
		ours[g.state()]++
		oursAt[g.createdAt()]++
	}
	for _, b := range before {
		theirs[b.state]++
	}
	for _, id := range stable {
		g, ok := byID[id]
		if !ok {
			t.Errorf("goroutine %d missing in --json", id)
			continue
		}
		checkDumpedGoroutine(t, g, before[id], sites, time.Since(launched))
	}
	// Counts: each goroutine that changed can move one count.
	diff := 0
	for k := range ours {
		diff += abs(ours[k] - theirs[k])
	}
	for k := range theirs {
		if _, ok := ours[k]; !ok {
			diff += theirs[k]
		}
	}
	if diff > 2*len(changed) {
		t.Errorf("counts by state: gonetscope %v, the target %v: %d apart, more than %d changed goroutines explain", ours, theirs, diff, len(changed))
	}
	want := map[string]int{"main.chanRecv": 300, "main.selectWait": 200, "main.mutexWait": 150, "main.sleeper": 150, "main.netRead": 100, "main.start.func1": 100, "main.spin": spinners}
	for at, fn := range sites {
		if oursAt[at] != want[fn] {
			t.Errorf("%d goroutines created at %s (%s), the target started %d", oursAt[at], at, fn, want[fn])
		}
	}
	// The spinners run and sleep in turns: each has the stack it had
	// throughout the read, or none and the reason.
	spins := map[string]int{}
	for _, g := range gs {
		if g.Func != "main.spin" {
			continue
		}
		spins[cmp.Or(g.Incomplete, "complete")]++
		if g.Incomplete == "" && (!slices.ContainsFunc(g.Stack, func(f readFrame) bool { return f.Func == "main.spin" }) || g.Stack[len(g.Stack)-1].Func != "runtime.goexit") {
			t.Errorf("spinning goroutine %d: %s with stack %+v", g.Goid, g.state(), g.Stack)
		}
	}
	if g := byID[1]; g.Incomplete == "" && !slices.ContainsFunc(g.Stack, func(f readFrame) bool { return f.Func == "main.main" }) {
		t.Errorf("goroutine 1: %+v", g)
	}

	// The profile: every goroutine of the same read once.
	f, err := os.Open(prof)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("pprof output: %v", err)
	}
	var total int64
	top := map[string]int64{} // by the function the stack was started with
	for _, s := range p.Sample {
		total += s.Value[0]
		if n := len(s.Location); n >= 2 {
			// Outermost: runtime.goexit, then the goroutine's function
			// (or the go statement's wrapper, with the function inlined
			// or called next).
			for _, l := range s.Location[:n-1] {
				for _, ln := range l.Line {
					if _, ok := want[ln.Function.Name]; ok {
						top[ln.Function.Name] += s.Value[0]
					}
				}
			}
		}
	}
	if total != int64(len(gs)) || p.SampleType[0].Type != "goroutine" {
		t.Errorf("profile of %s counts %d goroutines, the JSON of the same read %d", p.SampleType[0].Type, total, len(gs))
	}
	for fn, n := range want {
		if top[fn] != int64(n) && fn != "main.spin" {
			t.Errorf("profile: %d goroutines with %s on their stack, want %d", top[fn], fn, n)
		}
	}
	t.Logf("%d goroutines unchanged across the target's dumps, %d matched gonetscope's text line for line; %d changed in between (goroutine 1 writes the dumps; %d spin); gonetscope read %d, the profile counts %d; the spinners' stacks: %v",
		len(stable), len(stable)-mismatched, len(changed), spinners, len(gs), total, spins)
}

// checkDumpedGoroutine checks one goroutine of --json against the same
// goroutine in the target's own dump.
func checkDumpedGoroutine(t *testing.T, g readGoroutine, b stackBlock, sites map[string]string, since time.Duration) {
	t.Helper()
	if g.state() != b.state || g.Incomplete != "" || g.ParentGoid != 1 {
		t.Errorf("goroutine %d: %s, stack_incomplete %q, parent %d; the target says %s, created in goroutine 1", g.Goid, g.state(), g.Incomplete, g.ParentGoid, b.state)
	}
	if fn, ok := sites[g.createdAt()]; !ok || g.Func != fn || g.CreatedBy.Func != "main.start" {
		t.Errorf("goroutine %d: func %q created by %+v; the target started %q there", g.Goid, g.Func, g.CreatedBy, fn)
	}
	if g.WaitingNs <= 0 || time.Duration(g.WaitingNs) > since {
		t.Errorf("goroutine %d: waiting %dns (%s), the target was started %s ago", g.Goid, g.WaitingNs, g.Waiting, since)
	}
	// The runtime's frames are among ours, in order (it leaves out its
	// own internal frames and wrappers), and ours end at runtime.goexit.
	var want []string
	for _, l := range strings.Split(b.text, "\n")[1:] {
		if strings.HasPrefix(l, "created by ") {
			break
		}
		if strings.HasPrefix(l, "\t") {
			fileLine, _, _ := strings.Cut(strings.TrimPrefix(l, "\t"), " +")
			want[len(want)-1] += " " + fileLine
		} else {
			want = append(want, strings.TrimSuffix(l, "(...)"))
		}
	}
	i := 0
	for _, f := range g.Stack {
		if i < len(want) && want[i] == fmt.Sprintf("%s %s:%d", f.Func, f.File, f.Line) {
			i++
		}
	}
	if i < len(want) || len(g.Stack) == 0 || g.Stack[len(g.Stack)-1].Func != "runtime.goexit" {
		t.Errorf("goroutine %d: stack %+v; the target's frames %q", g.Goid, g.Stack, want)
	}
}

func abs(n int) int { return max(n, -n) }

// TestGoroutineDumpBadInput: no such process, not a Go program: one line.
func TestGoroutineDumpBadInput(t *testing.T) {
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no such PID", []string{"goroutines", "--pid", "999999999"}, "gonetscope: no process with PID 999999999"},
		{"not a Go program", []string{"goroutines", "--pid", fmt.Sprint(sleep.Process.Pid)}, fmt.Sprintf("gonetscope: PID %d (sleep) is not a Go program", sleep.Process.Pid)},
		{"no PID", []string{"goroutines"}, "gonetscope: no target: give the PID of a Go program with --pid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr, stdout bytes.Buffer
			cmd := exec.Command(gonetscopeBin, tc.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if _, ok := cmd.Run().(*exec.ExitError); !ok {
				t.Fatal("want a non-zero exit")
			}
			if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) || stdout.Len() != 0 {
				t.Errorf("stderr %q, stdout %q; want one line %q", stderr.String(), stdout.String(), tc.want)
			}
		})
	}
}
