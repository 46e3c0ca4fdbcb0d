package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"

	"github.com/gonetscope/gonetscope/pkg/gotoolchain"
)

// TestHeapProfile: heaptarget allocates 32 blocks of 1 MiB from allocA
// (through newBlock, inlined: a line of its own) and keeps them, and
// 100,000 objects of 64 bytes from allocB, which it drops, then runs
// runtime.GC(), which publishes its heap profile. Its own
// pprof.WriteHeapProfile, written just before and just after gonetscope
// reads the profile from outside, is the truth: both read the same
// buckets and scale them the same way, so every stack of the program's
// own code must have the same four values, exactly, and the same function
// names, inlined ones included. (The bar of issue 14 is 15%; exact is
// what reading the same records gives, so anything else is a bug.)
// Built plain, stripped PIE, with Go 1.27 (whose records count objects
// only) stripped PIE, with Go 1.22 stripped PIE and with Go 1.21; and
// stripped PIE with each of GONETSCOPE_TEST_TOOLCHAINS.
func TestHeapProfile(t *testing.T) {
	for _, tc := range heaptargetBuilds() {
		t.Run(tc.name, func(t *testing.T) { checkHeapProfile(t, tc.build(t)) })
	}
}

// heapCase is a build of heaptarget.
type heapCase struct {
	name  string
	build func(t *testing.T) string
}

// heaptargetBuilds are the builds of heaptarget the heap and GC tests
// run against: plain, stripped PIE, Go 1.27 (whose records count objects
// only) and Go 1.22 stripped PIE, Go 1.21; and stripped PIE with each of
// GONETSCOPE_TEST_TOOLCHAINS.
func heaptargetBuilds() []heapCase {
	cases := []heapCase{
		{"plain", func(t *testing.T) string { return buildTarget(t, "heaptarget") }},
		{"stripped-pie", func(t *testing.T) string {
			return buildTarget(t, "heaptarget", "-ldflags=-s -w", "-buildmode=pie")
		}},
		{"go1.27-stripped-pie", func(t *testing.T) string {
			return buildTargetWith(t, "heaptarget", "go1.27.3", "-ldflags=-s -w", "-buildmode=pie")
		}},
		{"go1.22-stripped-pie", func(t *testing.T) string {
			return buildTargetWith(t, "heaptarget", "go1.22.12", "-ldflags=-s -w", "-buildmode=pie")
		}},
		{"go1.21", func(t *testing.T) string { return buildTargetWith(t, "heaptarget", "go1.21.13") }},
	}
	for _, v := range extraToolchains() {
		cases = append(cases, heapCase{v + "-stripped-pie", func(t *testing.T) string {
			return buildTargetWith(t, "heaptarget", v, "-ldflags=-s -w", "-buildmode=pie")
		}})
	}
	return cases
}

// extraToolchains are those GONETSCOPE_TEST_TOOLCHAINS lists (such as
// go1.20.14,go1.23.12): a stripped PIE build each, to verify a table
// entry by hand.
func extraToolchains() []string {
	if s := os.Getenv("GONETSCOPE_TEST_TOOLCHAINS"); s != "" {
		return strings.Split(s, ",")
	}
	return nil
}

// buildTargetWith builds the target name with another toolchain, in a
// module of its own.
func buildTargetWith(t *testing.T, name, toolchain string, flags ...string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("internal/targets", name, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+name+"\n\ngo 1.20\n"), 0o644)
	bin := filepath.Join(dir, name)
	if err := gotoolchain.Build(dir, toolchain, bin, flags...); err != nil {
		t.Fatal(err)
	}
	return bin
}

// heapStacks sums a heap profile's four values by stack, named by its
// functions leaf first (inlined calls included), for the stacks whose
// leaf is the program's own code.
func heapStacks(t *testing.T, path string) map[string][4]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	want := []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}
	for i, st := range p.SampleType {
		if i >= len(want) || st.Type+"/"+st.Unit != want[i] {
			t.Fatalf("%s: sample types %v, want %v", path, p.SampleType, want)
		}
	}
	out := map[string][4]int64{}
	for _, s := range p.Sample {
		var names []string
		for _, l := range s.Location {
			for _, ln := range l.Line {
				names = append(names, ln.Function.Name)
			}
		}
		if len(names) == 0 || !strings.HasPrefix(names[0], "main.") {
			continue
		}
		k := strings.Join(names, " < ")
		v := out[k]
		for i := range v {
			v[i] += s.Value[i]
		}
		out[k] = v
	}
	return out
}

// top is the stack with the most of value i.
func top(stacks map[string][4]int64, i int) string {
	best := ""
	for k, v := range stacks {
		if best == "" || v[i] > stacks[best][i] {
			best = k
		}
	}
	return best
}

// profileHeap runs gonetscope profile --kind heap on pid and returns the
// profile's path.
func profileHeap(t *testing.T, pid string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "heap.pb.gz")
	cmd := exec.Command(gonetscopeBin, append([]string{"profile", "--pid", pid, "--kind", "heap", "-o", out}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gonetscope profile --kind heap: %v\n%s", err, stderr.String())
	}
	t.Logf("%s", strings.TrimSpace(stderr.String()))
	return out
}

func checkHeapProfile(t *testing.T, bin string) {
	stdin, next := startTarget(t, exec.Command(bin))
	ready := next("ready")
	pid := fmt.Sprint(int(ready["pid"].(float64)))
	dir := t.TempDir()
	own := func(name string) map[string][4]int64 {
		path := filepath.Join(dir, name)
		fmt.Fprintf(stdin, "heap %s\n", path)
		if r := next("heap"); r["err"] != "<nil>" {
			t.Fatalf("the target's WriteHeapProfile: %v", r["err"])
		}
		return heapStacks(t, path)
	}
	before := own("before.pb.gz")
	ours := heapStacks(t, profileHeap(t, pid))
	after := own("after.pb.gz")

	const (
		allocA = "main.newBlock < main.allocA < main.main < runtime.main"
		allocB = "main.allocB < main.main < runtime.main"
	)
	names := []string{"alloc_objects", "alloc_space", "inuse_objects", "inuse_space"}
	for _, i := range []int{1, 3} {
		if got, want := top(ours, i), top(before, i); got != allocA || want != allocA {
			t.Errorf("top %s: ours %q, the target's %q; want %q", names[i], got, want, allocA)
		}
	}
	for _, k := range []string{allocA, allocB} {
		t.Logf("%s: ours %v, the target's %v (before) %v (after)", k, ours[k], before[k], after[k])
		for i, name := range names {
			o, b, a := ours[k][i], before[k][i], after[k][i]
			switch {
			case b == a && o != b:
				t.Errorf("%s %s: ours %d, the target's %d", k, name, o, b)
			case b != a && (math.Abs(float64(o-b)) > 0.15*float64(b) || math.Abs(float64(o-a)) > 0.15*float64(a)):
				t.Errorf("%s %s: ours %d, the target's %d before and %d after (more than 15%% apart)", k, name, o, b, a)
			}
		}
	}
	// Sampled estimates: allocA's 32 MiB is seen block by block with
	// a chance of 86%, allocB's 6.4 MB in about 12 samples.
	if v := ours[allocA]; v[1] < 16<<20 || v[3] < 16<<20 {
		t.Errorf("allocA: alloc_space %d, inuse_space %d; it allocated and kept 32 MiB", v[1], v[3])
	}
	if v := ours[allocB]; v[1] == 0 || v[3] != 0 {
		t.Errorf("allocB: alloc_space %d, inuse_space %d; it allocated 6.4 MB and kept none", v[1], v[3])
	}
}

// TestHeapProfileDuration: with --duration, the profile holds what was
// allocated over it: heaptarget allocates 16 blocks of 256 KiB from
// allocC (and runs runtime.GC() to publish them) while gonetscope
// profiles; allocC's alloc values must be the difference between the
// target's own heap profiles before and after, exactly, and allocA's,
// which allocated before, none; in-use values are those at the end.
func TestHeapProfileDuration(t *testing.T) {
	stdin, next := startTarget(t, exec.Command(buildTarget(t, "heaptarget")))
	ready := next("ready")
	pid := int(ready["pid"].(float64))
	dir := t.TempDir()
	own := func(name string) map[string][4]int64 {
		path := filepath.Join(dir, name)
		fmt.Fprintf(stdin, "heap %s\n", path)
		if r := next("heap"); r["err"] != "<nil>" {
			t.Fatalf("the target's WriteHeapProfile: %v", r["err"])
		}
		return heapStacks(t, path)
	}
	before := own("before.pb.gz")
	out := filepath.Join(dir, "delta.pb.gz")
	start := time.Now()
	_, done, errOut := startGonetscopeTo(t, nil, pid, "profile", "--kind", "heap", "--duration", "3s", "-o", out)
	fmt.Fprintln(stdin, "more")
	next("more")
	after := own("after.pb.gz")
	if time.Since(start) > 2500*time.Millisecond {
		t.Fatalf("the target took %s to allocate: longer than gonetscope's --duration", time.Since(start))
	}
	if err := <-done; err != nil {
		t.Fatalf("gonetscope profile --kind heap --duration 3s: %v\n%s", err, errOut)
	}
	ours := heapStacks(t, out)
	const (
		allocA = "main.newBlock < main.allocA < main.main < runtime.main"
		allocC = "main.allocC < main.main < runtime.main"
	)
	t.Logf("allocC: ours %v, the target's %v before, %v after", ours[allocC], before[allocC], after[allocC])
	if top(ours, 1) != allocC {
		t.Errorf("top alloc_space over the duration: %q, want %q", top(ours, 1), allocC)
	}
	for i, want := range [4]int64{
		after[allocC][0] - before[allocC][0], after[allocC][1] - before[allocC][1],
		after[allocC][2], after[allocC][3],
	} {
		if got := ours[allocC][i]; got != want || want == 0 {
			t.Errorf("allocC value %d: ours %d, the target's %d", i, got, want)
		}
	}
	if v := ours[allocA]; v[0] != 0 || v[1] != 0 || v[3] != after[allocA][3] {
		t.Errorf("allocA: ours %v; want no allocation over the duration and in use %d", v, after[allocA][3])
	}
}

// TestHeapProfileRateZero: a program that set runtime.MemProfileRate to 0
// has no heap profile, and gonetscope says so in one line.
func TestHeapProfileRateZero(t *testing.T) {
	_, next := startTarget(t, exec.Command(buildTarget(t, "heaptarget"), "-rate0"))
	ready := next("ready")
	cmd := exec.Command(gonetscopeBin, "profile", "--pid", fmt.Sprint(int(ready["pid"].(float64))), "--kind", "heap",
		"-o", filepath.Join(t.TempDir(), "heap.pb.gz"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	t.Logf("%s", msg)
	if err == nil || strings.Contains(msg, "\n") || !strings.Contains(msg, "MemProfileRate is 0") {
		t.Errorf("gonetscope profile --kind heap on a program with MemProfileRate 0: %v, %q; want one line that says MemProfileRate is 0", err, msg)
	}
}
